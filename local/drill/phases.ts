/**
 * The drill's phases, one function each, in the order runDrill (drill.ts) calls them. Each takes
 * the run's shared state (DrillRun) and returns what the next phase needs.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type pg from "pg";
import * as cat from "../../catalog/queries.js";
import { alive } from "../../agent/lock.js";
import { LABELS } from "../../contract/index.js";
import type { ServiceSpec } from "../../stacks/config.js";
import { destroy, readState } from "../deployer.js";
import type { Platform } from "../platform.js";
import { deployInChild, restoreResults, stackServices, type ChildDeploy } from "./deploy.js";
import { docker, dockerExec, dockerExecWatched, nodeLabelsOf, removeService, removeVolume, serviceContainers, serviceLabels, setNodeLabels, waitForTask } from "./docker.js";
import { DRILL_FULL_SCHEDULE, drillLocalConfig, drillRecoveryConfig, LOCAL_STACK, RECOVERY_STACK, type DrillSource } from "./stacks.js";
import { verify, type ServiceReport } from "./verify.js";
import { drillEngine, prepare, readBack, Writer, type WriterStats } from "./writers.js";
import { fingerprint, seed, type Seeded } from "./seed.js";

/** The P0 recovery time objective (seed: 15 minutes) when a service declares none. */
export const P0_RTO_SECONDS = 15 * 60;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const iso = (ms: number) => new Date(ms).toISOString();

/** What every phase of one drill run shares. */
export interface DrillRun {
  runId: string;
  startedAt: number;
  projectDir: string;
  stateDir: string;
  platform: Platform;
  tenantId: string;
  /** The local stack's service name prefix (`<prefix>-<service>`). */
  prefix: string;
  services: ServiceSpec[];
  target: Date | "latest";
  writeSeconds: number;
  /** --data-size: MiB of seed data put into each service before the writes (0: none). */
  dataSizeMiB: number;
  /** What was seeded, per service (filled by seedServices). */
  seeds: Record<string, Seeded>;
  /** The slowest full taken after seeding, in seconds (0: none): the writes' wait grows with it. */
  seedFullSeconds?: number;
  /** The file that marks the platform's deployments as this drill's. */
  marker: string;
  failures: string[];
  deployments: Record<string, { declared: string[]; deployed: string[]; missing: string[]; extra: string[] }>;
  /** region drills: how the catalog is got back from the DR region (recovery.catalog). */
  catalogMode?: "rebuild" | "restore";
  /** Whose services: the local stack's, or the prod stack's (`--stack prod`). */
  source: DrillSource;
  /** Node labels this run put on the swarm node for its services' placement (removed at clean-up). */
  nodeLabels: Record<string, string>;
  log: (line: string) => void;
  /** Runs one phase: logs its start and end and records its duration. */
  phase<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

/**
 * A previous drill run with --keep (or one that failed) leaves its deployments, which this run
 * removes; a deployment the drill did not make is someone else's, and is left alone.
 */
export async function clearPreviousDrill(run: DrillRun): Promise<void> {
  const { marker, stateDir, log } = run;
  if (existsSync(marker)) {
    const other = JSON.parse(readFileSync(marker, "utf8")) as { pid?: number; runId?: string; nodeLabels?: Record<string, string> };
    if (other.pid && other.pid !== process.pid && alive(other.pid)) {
      throw new Error(`another drill (${other.runId}, pid ${other.pid}) is running on this platform: the stacks and service names are shared, so wait for it to finish.`);
    }
  }
  // A drill stopped by a signal (Ctrl-C) left its client containers on the local stack's network,
  // which then cannot be removed with the stack.
  const filters = encodeURIComponent(JSON.stringify({ label: [`${LABELS.role}=drill-client`] }));
  for (const c of await docker.request<Array<{ Id: string; Names: string[] }>>("GET", `/containers/json?all=true&filters=${filters}`)) {
    await docker.request("DELETE", `/containers/${c.Id}?force=true`);
    log(`  removed the previous drill's client container ${c.Names[0]?.replace(/^\//, "") ?? c.Id}`);
  }
  for (const stack of [RECOVERY_STACK, LOCAL_STACK]) {
    if (!readState(stack, stateDir)) continue;
    if (!existsSync(marker)) {
      throw new Error(`Stack '${stack}' is already deployed (${join(stateDir, `${stack}.json`)}), not by a drill: remove it with 'kryonix-dr destroy --stack ${stack} --force' first (recovery before local).`);
    }
    await run.phase(`remove the previous drill's ${stack} deployment`, () => destroy({ stack, stateDir, force: true, log: (l) => log(`  ${l}`) }));
  }
  // The node labels a previous drill (kept, or failed) put on for its services' placement.
  if (existsSync(marker)) {
    const previous = (JSON.parse(readFileSync(marker, "utf8")) as { nodeLabels?: Record<string, string> }).nodeLabels ?? {};
    const removed = await setNodeLabels(previous, true);
    if (Object.keys(removed).length) log(`  removed the node labels the previous drill added: ${Object.keys(removed).join(", ")}`);
  }
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeFileSync(marker, `${JSON.stringify({ runId: run.runId, startedAt: iso(run.startedAt), pid: process.pid })}\n`, { mode: 0o600 });
}

/** Records what a deployment made against what its stack declared; a difference fails the drill. */
function recordDeployment(run: DrillRun, stack: string, d: ChildDeploy): void {
  run.deployments[stack] = { declared: d.declared, deployed: d.deployed, missing: d.missing, extra: d.extra };
  if (d.missing.length || d.extra.length) {
    run.failures.push(`${stack} stack: declared and deployed differ (not created ${JSON.stringify(d.missing)}, not declared ${JSON.stringify(d.extra)})`);
  }
}

export async function deployLocal(run: DrillRun): Promise<void> {
  // Placement stays real: the node is labelled as an operator labels the node holding each
  // service's data, and the services and their sidecars are constrained to it.
  const wanted = Object.assign({}, ...run.services.map((s) => nodeLabelsOf(s.placement))) as Record<string, string>;
  run.nodeLabels = await setNodeLabels(wanted);
  const added = Object.keys(run.nodeLabels);
  // Recorded with the run, so the next drill removes them when this one is kept or fails.
  writeFileSync(run.marker, `${JSON.stringify({ ...(JSON.parse(readFileSync(run.marker, "utf8")) as object), nodeLabels: run.nodeLabels })}\n`, { mode: 0o600 });
  if (Object.keys(wanted).length) {
    run.log(`  placement: this swarm node carries ${Object.entries(wanted).map(([k, v]) => `${k}=${v}`).join(", ")} (${added.length ? `labelled now: ${added.join(", ")}` : "all labelled before"})`);
  }
  const d = await run.phase(`deploy the local stack${run.source === "prod" ? " with the prod stack's services" : ""}`, () =>
    deployInChild(
      LOCAL_STACK,
      run.projectDir,
      run.stateDir,
      drillLocalConfig(run.platform, run.projectDir, run.stateDir, { source: run.source, region: run.catalogMode !== undefined, seeded: run.dataSizeMiB > 0, ...(run.catalogMode === "restore" ? { catalogFullSchedule: DRILL_FULL_SCHEDULE } : {}) }),
      run.log,
    ),
  );
  recordDeployment(run, LOCAL_STACK, d);
}

/** Waits for every protected service and sidecar; returns each protected service's container. */
export async function waitForServices(run: DrillRun): Promise<Record<string, string>> {
  const { log } = run;
  const containers: Record<string, string> = {};
  await run.phase("wait for services and healthy sidecars", async () => {
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
    for (const s of run.services) {
      if (!containers[s.name]) throw new Error(`the local stack has no running service labelled ${LABELS.service}=${s.name}.`);
      await waitUntilAccepting(s, containers[s.name]!);
    }
  });
  return containers;
}

/** --data-size: fills each service with its seed data and takes its fingerprint (seed.ts). */
export async function seedServices(run: DrillRun, containers: Record<string, string>): Promise<void> {
  if (!run.dataSizeMiB) return;
  await run.phase(`seed ${run.dataSizeMiB} MiB into each service`, async () => {
    for (const s of run.services) {
      const got = await seed(drillEngine(s), containers[s.name]!, run.dataSizeMiB, s.dataPath, (l) => run.log(`  ${s.name}: ${l}`)).catch((e: Error) => {
        throw new Error(`${s.name}: ${e.message}`);
      });
      if (!got) {
        run.log(`  ${s.name}: not seeded (a TSDB snapshot backs up Prometheus's own samples only)`);
        continue;
      }
      run.seeds[s.name] = got;
      run.log(`  ${s.name}: ${(got.bytes / 2 ** 20).toFixed(0)} MiB seeded in ${got.seconds.toFixed(1)} s (${got.fingerprint})`);
    }
  });
  await fullAfterSeeding(run);
}

/**
 * A seeded drill's schedules take no full during the drill (SEEDED_DRILL_FULL_SCHEDULE), so it
 * takes one full of each seeded service now, in its sidecar, as an operator does after a bulk
 * load: the writes that follow are then covered by a full that holds the whole seed, and the
 * incrementals and WAL.
 */
async function fullAfterSeeding(run: DrillRun): Promise<void> {
  await run.phase("take a full backup of each seeded service", async () => {
    for (const s of run.services) {
      if (!run.seeds[s.name]) continue;
      const sidecar = `${run.prefix}-${s.name}-backup`;
      run.log(`  ${s.name}: 'kdr-agent backup --type full --no-logical' in ${sidecar} (after any run in progress there)`);
      const t0 = Date.now();
      // The base alone: the logical dumps (a first full takes them when due) are not what the drill
      // restores, and they doubled this full's time and stored bytes at 1 GiB (2026-12-06).
      const r = await dockerExecWatched(await waitForTask(sidecar, 180_000, false), ["kdr-agent", "backup", "--type", "full", "--no-logical", "--wait", "1200", "--json"], 2_400_000, (l) => run.log(`    ${l}`));
      if (r.code !== 0) throw new Error(`${s.name}: the full after seeding ('kdr-agent backup --type full' in ${sidecar}) failed (exit ${r.code}): ${r.stderr.trim().slice(-1500)}`);
      let b: { status: string; backupId?: string; storedBytes?: number; rawBytes?: number; reason?: string };
      try {
        b = JSON.parse(r.stdout) as typeof b;
      } catch {
        throw new Error(`${s.name}: the full after seeding exited 0 but printed no JSON summary: ${r.stdout.trim().slice(-800)}`);
      }
      if (b.status !== "completed") throw new Error(`${s.name}: the full after seeding was ${b.status}: ${b.reason ?? r.stdout.trim()}`);
      const seconds = (Date.now() - t0) / 1000;
      run.seedFullSeconds = Math.max(run.seedFullSeconds ?? 0, seconds);
      run.log(`  ${s.name}: full ${b.backupId} holds the seed: ${((b.rawBytes ?? 0) / 2 ** 20).toFixed(0)} MiB read, ${((b.storedBytes ?? 0) / 2 ** 20).toFixed(0)} MiB stored, ${seconds.toFixed(1)} s`);
    }
  });
}

/** Starts the writers and waits until each service has a backup holding their writes. */
export async function writeAndBackUp(run: DrillRun, db: pg.Pool, containers: Record<string, string>): Promise<{ writers: Writer[]; writesStart: number }> {
  const { services, log } = run;
  // Each write is a `docker exec`: on one 2-core node the prod stack's nine writers at the pace of
  // the local stack's three kept the load near 50 (probes timed out, backups crawled). Past three
  // services each writer pauses 1.5 s: still a write every 2-3 s per service.
  const pauseMs = services.length > 3 ? 1500 : 300;
  const writers = services.map((s) => new Writer(drillEngine(s), containers[s.name]!, run.runId, s.dataPath, pauseMs));
  let writesStart = 0;
  await run.phase("write sample data and take backups", async () => {
    for (const s of services) await prepare(drillEngine(s), containers[s.name]!).then(() => undefined, (e: Error) => { throw new Error(`${s.name}: ${e.message}`); });
    writesStart = Date.now();
    for (const w of writers) w.start();
    log(`  writing to ${services.map((s) => s.name).join(", ")} for at least ${run.writeSeconds} s, until each has a backup holding the writes`);
    // A drill that fails here stops its writers first: left running they keep the process alive
    // (it printed its verdict, then hung until killed: cold run 27) and load the node meanwhile.
    // A backup as slow as the seed's full may begin just before the first write: the next one holds it.
    const graceSeconds = 240 + 2 * Math.ceil(run.seedFullSeconds ?? 0);
    await watchBackups(db, run.tenantId, services, writers, writesStart, run.writeSeconds, log, run.startedAt, graceSeconds).catch(async (e: unknown) => {
      await Promise.all(writers.map((w) => w.stop()));
      throw e;
    });
  });
  return { writers, writesStart };
}

/**
 * The disaster: the writers stop, then each primary and its data volume go, with the sidecars
 * next to them (a lost primary takes its backup sidecar along; buckets, catalog and cron survive).
 * Returns what each writer had acknowledged, and when the disaster was declared.
 */
export async function disaster(run: DrillRun, writers: Writer[], regionLoss?: () => Promise<void>): Promise<{ written: Map<string, WriterStats>; declaredAt: number }> {
  const { services, prefix, log } = run;
  const written = new Map<string, WriterStats>();
  let declaredAt = 0;
  const what = regionLoss ? "disaster: lose the primary region (services, volumes, S3 server, catalog)" : "disaster: remove the primary services and their volumes";
  await run.phase(what, async () => {
    for (const [i, w] of writers.entries()) written.set(services[i]!.name, await w.stop());
    // A region goes at once: its S3 server and catalog with the services, before any of them can
    // ship or copy another byte.
    await regionLoss?.();
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
  return { written, declaredAt };
}

/** Deploys the recovery stack reading from `source`; returns what each restore job restored. */
export async function recover(run: DrillRun, db: pg.Pool, source: "primary" | "dr" = "primary"): Promise<Awaited<ReturnType<typeof restoreResults>>> {
  const d = await run.phase(`recover: deploy the recovery stack${source === "dr" ? " from the DR region" : ""}`, () =>
    deployInChild(
      RECOVERY_STACK,
      run.projectDir,
      run.stateDir,
      drillRecoveryConfig(run.platform, run.projectDir, run.target, run.stateDir, source, source === "dr" ? (run.catalogMode ?? "existing") : "existing"),
      run.log,
    ),
  );
  recordDeployment(run, RECOVERY_STACK, d);
  return restoreResults(d, db);
}

/**
 * Reads every recovered service back and judges it against what was acknowledged. Returns the
 * reports and the RTO target: the tightest a recovered service declares, at most P0's.
 */
export async function verifyRecovered(
  run: DrillRun,
  written: Map<string, WriterStats>,
  restores: Awaited<ReturnType<typeof restoreResults>>,
  declaredAt: number,
): Promise<{ reports: ServiceReport[]; rtoTarget: number }> {
  const { target, log } = run;
  const reports: ServiceReport[] = [];
  let rtoTarget = P0_RTO_SECONDS;
  await run.phase("verify the recovered data", async () => {
    for (const s of run.services) {
      const name = `${run.prefix}-${s.name}`;
      const id = await waitForTask(name, 180_000);
      await waitUntilAccepting(s, id, true);
      const labels = await serviceLabels(name);
      const rpoTarget = Number(labels[LABELS.rpoSeconds]);
      const rto = Number(labels[LABELS.rtoSeconds]);
      if (Number.isFinite(rto) && rto > 0) rtoTarget = Math.min(rtoTarget, rto);
      const got = await readBack(drillEngine(s), id, run.runId, s.dataPath);
      const seeded = run.seeds[s.name];
      const seedBack = seeded ? await fingerprint(drillEngine(s), id, s.dataPath).catch((e: Error) => ({ bytes: 0, fingerprint: `unreadable: ${e.message}` })) : undefined;
      const recoverySeconds = (Date.now() - declaredAt) / 1000;
      const ownRto = Number.isFinite(rto) && rto > 0 ? rto : P0_RTO_SECONDS;
      const rep: ServiceReport = {
        ...verify({ name: s.name, engine: drillEngine(s) }, written.get(s.name)!, got, restores[s.name], target, s.engine === "postgres" ? Math.min(60, rpoTarget || 60) : rpoTarget),
        priority: s.priority,
        recoverySeconds,
        rtoTargetSeconds: ownRto,
        rtoMet: recoverySeconds <= ownRto,
        ...(seeded && seedBack ? { seed: { bytes: seeded.bytes, fingerprint: seeded.fingerprint, restoredFingerprint: seedBack.fingerprint, matched: seedBack.fingerprint === seeded.fingerprint } } : {}),
      };
      reports.push(rep);
      if (rep.seed) log(`  ${s.name}: seed data ${rep.seed.matched ? "back whole" : "DIFFERS"} (${rep.seed.restoredFingerprint}${rep.seed.matched ? "" : `; seeded ${rep.seed.fingerprint}`})`);
      log(`  ${s.name}: ${rep.restored}/${rep.expected} expected writes back (${rep.missing.length} missing, ${rep.corrupted.length} corrupted${target === "latest" ? "" : `, ${rep.unexpected.length} after the point`}), data loss ${rep.dataLossSeconds?.toFixed(1) ?? "?"} s (target ${rep.rpoTargetSeconds} s), recovered in ${recoverySeconds.toFixed(1)} s (${s.priority} target ${ownRto} s)`);
    }
  });
  for (const r of reports) {
    if (r.missing.length) run.failures.push(`${r.service}: ${r.missing.length} write(s) acknowledged before the recovery point are missing (e.g. ${r.missing.slice(0, 3).join(", ")})`);
    if (r.corrupted.length) run.failures.push(`${r.service}: ${r.corrupted.length} write(s) came back with different content (e.g. ${r.corrupted.slice(0, 3).join(", ")})`);
    if (r.unexpected.length) run.failures.push(`${r.service}: ${r.unexpected.length} write(s) made after the point in time are present`);
    if (!r.rpoMet) run.failures.push(`${r.service}: data loss ${r.dataLossSeconds?.toFixed(1) ?? "unknown"} s exceeds its RPO target ${r.rpoTargetSeconds} s`);
    if (r.seed && !r.seed.matched) run.failures.push(`${r.service}: the seed data came back different: ${r.seed.restoredFingerprint}, seeded ${r.seed.fingerprint}`);
    if (r.rtoMet === false) run.failures.push(`${r.service}: recovered in ${r.recoverySeconds!.toFixed(1)} s, over its ${r.priority} RTO of ${r.rtoTargetSeconds} s`);
  }
  return { reports, rtoTarget };
}

export async function cleanUp(run: DrillRun): Promise<void> {
  await run.phase("clean up: destroy the recovery and local stacks", async () => {
    for (const stack of [RECOVERY_STACK, LOCAL_STACK]) await destroy({ stack, stateDir: run.stateDir, force: true, log: (l) => run.log(`  ${l}`) });
    const removed = await setNodeLabels(run.nodeLabels, true);
    if (Object.keys(removed).length) run.log(`  removed the node labels this drill added: ${Object.keys(removed).join(", ")}`);
    rmSync(run.marker, { force: true });
  });
}

/** Waits until the service inside the container answers (PostgreSQL: promoted, out of recovery). */
async function waitUntilAccepting(s: ServiceSpec, container: string, recovered = false, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    let r;
    if (s.engine === "postgres") {
      r = await dockerExec(container, ["psql", "-X", "-U", s.user ?? "postgres", "-d", "postgres", "-At", "-c", "SELECT pg_is_in_recovery()"]);
      if (r.code === 0 && r.stdout.trim() === "f") return;
    } else if (s.engine === "redis") {
      r = await dockerExec(container, ["redis-cli", "PING"]);
      if (r.code === 0 && /PONG|NOAUTH/.test(r.stdout)) return;
    } else if (drillEngine(s) === "tsdb") {
      // Serving its TSDB (a restored one has loaded its blocks), with a sample to read.
      r = await dockerExec(container, ["promtool", "query", "instant", "http://localhost:9090", 'up{job="prometheus"}']);
      if (r.code === 0 && /=> 1 @/.test(r.stdout)) return;
    } else {
      r = await dockerExec(container, ["test", "-d", s.dataPath]);
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
export async function watchBackups(db: pg.Pool, tenantId: string, services: ServiceSpec[], writers: Writer[], writesStart: number, writeSeconds: number, log: (l: string) => void, since = writesStart - 120_000, graceSeconds = 240): Promise<void> {
  const seen = new Set<string>();
  const maxMs = (writeSeconds + graceSeconds) * 1000;
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
      const w = writers[i]!.stats;
      // Holding a write means taken after it was acknowledged: a snapshot begun after the writers
      // started but before this service's first acknowledgement holds none (cold run 40's drill
      // restored such a Redis snapshot: nothing was expected back). For a snapshot the point
      // is where it began (what was acknowledged before it is in it). PostgreSQL's writes are held
      // by any base with the WAL archived past them (checked below): the base taken after seeding
      // holds them so, as a restore replays them.
      const firstAck = w.acks[0]?.ackedAt ?? Infinity;
      const holds = (b: (typeof rows)[number]) => (s.engine === "postgres" ? b.createdAt.getTime() >= since : ((b.recoveryPointStart ?? b.recoveryPointEnd)?.getTime() ?? 0) > firstAck);
      const good = rows.filter((b) => b.serviceName === s.name && b.backupStatus === "completed" && b.backupType !== "wal" && holds(b));
      let line = `${s.name} ${w.acks.length} writes${w.failures ? ` (${w.failures} failed: ${w.lastError})` : ""}, ${good.length} backup(s) with them`;
      if (!w.acks.length) missing.push(`${s.name}: no write acknowledged yet`);
      else if (good.length === 0) missing.push(`${s.name}: no completed backup taken after its first acknowledged write`);
      if (s.engine === "postgres") {
        const wal = await cat.listWalSegments(db, s.name, { tenantId });
        const newest = Math.max(0, ...wal.map((x) => x.coversUntil.getTime()));
        const fresh = wal.filter((x) => x.uploadedAt.getTime() >= writesStart).length;
        line += `, ${fresh} WAL segment(s) uploaded, WAL lag ${newest ? ((Date.now() - newest) / 1000).toFixed(0) : "-"} s`;
        if (newest <= firstAck) missing.push(`${s.name}: no WAL archived since its first acknowledged write`);
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
