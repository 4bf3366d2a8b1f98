/**
 * `kryonix-dr drill`: proves recovery end to end on the local platform (real Swarm, real S3 on
 * two Ceph RGW regions, real PostgreSQL). Deploys the local stack, writes acknowledged data,
 * lets the sidecars' schedules back it up, destroys the primaries and their volumes, deploys the
 * recovery stack (restore jobs from the catalog's recovery point, then fresh services), verifies
 * every write against the recovery point, and logs the measured RTO/RPO in the catalog.
 * Every figure in the report is measured during this run.
 *
 * This file runs the phases (phases.ts) in order and writes the report; stacks.ts configures the
 * two stacks, deploy.ts deploys them, writers.ts writes and reads back, verify.ts judges.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import * as cat from "../../catalog/queries.js";
import { DEPLOYMENTS_DIR, readState } from "../deployer.js";
import { readPlatform } from "../platform.js";
import { cleanUp, clearPreviousDrill, deployLocal, disaster, iso, P0_RTO_SECONDS, recover, seedServices, verifyRecovered, waitForServices, writeAndBackUp, type DrillRun } from "./phases.js";
import { drillServices, localNamePrefix, localTenantId, RECOVERY_STACK, LOCAL_STACK, type DrillSource } from "./stacks.js";
import type { ServiceReport } from "./verify.js";
import type { RebuildResult, RestoreResult } from "../catalog-recovery.js";
import { dropCatalog, setRegion, waitForCopies } from "./region.js";
import { runFailoverDrill, type FailoverReport } from "./failover.js";

/** The local stack's catalog database (Pulumi.local.yaml, kryonix-dr:catalog.database). */
const CATALOG_DB = "kryonix_dr";

export { drillLocalConfig, drillRecoveryConfig, DRILL_FULL_SCHEDULE, LOCAL_STACK, RECOVERY_STACK } from "./stacks.js";
export { verify, type ServiceReport } from "./verify.js";
export { P0_RTO_SECONDS } from "./phases.js";

export interface DrillOptions {
  /** Keep both stacks (and the catalog with its disaster_recovery_log row) after the drill. */
  keep?: boolean;
  /** Recover to this moment instead of the latest recoverable point. */
  pointInTime?: Date;
  /** Write at least this long before the disaster (default 75 s). */
  writeSeconds?: number;
  /** Seed each service with this many MiB before the writes (seed.ts); the report gives RTO against it. */
  dataSizeMiB?: number;
  /**
   * services (default): the primary services and their volumes are lost. region: the whole
   * primary region is: its S3 server stopped and the catalog database dropped too; recovery
   * gets a catalog back from the DR region alone and restores from there.
   */
  disaster?: "services" | "region" | "failover";
  /** region: get the catalog back by restoring it (default) or by rebuilding it from the manifests. */
  catalog?: "rebuild" | "restore";
  /** Whose services to protect and recover: the local stack's (default) or the prod stack's nine. */
  stack?: DrillSource;
  projectDir: string;
  stateDir?: string;
  log?: (line: string) => void;
}

export interface DrillReport {
  ok: boolean;
  runId: string;
  startedAt: string;
  finishedAt: string;
  target: string;
  /** Whose services were protected and recovered: the local stack's or the prod stack's. */
  stack: DrillSource;
  /** --data-size: MiB seeded into each service before the writes (0: none). */
  dataSizeMiB: number;
  phases: Array<{ name: string; seconds: number }>;
  rto: { seconds: number; targetSeconds: number; met: boolean; declaredAt: string; verifiedAt: string };
  services: ServiceReport[];
  backups: Array<{ service: string; type: string; status: string; backupId: string; recoveryPointEnd?: string; sizeBytes?: number | null; error?: string }>;
  walSegments: number;
  deployments: DrillRun["deployments"];
  disaster: "services" | "region";
  /** region: how the catalog came back: its restore (then a rebuild of what is newer), or a rebuild alone. */
  catalog?: { mode: "rebuild" | "restore"; restore?: Omit<RestoreResult, "rebuild">; rebuild: RebuildResult[] };
  /** region: how far each service's DR copies were, when the region was lost. */
  replicationLag?: Array<{ service: string; newestCopiedSourceAt: string | null; copies: number }>;
  recoveryLog?: { recoveryId: string; status: string; actualRecoverySeconds: number | null; dataLossSeconds: number | null; rtoMet: boolean | null; rpoMet: boolean | null };
  failures: string[];
  kept: boolean;
  reportFile?: string;
}

/** Sets up one run's shared state; refuses a point in time the drill's writes cannot reach. */
export function newRun(opts: DrillOptions, phases: DrillReport["phases"]): DrillRun {
  const log = opts.log ?? (() => {});
  const stateDir = opts.stateDir ?? DEPLOYMENTS_DIR;
  const writeSeconds = opts.writeSeconds ?? 75;
  const platform = readPlatform();
  const source = opts.stack ?? "local";
  if (opts.pointInTime && opts.pointInTime.getTime() > Date.now() + writeSeconds * 1000 + 600_000) {
    throw new Error(`--point-in-time ${opts.pointInTime.toISOString()} lies beyond this drill's writes: give a moment inside the write window (or omit it for the latest point).`);
  }
  return {
    runId: `d${Date.now().toString(36)}${randomBytes(2).toString("hex")}`,
    startedAt: Date.now(),
    projectDir: opts.projectDir,
    stateDir,
    platform,
    tenantId: localTenantId(opts.projectDir),
    prefix: localNamePrefix(opts.projectDir),
    services: drillServices(opts.projectDir, source, platform.images),
    source,
    nodeLabels: {},
    target: opts.pointInTime ?? "latest",
    writeSeconds,
    dataSizeMiB: opts.dataSizeMiB ?? 0,
    seeds: {},
    marker: join(stateDir, "drill.json"),
    failures: [],
    deployments: {},
    catalogMode: opts.disaster === "region" ? (opts.catalog ?? "restore") : undefined,
    log,
    async phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
      const t0 = Date.now();
      log(`== ${name}`);
      try {
        return await fn();
      } finally {
        const seconds = (Date.now() - t0) / 1000;
        phases.push({ name, seconds });
        log(`== ${name}: ${seconds.toFixed(1)} s`);
      }
    },
  };
}

/** What the recovery stack's catalog step did (its output catalogRecovery, `kryonix-dr catalog --json`). */
function catalogResult(run: DrillRun): DrillReport["catalog"] {
  const raw = readState(RECOVERY_STACK, run.stateDir)?.outputs.catalogRecovery;
  if (typeof raw !== "string" || !raw) throw new Error("the recovery stack reports no catalog step (output catalogRecovery): was recovery.catalog set?");
  const r = JSON.parse(raw) as (Omit<RestoreResult, "rebuild"> & { rebuild: RebuildResult[] }) | { buckets: RebuildResult[] } | { alreadyRecovered: string };
  if ("alreadyRecovered" in r) throw new Error(`the recovery stack found the catalog already got back (${r.alreadyRecovered}): the drill's catalog was not lost`);
  if ("buckets" in r) return { mode: "rebuild", rebuild: r.buckets };
  const { rebuild, ...restore } = r;
  for (const line of [`  catalog restored to ${restore.reaches} from backup ${restore.backupId} of the catalog server (${restore.restoredRows.backups} backup(s), ${restore.restoredRows.recoveryLog} recovery log entr(ies)), in ${restore.durationSeconds.toFixed(1)} s`, ...rebuild.map((b) => `  then from ${b.bucket}: ${b.backups.inserted} newer backup(s), ${b.walSegments.inserted} WAL segment(s), ${b.skipped.length} skipped`)]) run.log(line);
  return { mode: "restore", restore, rebuild };
}

/**
 * `--disaster failover`: the warm standbys of the local-dr stack promoted (failover.ts); the
 * report is kept beside the other drills'.
 */
export async function runFailover(opts: DrillOptions): Promise<FailoverReport> {
  const phases: FailoverReport["phases"] = [];
  const run = newRun({ ...opts, disaster: "failover" }, phases);
  const report = await runFailoverDrill(run, { keep: opts.keep }, phases);
  const dir = join(run.stateDir, "..", "drills");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  report.reportFile = join(dir, `${run.runId}.json`);
  writeFileSync(report.reportFile, `${JSON.stringify(report, null, 2)}\n`, { mode: 0o600 });
  return report;
}

export async function runDrill(opts: DrillOptions): Promise<DrillReport> {
  if (opts.disaster === "failover") throw new Error("internal: --disaster failover runs through runFailover");
  const phases: DrillReport["phases"] = [];
  const run = newRun(opts, phases);
  const { platform, tenantId, services, target, failures, startedAt } = run;
  const region = opts.disaster === "region";
  await clearPreviousDrill(run);
  await deployLocal(run);

  const pool = () => {
    const p = new pg.Pool({ host: platform.catalog.host, port: platform.catalog.port, user: platform.catalog.user, password: platform.catalog.password, database: CATALOG_DB, max: 2 });
    p.on("error", () => undefined);
    return p;
  };
  let db = pool();
  let primaryStopped = false;
  let catalogReport: DrillReport["catalog"];
  let lag: DrillReport["replicationLag"];
  try {
    const containers = await waitForServices(run);
    await seedServices(run, containers);
    const { writers, writesStart } = await writeAndBackUp(run, db, containers);
    if (region) await run.phase("wait for the DR region's copies", () => waitForCopies(run, db, writesStart));
    const { written, declaredAt } = await disaster(
      run,
      writers,
      region
        ? async () => {
            lag = (await cat.replicationLag(db)).map((l) => ({ service: l.service, newestCopiedSourceAt: l.newestCopiedSourceAt?.toISOString() ?? null, copies: l.copies }));
            await db.end().catch(() => undefined);
            await setRegion("stop", "primary", run.projectDir, run.log);
            primaryStopped = true;
            run.log("  stopped the primary S3 region: its radosgw is down, nothing of the region answers");
            await dropCatalog(run, CATALOG_DB);
          }
        : undefined,
    );
    const startRecovery = () =>
      cat.startRecovery(db, {
        tenantId,
        incidentType: "drill",
        affectedServices: services.map((s) => s.name),
        procedure: "kryonix-dr drill: recovery stack (restore jobs, fresh services, new sidecars) through the local deployer",
        target: target === "latest" ? "latest" : target.toISOString(),
        rtoTargetSeconds: P0_RTO_SECONDS,
        rpoTargetSeconds: 60,
        // After a region loss the record can only be written once the catalog is back.
        initiatedAt: new Date(declaredAt),
        metadata: { runId: run.runId },
      });
    // Region loss: the catalog is gone; the recovery stack gets it back (recovery.catalog) first.
    if (region) db = pool();
    let recoveryRow = region ? undefined : await startRecovery();
    const restores = await recover(run, db, region ? "dr" : "primary");
    if (region) {
      catalogReport = catalogResult(run);
      recoveryRow = await startRecovery();
    }
    const { reports, rtoTarget } = await verifyRecovered(run, written, restores, declaredAt);
    const verifiedAt = Date.now();
    const rtoSeconds = (verifiedAt - declaredAt) / 1000;
    const rtoMet = rtoSeconds <= rtoTarget;
    if (!rtoMet) failures.push(`RTO ${rtoSeconds.toFixed(1)} s exceeds the target ${rtoTarget} s`);

    const pgRep = reports.find((r) => r.engine === "postgres");
    const phaseTimings = Object.fromEntries(phases.map((p) => [p.name, Math.round(p.seconds * 10) / 10]));
    const finished = await cat.finishRecovery(db, recoveryRow!.recoveryId, {
      status: failures.length ? "failed" : "completed",
      ...(failures.length ? { error: failures.join("; ") } : {}),
      actualRecoverySeconds: rtoSeconds,
      ...(pgRep?.recoveryPoint ? { recoveryPoint: new Date(pgRep.recoveryPoint) } : {}),
      sourceBackupIds: reports.map((r) => r.restoredFromBackup).filter((x): x is string => !!x),
      ...(pgRep?.dataLossSeconds !== undefined ? { dataLossSeconds: Math.max(0, pgRep.dataLossSeconds) } : {}),
      phaseTimings,
      notes: JSON.stringify(reports.map((r) => ({ service: r.service, dataLossSeconds: r.dataLossSeconds, rpoTargetSeconds: r.rpoTargetSeconds, expected: r.expected, restored: r.restored, missing: r.missing.length }))),
    });

    const backups = (await cat.listBackups(db, { tenantId, limit: 500 })).filter((b) => b.createdAt.getTime() >= startedAt);
    const walSegments = (await db.query<{ n: string }>("SELECT count(*) AS n FROM wal_segment WHERE tenant_id = $1 AND uploaded_at >= $2", [tenantId, new Date(startedAt)])).rows[0]!.n;

    const report: DrillReport = {
      ok: failures.length === 0,
      runId: run.runId,
      startedAt: iso(startedAt),
      finishedAt: "",
      target: target === "latest" ? "latest" : target.toISOString(),
      stack: run.source,
      dataSizeMiB: run.dataSizeMiB,
      phases,
      rto: { seconds: rtoSeconds, targetSeconds: rtoTarget, met: rtoMet, declaredAt: iso(declaredAt), verifiedAt: iso(verifiedAt) },
      services: reports,
      backups: backups.reverse().map((b) => ({ service: b.serviceName, type: b.backupType, status: b.backupStatus, backupId: b.backupId, recoveryPointEnd: b.recoveryPointEnd?.toISOString(), sizeBytes: b.backupSize, ...(b.errorMessage ? { error: b.errorMessage } : {}) })),
      walSegments: Number(walSegments),
      deployments: run.deployments,
      disaster: region ? "region" : "services",
      ...(region ? { catalog: catalogReport, replicationLag: lag } : {}),
      recoveryLog: {
        recoveryId: finished.recoveryId,
        status: finished.recoveryStatus,
        actualRecoverySeconds: finished.actualRecoverySeconds,
        dataLossSeconds: finished.dataLossSeconds,
        rtoMet: finished.rtoMet,
        rpoMet: finished.rpoMet,
      },
      failures,
      kept: !!opts.keep,
    };
    await db.end().catch(() => undefined);
    if (primaryStopped) {
      await run.phase("bring the primary region back", () => setRegion("start", "primary", run.projectDir, run.log));
      primaryStopped = false;
    }
    if (!opts.keep) await cleanUp(run);
    report.finishedAt = iso(Date.now());
    // The catalog (and its disaster_recovery_log) belongs to the local stack and goes with it;
    // the report stays.
    const dir = join(run.stateDir, "..", "drills");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    report.reportFile = join(dir, `${run.runId}.json`);
    writeFileSync(report.reportFile, `${JSON.stringify(report, null, 2)}\n`, { mode: 0o600 });
    return report;
  } catch (err) {
    await db.end().catch(() => undefined);
    // The platform's other users need the primary region, whatever happened to the drill.
    if (primaryStopped) await setRegion("start", "primary", run.projectDir, run.log).catch((e: Error) => run.log(`  could not bring the primary region back: ${e.message}; run 'bash scripts/region.sh start primary'`));
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`${msg}\n(the drill's stacks are left as they are for inspection; the next drill removes them, or run 'kryonix-dr destroy --stack ${RECOVERY_STACK} --force' and 'kryonix-dr destroy --stack ${LOCAL_STACK} --force')`);
  }
}
