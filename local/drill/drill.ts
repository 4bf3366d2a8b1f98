/**
 * `kryonix-dr drill`: proves recovery end to end on the local platform (real Swarm, real S3 on
 * two Ceph RGW regions, real PostgreSQL). Deploys the local stack, writes acknowledged data,
 * lets the sidecars' schedules back it up, destroys the primaries and their volumes, deploys the
 * recovery stack (restore jobs from the catalog's recovery point, then fresh services), verifies
 * every write against the recovery point, and logs the measured RTO/RPO in the catalog.
 * Every figure in the report is measured during this run.
 */
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import * as cat from "../../catalog/queries.js";
import { alive } from "../../agent/lock.js";
import { LABELS } from "../../contract/index.js";
import { destroy, readState, DEPLOYER_LABEL, DEPLOYMENTS_DIR } from "../deployer.js";
import { generatedSecrets, localStackConfig } from "../local-stack.js";
import { readPlatform, type Platform } from "../platform.js";
import { loadStackConfig, type RunOptions } from "../program.js";
import { containerLogs, docker, dockerExec, removeService, removeVolume, serviceContainers, serviceLabels, waitForTask } from "./docker.js";
import { prepare, readBack, Writer, type Ack, type DrillEngine, type WriterStats } from "./writers.js";

type Config = NonNullable<RunOptions["config"]>;

export const LOCAL_STACK = "local";
export const RECOVERY_STACK = "recovery";
/** The P0 recovery time objective (seed: 15 minutes) when a service declares none. */
export const P0_RTO_SECONDS = 15 * 60;
/**
 * Drill schedules: a full backup every minute, so that a few minutes of writes see several
 * fulls, the incrementals and continuous WAL. The stack's own cadence (every 5 minutes) would make
 * a drill wait up to 5 minutes for its first full.
 */
export const DRILL_FULL_SCHEDULE = "0 * * * * *";

export interface DrillOptions {
  /** Keep both stacks (and the catalog with its disaster_recovery_log row) after the drill. */
  keep?: boolean;
  /** Recover to this moment instead of the latest recoverable point. */
  pointInTime?: Date;
  /** Write at least this long before the disaster (default 75 s). */
  writeSeconds?: number;
  projectDir: string;
  stateDir?: string;
  log?: (line: string) => void;
}

interface ServiceSpec {
  name: string;
  engine: DrillEngine;
  dataPath?: string;
  schedules?: { full?: string; incremental?: string };
  [k: string]: unknown;
}

export interface ServiceReport {
  service: string;
  engine: DrillEngine;
  writes: number;
  failedWrites: number;
  lastAcknowledgedWrite?: string;
  restoredFromBackup?: string;
  /** The point the restore reached (PostgreSQL: base + WAL; others: the backup's snapshot time). */
  recoveryPoint?: string;
  /** Writes acknowledged at or before the recovery point: all must be back. */
  expected: number;
  restored: number;
  missing: string[];
  /** Point in time only: writes made after the point that are back anyway (must be none). */
  unexpected: string[];
  /** Writes whose commit straddles the recovery point (neither required nor forbidden). */
  straddling: number;
  /** Content differs from what was written (payload, value or SHA-256). */
  corrupted: string[];
  newestRestoredWrite?: string;
  /** Last acknowledged write minus newest restored write (latest), or point minus newest restored write (point in time). */
  dataLossSeconds?: number;
  rpoTargetSeconds: number;
  rpoMet: boolean;
}

export interface DrillReport {
  ok: boolean;
  runId: string;
  startedAt: string;
  finishedAt: string;
  target: string;
  phases: Array<{ name: string; seconds: number }>;
  rto: { seconds: number; targetSeconds: number; met: boolean; declaredAt: string; verifiedAt: string };
  services: ServiceReport[];
  backups: Array<{ service: string; type: string; status: string; backupId: string; recoveryPointEnd?: string; sizeBytes?: number | null }>;
  walSegments: number;
  deployments: Record<string, { declared: string[]; deployed: string[]; missing: string[]; extra: string[] }>;
  recoveryLog?: { recoveryId: string; status: string; actualRecoverySeconds: number | null; dataLossSeconds: number | null; rtoMet: boolean | null; rpoMet: boolean | null };
  failures: string[];
  kept: boolean;
  reportFile?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const iso = (ms: number) => new Date(ms).toISOString();

/** The local stack's services with the drill's full-backup cadence (everything else as declared). */
export function drillServices(projectDir: string): ServiceSpec[] {
  const { config } = loadStackConfig(projectDir, LOCAL_STACK);
  const raw = config["kryonix-dr:services"];
  if (!raw) throw new Error(`Pulumi.${LOCAL_STACK}.yaml declares no kryonix-dr:services: the drill needs the protected services.`);
  return (JSON.parse(raw) as ServiceSpec[]).map((s) => ({ ...s, schedules: { ...s.schedules, full: DRILL_FULL_SCHEDULE } }));
}

/** Config of the local stack as the drill deploys it (platform facts, generated secrets, drill schedules). */
export function drillLocalConfig(platform: Platform, projectDir: string, stateDir = DEPLOYMENTS_DIR): Config {
  return { ...localStackConfig(platform, LOCAL_STACK, stateDir), services: { value: drillServices(projectDir) } };
}

/**
 * Config of the recovery stack: same platform facts and the local deployment's secrets (the
 * restore must decrypt what the sidecars encrypted), its source region, and the recovery point.
 */
export function drillRecoveryConfig(platform: Platform, projectDir: string, point: Date | "latest", stateDir = DEPLOYMENTS_DIR): Config {
  const local = localStackConfig(platform, LOCAL_STACK, stateDir);
  const secrets = generatedSecrets(LOCAL_STACK, stateDir);
  const config: Config = {
    regions: { value: { primary: (local.regions!.value as { primary: unknown }).primary } },
    catalog: local.catalog!,
    images: local.images!,
    services: { value: drillServices(projectDir) },
    recovery: { value: { point: point === "latest" ? "latest" : point.toISOString(), sourceRegion: "primary", serviceNamePrefix: localNamePrefix(projectDir) } },
    primaryAccessKey: local.primaryAccessKey!,
    primarySecretKey: local.primarySecretKey!,
  };
  for (const k of ["catalogWriterPassword", "ageRecipient", "ageIdentity", "resticPassword", "targetPassword-postgresql"]) {
    config[k] = { value: secrets[k], secret: true };
  }
  return config;
}

export function localNamePrefix(projectDir: string): string {
  return loadStackConfig(projectDir, LOCAL_STACK).config["kryonix-dr:namePrefix"] ?? "kdr-local";
}

interface ChildDeploy {
  declared: string[];
  deployed: string[];
  missing: string[];
  extra: string[];
  resources: Array<{ type: string; name: string; id: string }>;
}

/**
 * Deploys a stack in a child process (the SDK runs one program per process and the drill deploys
 * two). The config, secrets included, goes through a 0600 file in a 0700 directory, never argv.
 */
function deployInChild(stack: string, projectDir: string, stateDir: string, config: Config, log: (l: string) => void): Promise<ChildDeploy> {
  const dir = mkdtempSync(join(tmpdir(), "kdr-drill-"));
  chmodSync(dir, 0o700);
  const file = join(dir, "config.json");
  writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(__dirname, "deploy-child.ts"), stack, projectDir, stateDir, file], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let buf = "";
    const tail: string[] = [];
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim() === "" || NOISE.test(line)) continue;
        tail.push(line);
        if (tail.length > 20) tail.shift();
        log(`  ${line}`);
      }
    });
    child.on("error", reject);
    child.on("close", (code) => {
      rmSync(dir, { recursive: true, force: true });
      if (code !== 0) return reject(new Error(`deploying stack ${stack} failed: ${[...tail, buf].join("\n").trim()}`));
      try {
        resolvePromise(JSON.parse(out) as ChildDeploy);
      } catch (e) {
        reject(new Error(`deploying stack ${stack} printed no result (${(e as Error).message}): ${out.slice(0, 500)}`));
      }
    });
  });
}
/** The AWS SDK's Node-version notice, repeated by every process; not drill progress. */
const NOISE = /NodeVersionSupportWarning|versions published after|require node >=22|To continue receiving updates|and security updates please|More information can be found|node --trace-warnings|You are running node/;

/** Every Swarm service a stack's deployment made, by name. */
async function stackServices(stack: string): Promise<Array<{ name: string; labels: Record<string, string> }>> {
  const filters = encodeURIComponent(JSON.stringify({ label: [`${DEPLOYER_LABEL}=${stack}`] }));
  const list = await docker.request<Array<{ Spec: { Name: string; Labels?: Record<string, string> } }>>("GET", `/services?filters=${filters}`);
  return list.map((s) => ({ name: s.Spec.Name, labels: s.Spec.Labels ?? {} }));
}

export async function runDrill(opts: DrillOptions): Promise<DrillReport> {
  const log = opts.log ?? (() => {});
  const stateDir = opts.stateDir ?? DEPLOYMENTS_DIR;
  const projectDir = opts.projectDir;
  const writeSeconds = opts.writeSeconds ?? 75;
  const target: Date | "latest" = opts.pointInTime ?? "latest";
  const platform = readPlatform();
  const runId = `d${Date.now().toString(36)}${randomBytes(2).toString("hex")}`;
  const startedAt = Date.now();
  const phases: DrillReport["phases"] = [];
  const failures: string[] = [];
  const deployments: DrillReport["deployments"] = {};
  const phase = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    log(`== ${name}`);
    try {
      return await fn();
    } finally {
      const seconds = (Date.now() - t0) / 1000;
      phases.push({ name, seconds });
      log(`== ${name}: ${seconds.toFixed(1)} s`);
    }
  };
  const { config: localYaml } = loadStackConfig(projectDir, LOCAL_STACK);
  const tenantId = localYaml["kryonix-dr:tenantId"]!;
  const prefix = localNamePrefix(projectDir);
  const services = drillServices(projectDir);
  if (opts.pointInTime && opts.pointInTime.getTime() > Date.now() + writeSeconds * 1000 + 600_000) {
    throw new Error(`--point-in-time ${opts.pointInTime.toISOString()} lies beyond this drill's writes: give a moment inside the write window (or omit it for the latest point).`);
  }

  // A previous drill run with --keep (or one that failed) leaves its deployments, which this run
  // removes; a deployment the drill did not make is someone else's, and is left alone.
  const marker = join(stateDir, "drill.json");
  if (existsSync(marker)) {
    const other = JSON.parse(readFileSync(marker, "utf8")) as { pid?: number; runId?: string };
    if (other.pid && other.pid !== process.pid && alive(other.pid)) {
      throw new Error(`another drill (${other.runId}, pid ${other.pid}) is running on this platform: the stacks and service names are shared, so wait for it to finish.`);
    }
  }
  for (const stack of [RECOVERY_STACK, LOCAL_STACK]) {
    if (!readState(stack, stateDir)) continue;
    if (!existsSync(marker)) {
      throw new Error(`Stack '${stack}' is already deployed (${join(stateDir, `${stack}.json`)}), not by a drill: remove it with 'kryonix-dr destroy --stack ${stack} --force' first (recovery before local).`);
    }
    await phase(`remove the previous drill's ${stack} deployment`, () => destroy({ stack, stateDir, force: true, log: (l) => log(`  ${l}`) }));
  }
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeFileSync(marker, `${JSON.stringify({ runId, startedAt: iso(startedAt), pid: process.pid })}\n`, { mode: 0o600 });

  const localDeploy = await phase("deploy the local stack", () => deployInChild(LOCAL_STACK, projectDir, stateDir, drillLocalConfig(platform, projectDir, stateDir), log));
  deployments[LOCAL_STACK] = { declared: localDeploy.declared, deployed: localDeploy.deployed, missing: localDeploy.missing, extra: localDeploy.extra };
  if (deployments[LOCAL_STACK]!.missing.length || deployments[LOCAL_STACK]!.extra.length) {
    failures.push(`local stack: declared and deployed differ (not created ${JSON.stringify(deployments[LOCAL_STACK]!.missing)}, not declared ${JSON.stringify(deployments[LOCAL_STACK]!.extra)})`);
  }

  const db = new pg.Pool({ host: platform.catalog.host, port: platform.catalog.port, user: platform.catalog.user, password: platform.catalog.password, database: "kryonix_dr", max: 2 });
  db.on("error", () => undefined);
  try {
    const containers: Record<string, string> = {};
    await phase("wait for services and healthy sidecars", async () => {
      for (const s of await stackServices(LOCAL_STACK)) {
        const svc = s.labels[LABELS.service];
        const stateful = s.labels[LABELS.stateful] === "true" && !!svc;
        if (stateful || s.labels[LABELS.role] === "sidecar") {
          const id = await waitForTask(s.name, 180_000);
          log(`  ${s.name}: running${stateful ? "" : ", healthy"}`);
          if (stateful) containers[svc!] = id;
        } else {
          // Crons and replicators are not what the drill proves; their state is shown, not awaited.
          const cs = await serviceContainers(s.name);
          log(`  ${s.name} (${s.labels[LABELS.role] ?? "service"}): ${cs.length ? cs[0]!.Status : "no running task"}`);
        }
      }
      for (const s of services) {
        if (!containers[s.name]) throw new Error(`the local stack has no running service labelled ${LABELS.service}=${s.name}.`);
        await waitUntilAccepting(s, containers[s.name]!);
      }
    });

    const writers = services.map((s) => new Writer(s.engine, containers[s.name]!, runId, s.dataPath ?? "/data"));
    let writesStart = 0;
    await phase("write sample data and take backups", async () => {
      for (const s of services) await prepare(s.engine, containers[s.name]!).then(() => undefined, (e: Error) => { throw new Error(`${s.name}: ${e.message}`); });
      writesStart = Date.now();
      for (const w of writers) w.start();
      log(`  writing to ${services.map((s) => s.name).join(", ")} for at least ${writeSeconds} s, until each has a backup holding the writes`);
      await watchBackups(db, tenantId, services, writers, writesStart, writeSeconds, log);
    });

    // The disaster: the writers stop, then each primary and its data volume go, with the sidecars
    // next to them (a lost primary takes its backup sidecar along; buckets, catalog and cron survive).
    const written = new Map<string, WriterStats>();
    let declaredAt = 0;
    await phase("disaster: remove the primary services and their volumes", async () => {
      for (const [i, w] of writers.entries()) written.set(services[i]!.name, await w.stop());
      for (const s of services) {
        const st = written.get(s.name)!;
        log(`  ${s.name}: ${st.acks.length} acknowledged writes (${st.failures} failed), last at ${st.acks.length ? iso(st.acks.at(-1)!.writtenAt) : "none"}`);
      }
      // Abrupt, as a lost node is: SIGKILL, no clean shutdown; then the services go, with the
      // backup sidecars beside them (a lost primary takes its sidecar along, which also mounts
      // the volume; buckets, catalog and crons survive); then the data volumes.
      const volumes: string[] = [];
      for (const s of services) {
        const name = `${prefix}-${s.name}`;
        const spec = await docker.request<{ Spec: { TaskTemplate: { ContainerSpec: { Mounts?: Array<{ Type: string; Source: string }> } } } }>("GET", `/services/${name}`);
        volumes.push(...(spec.Spec.TaskTemplate.ContainerSpec.Mounts ?? []).filter((m) => m.Type === "volume").map((m) => m.Source));
        for (const c of await serviceContainers(name)) await docker.request("POST", `/containers/${c.Id}/kill?signal=KILL`).catch(() => undefined);
      }
      for (const s of services) {
        await removeService(`${prefix}-${s.name}`);
        log(`  killed and removed service ${prefix}-${s.name}`);
      }
      for (const s of await stackServices(LOCAL_STACK)) {
        if (s.labels[LABELS.role] === "sidecar" && services.some((x) => x.name === s.labels[LABELS.protects])) {
          await removeService(s.name);
          log(`  removed sidecar ${s.name}`);
        }
      }
      for (const v of volumes) await removeVolume(v);
      log(`  removed volume(s) ${volumes.join(", ")}`);
      declaredAt = Date.now();
    });

    const recoveryRow = await cat.startRecovery(db, {
      tenantId,
      incidentType: "drill",
      affectedServices: services.map((s) => s.name),
      procedure: "kryonix-dr drill: recovery stack (restore jobs, fresh services, new sidecars) through the local deployer",
      target: target === "latest" ? "latest" : target.toISOString(),
      rtoTargetSeconds: P0_RTO_SECONDS,
      rpoTargetSeconds: 60,
      metadata: { runId },
    });

    const recoveryDeploy = await phase("recover: deploy the recovery stack", () =>
      deployInChild(RECOVERY_STACK, projectDir, stateDir, drillRecoveryConfig(platform, projectDir, target, stateDir), log),
    );
    deployments[RECOVERY_STACK] = { declared: recoveryDeploy.declared, deployed: recoveryDeploy.deployed, missing: recoveryDeploy.missing, extra: recoveryDeploy.extra };
    if (deployments[RECOVERY_STACK]!.missing.length || deployments[RECOVERY_STACK]!.extra.length) {
      failures.push(`recovery stack: declared and deployed differ (not created ${JSON.stringify(deployments[RECOVERY_STACK]!.missing)}, not declared ${JSON.stringify(deployments[RECOVERY_STACK]!.extra)})`);
    }

    const restores = await restoreResults(recoveryDeploy, db);
    const reports: ServiceReport[] = [];
    let rtoTarget = P0_RTO_SECONDS;
    await phase("verify the recovered data", async () => {
      for (const s of services) {
        const name = `${prefix}-${s.name}`;
        const id = await waitForTask(name, 180_000);
        await waitUntilAccepting(s, id, true);
        const labels = await serviceLabels(name);
        const rpoTarget = Number(labels[LABELS.rpoSeconds]);
        const rto = Number(labels[LABELS.rtoSeconds]);
        if (Number.isFinite(rto) && rto > 0) rtoTarget = Math.min(rtoTarget, rto);
        const got = await readBack(s.engine, id, runId, s.dataPath ?? "/data");
        const rep = verify(s, written.get(s.name)!, got, restores[s.name], target, s.engine === "postgres" ? Math.min(60, rpoTarget || 60) : rpoTarget);
        reports.push(rep);
        log(`  ${s.name}: ${rep.restored}/${rep.expected} expected writes back (${rep.missing.length} missing, ${rep.corrupted.length} corrupted${target === "latest" ? "" : `, ${rep.unexpected.length} after the point`}), data loss ${rep.dataLossSeconds?.toFixed(1) ?? "?"} s (target ${rep.rpoTargetSeconds} s)`);
      }
    });
    const verifiedAt = Date.now();
    const rtoSeconds = (verifiedAt - declaredAt) / 1000;

    for (const r of reports) {
      if (r.missing.length) failures.push(`${r.service}: ${r.missing.length} write(s) acknowledged before the recovery point are missing (e.g. ${r.missing.slice(0, 3).join(", ")})`);
      if (r.corrupted.length) failures.push(`${r.service}: ${r.corrupted.length} write(s) came back with different content (e.g. ${r.corrupted.slice(0, 3).join(", ")})`);
      if (r.unexpected.length) failures.push(`${r.service}: ${r.unexpected.length} write(s) made after the point in time are present`);
      if (!r.rpoMet) failures.push(`${r.service}: data loss ${r.dataLossSeconds?.toFixed(1) ?? "unknown"} s exceeds its RPO target ${r.rpoTargetSeconds} s`);
    }
    const rtoMet = rtoSeconds <= rtoTarget;
    if (!rtoMet) failures.push(`RTO ${rtoSeconds.toFixed(1)} s exceeds the target ${rtoTarget} s`);

    const pgRep = reports.find((r) => r.engine === "postgres");
    const phaseTimings = Object.fromEntries(phases.map((p) => [p.name, Math.round(p.seconds * 10) / 10]));
    const finished = await cat.finishRecovery(db, recoveryRow.recoveryId, {
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
      runId,
      startedAt: iso(startedAt),
      finishedAt: "",
      target: target === "latest" ? "latest" : target.toISOString(),
      phases,
      rto: { seconds: rtoSeconds, targetSeconds: rtoTarget, met: rtoMet, declaredAt: iso(declaredAt), verifiedAt: iso(verifiedAt) },
      services: reports,
      backups: backups.reverse().map((b) => ({ service: b.serviceName, type: b.backupType, status: b.backupStatus, backupId: b.backupId, recoveryPointEnd: b.recoveryPointEnd?.toISOString(), sizeBytes: b.backupSize })),
      walSegments: Number(walSegments),
      deployments,
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
    if (!opts.keep) {
      await phase("clean up: destroy the recovery and local stacks", async () => {
        for (const stack of [RECOVERY_STACK, LOCAL_STACK]) await destroy({ stack, stateDir, force: true, log: (l) => log(`  ${l}`) });
        rmSync(marker, { force: true });
      });
      report.phases = phases;
    }
    report.finishedAt = iso(Date.now());
    // The catalog (and its disaster_recovery_log) belongs to the local stack and goes with it;
    // the report stays.
    const dir = join(stateDir, "..", "drills");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    report.reportFile = join(dir, `${runId}.json`);
    writeFileSync(report.reportFile, `${JSON.stringify(report, null, 2)}\n`, { mode: 0o600 });
    return report;
  } catch (err) {
    await db.end().catch(() => undefined);
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`${msg}\n(the drill's stacks are left as they are for inspection; the next drill removes them, or run 'kryonix-dr destroy --stack ${RECOVERY_STACK} --force' and 'kryonix-dr destroy --stack ${LOCAL_STACK} --force')`);
  }
}

/** Waits until the service inside the container answers (PostgreSQL: promoted, out of recovery). */
async function waitUntilAccepting(s: ServiceSpec, container: string, recovered = false, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    let r;
    if (s.engine === "postgres") {
      r = await dockerExec(container, ["psql", "-X", "-U", "postgres", "-d", "postgres", "-At", "-c", "SELECT pg_is_in_recovery()"]);
      if (r.code === 0 && r.stdout.trim() === "f") return;
    } else if (s.engine === "redis") {
      r = await dockerExec(container, ["redis-cli", "PING"]);
      if (r.code === 0 && /PONG|NOAUTH/.test(r.stdout)) return;
    } else {
      r = await dockerExec(container, ["test", "-d", s.dataPath ?? "/data"]);
      if (r.code === 0) return;
    }
    last = (r.stderr || r.stdout).trim();
    if (Date.now() > deadline) throw new Error(`${s.name} did not accept requests within ${timeoutMs / 1000} s${recovered ? " after its restore" : ""}: ${last}`);
    await sleep(1000);
  }
}

/**
 * Shows backups as the schedules complete them and waits until, for each service, a completed
 * backup (PostgreSQL: a full and archived WAL) covers writes made during the drill.
 */
async function watchBackups(db: pg.Pool, tenantId: string, services: ServiceSpec[], writers: Writer[], writesStart: number, writeSeconds: number, log: (l: string) => void): Promise<void> {
  const seen = new Set<string>();
  const maxMs = (writeSeconds + 240) * 1000;
  for (;;) {
    await sleep(5000);
    const rows = await cat.listBackups(db, { tenantId, limit: 200 });
    for (const b of [...rows].reverse()) {
      const key = `${b.backupId}:${b.backupStatus}`;
      if (seen.has(key) || b.createdAt.getTime() < writesStart - 120_000) continue;
      if (b.backupStatus === "completed" || b.backupStatus === "failed") {
        seen.add(key);
        log(`  backup ${b.backupStatus}: ${b.serviceName} ${b.backupType} ${b.backupId.slice(0, 8)}${b.recoveryPointEnd ? ` point ${b.recoveryPointEnd.toISOString()}` : ""}${b.backupSize != null ? ` ${b.backupSize} B` : ""}${b.errorMessage ? ` error: ${b.errorMessage}` : ""}`);
      }
    }
    const missing: string[] = [];
    const progress: string[] = [];
    for (const [i, s] of services.entries()) {
      const good = rows.filter((b) => b.serviceName === s.name && b.backupStatus === "completed" && b.backupType !== "wal" && (b.recoveryPointEnd?.getTime() ?? 0) > writesStart);
      const w = writers[i]!.stats;
      let line = `${s.name} ${w.acks.length} writes${w.failures ? ` (${w.failures} failed: ${w.lastError})` : ""}, ${good.length} backup(s) with them`;
      if (good.length === 0) missing.push(`${s.name}: no completed backup since the writes began`);
      if (s.engine === "postgres") {
        const wal = await cat.listWalSegments(db, s.name, { tenantId });
        const newest = Math.max(0, ...wal.map((x) => x.coversUntil.getTime()));
        const fresh = wal.filter((x) => x.uploadedAt.getTime() >= writesStart).length;
        line += `, ${fresh} WAL segment(s) uploaded, WAL lag ${newest ? ((Date.now() - newest) / 1000).toFixed(0) : "-"} s`;
        if (newest <= writesStart) missing.push(`${s.name}: no WAL archived since the writes began`);
      }
      progress.push(line);
    }
    const elapsed = Date.now() - writesStart;
    log(`  [${(elapsed / 1000).toFixed(0)} s] ${progress.join("; ")}`);
    if (elapsed >= writeSeconds * 1000 && missing.length === 0) return;
    if (elapsed > maxMs) {
      throw new Error(`after ${(elapsed / 1000).toFixed(0)} s of writes the backups do not cover them: ${missing.join("; ")}. See 'docker service logs <prefix>-<service>-backup'.`);
    }
  }
}

interface RestoreResult {
  backupId: string;
  reaches: Date;
  /**
   * The restored snapshot's span (redis/volume), from the catalog: it holds every write
   * acknowledged before `snapshotStart` and none written after `snapshotEnd`.
   */
  snapshotStart?: Date;
  snapshotEnd?: Date;
}

/** What each restore job did, from its container's own summary (kept by the deployment). */
async function restoreResults(r: ChildDeploy, db: pg.Pool): Promise<Record<string, RestoreResult>> {
  const out: Record<string, RestoreResult> = {};
  for (const e of r.resources.filter((x) => x.type === "docker:index/container:Container")) {
    const logs = await containerLogs(e.id);
    const m = /restore of (\S+) completed from backup ([0-9a-f-]{36})[\s\S]*?reaches (\S+?);/.exec(logs);
    if (!m) throw new Error(`restore container ${e.name} (${e.id.slice(0, 12)}) printed no restore summary:\n${logs.slice(-2000)}`);
    const row = await cat.getBackup(db, m[2]!);
    out[m[1]!] = { backupId: m[2]!, reaches: new Date(m[3]!), snapshotStart: row?.recoveryPointStart ?? undefined, snapshotEnd: row?.recoveryPointEnd ?? undefined };
  }
  return out;
}

/** Compares what came back with what was acknowledged. */
export function verify(s: ServiceSpec, written: WriterStats, got: Map<string, string>, restore: RestoreResult | undefined, target: Date | "latest", rpoTargetSeconds: number): ServiceReport {
  const acks = written.acks;
  // PostgreSQL reaches its recovery point through WAL, to the instant. A redis or volume snapshot
  // is taken over a span: what was acknowledged before its start must be back, what was written
  // after its end must not be, and a write inside the span may be either ("straddling").
  const point = s.engine === "postgres" ? restore?.reaches : (restore?.snapshotEnd ?? restore?.reaches);
  const pointMs = point?.getTime() ?? -Infinity;
  const fromMs = s.engine === "postgres" ? pointMs : (restore?.snapshotStart?.getTime() ?? pointMs);
  const content = (a: Ack): string | undefined => (s.engine === "volume" ? a.sha256 : undefined);
  const missing: string[] = [];
  const unexpected: string[] = [];
  const corrupted: string[] = [];
  let expected = 0;
  let straddling = 0;
  let newest = -Infinity;
  for (const a of acks) {
    const back = got.get(a.key);
    if (back !== undefined) {
      newest = Math.max(newest, a.writtenAt);
      const want = content(a);
      if (want !== undefined && back !== want) corrupted.push(a.key);
      if (s.engine === "redis" && !back.startsWith(`${a.key.split(":")[1]}-${a.key.split(":")[2]}@`)) corrupted.push(a.key);
    }
    if (a.ackedAt <= fromMs) {
      expected++;
      if (back === undefined) missing.push(a.key);
    } else if (a.writtenAt > pointMs) {
      if (back !== undefined && target !== "latest") unexpected.push(a.key);
    } else straddling++;
  }
  const restored = acks.filter((a) => got.has(a.key)).length;
  const last = acks.at(-1)?.writtenAt;
  const reference = target === "latest" ? last : Math.min(target.getTime(), last ?? Infinity);
  // Loss runs from the newest moment whose writes are all back: the newest restored write, or, when
  // the restored snapshot predates every write of the drill, the snapshot itself.
  const covered = newest > -Infinity ? newest : restore ? fromMs : -Infinity;
  const dataLossSeconds = reference !== undefined && covered > -Infinity ? Math.max(0, (reference - covered) / 1000) : undefined;
  return {
    service: s.name,
    engine: s.engine,
    writes: acks.length,
    failedWrites: written.failures,
    lastAcknowledgedWrite: last !== undefined ? iso(last) : undefined,
    restoredFromBackup: restore?.backupId,
    recoveryPoint: point?.toISOString(),
    expected,
    restored,
    missing,
    unexpected,
    straddling,
    corrupted,
    newestRestoredWrite: newest > -Infinity ? iso(newest) : undefined,
    dataLossSeconds,
    rpoTargetSeconds,
    rpoMet: dataLossSeconds !== undefined && dataLossSeconds <= rpoTargetSeconds,
  };
}
