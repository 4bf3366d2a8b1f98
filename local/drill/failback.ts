/**
 * The failover drill's way back (issue #14, runbook §9c), run once the primary region has
 * returned and holds the promoted services' backups: each step is a command of the runbook.
 *
 * 1. The local stack is deployed with kryonix-dr:failback: its PostgreSQL and Redis return as new
 *    services (`<prefix>-<service>-g2`), standbys of the promoted ones, seeded from the primary
 *    region's copies of their backups and streaming from them; the drill waits until they hold
 *    the newest write.
 * 2. failback.switch true: the hand-over (`kdr-agent standby switchover`: the promoted side
 *    fenced, the exact catch-up, the promotion), then the stable names move back.
 *    The returned PostgreSQL's first base is taken at once and waited for in the DR region.
 * 3. The local-dr stack goes back to standbys: kryonix-dr:active false with failover.generation 2
 *    (new standbys of the returned services; the volumes promoted during the outage are kept).
 * Writers write through the stable names throughout; every write the promoted services held, and
 * every one acknowledged during the failback, must be on the returned services. The longest pause
 * in writes through the stable names across the hand-over is measured and reported.
 */
import type pg from "pg";
import { loadStackConfig } from "../program.js";
import { deployInChild } from "./deploy.js";
import { dockerExec, waitForTask } from "./docker.js";
import { drillDrConfig, drPrefix, LOCAL_DR_STACK } from "./failover.js";
import { waitForStandbys } from "./standbys.js";
import { iso, type DrillRun } from "./phases.js";
import { LOCAL_STACK } from "./stacks.js";
import { readBack, Writer } from "./writers.js";

/** The returning services' generation, and the dr stack's next set of standbys. */
export const FAILBACK_GENERATION = 2;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface FailbackServiceReport {
  service: string;
  engine: string;
  /** The returned service's Swarm name. */
  returned: string;
  /** How it followed the promoted service before the switch. */
  followedBefore: string | null;
  /** Writes acknowledged through the stable name during the failback. */
  writesDuring: number;
  writesFailedDuring: number;
  /** The longest time between two acknowledged writes through the stable name, from the switch on. */
  longestWriteGapSeconds: number | null;
  /** Held by the promoted service before the failback, or acknowledged during it, and not on the returned service: must be none. */
  missing: string[];
  /** The hand-over's own disaster_recovery_log row (incident_type failback). */
  handover?: { recoveryId: string; seconds: number | null; phases: Record<string, number> };
  /** How the dr stack's new standby follows the returned service. */
  drStandby: string | null;
  /** This stack's sidecar at work on the returned service again: its first backup (or WAL segment) after the switch. */
  backedUpAfterSeconds: number | null;
}

export interface FailbackReport {
  generation: number;
  services: FailbackServiceReport[];
}

/** The dr stack's failover config from its file, with another generation of standbys. */
function drConfigOfGeneration(run: DrillRun, generation: number) {
  const raw = loadStackConfig(run.projectDir, LOCAL_DR_STACK).config["kryonix-dr:failover"];
  const failover = raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
  return { ...drillDrConfig(run, false), failover: { value: { ...failover, generation } } };
}

/** Waits for this stack's sidecar to back up the returned service: a WAL segment (PostgreSQL) or a completed backup (Redis) after `since`. */
async function firstBackupAfter(run: DrillRun, db: pg.Pool, service: string, engine: string, since: number): Promise<number | null> {
  // PostgreSQL: a segment of the returned server's timeline, newer than any before the switch (the
  // promoted side's sidecar uploads its own until the dr stack goes back to standbys).
  const sql =
    engine === "postgres"
      ? `SELECT min(uploaded_at) AS at FROM wal_segment WHERE tenant_id = $1 AND service_name = $2 AND uploaded_at > $3
           AND timeline > (SELECT coalesce(max(timeline), 0) FROM wal_segment WHERE tenant_id = $1 AND service_name = $2 AND uploaded_at <= $3)`
      : "SELECT min(completed_at) AS at FROM backup_management WHERE tenant_id = $1 AND service_name = $2 AND backup_status = 'completed' AND storage_region = $4 AND created_at > $3";
  const args = engine === "postgres" ? [run.tenantId, service, new Date(since)] : [run.tenantId, service, new Date(since), run.platform.regions.primary.name];
  const deadline = Date.now() + 120_000;
  for (;;) {
    const at = (await db.query<{ at: Date | null }>(sql, args)).rows[0]?.at;
    if (at) return (at.getTime() - since) / 1000;
    if (Date.now() > deadline) return null;
    await sleep(3000);
  }
}

/**
 * Runbook §9c step 2b: the returned PostgreSQL's first base, taken now in its sidecar (not at the
 * next schedule), and waited for in the DR region: the dr stack's new standby is seeded from it
 * (an older base lies on the timeline the promoted side left). Returns its id.
 */
async function firstBaseInDr(run: DrillRun, db: pg.Pool, service: string, since: number): Promise<string> {
  const sidecar = `${run.prefix}-${service}-backup`;
  const r = await dockerExec(await waitForTask(sidecar, 180_000, false), ["kdr-agent", "backup", "--type", "full", "--wait", "300"], 600_000);
  if (r.code !== 0) throw new Error(`${service}: 'kdr-agent backup --type full' in ${sidecar} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(-1500)}`);
  const { rows } = await db.query<{ backup_id: string }>(
    `SELECT backup_id FROM backup_management WHERE tenant_id = $1 AND service_name = $2 AND backup_type = 'full' AND backup_status = 'completed'
        AND storage_region = $3 AND created_at > $4 ORDER BY created_at DESC LIMIT 1`,
    [run.tenantId, service, run.platform.regions.primary.name, new Date(since)],
  );
  const id = rows[0]?.backup_id;
  if (!id) throw new Error(`${service}: 'kdr-agent backup --type full' in ${sidecar} exited 0 but the catalog holds no full backup of it since the switch: ${r.stdout.trim().slice(-800)}`);
  const origin = new URL(run.platform.regions.dr.endpoint).origin;
  const t0 = Date.now();
  for (;;) {
    const { rows: c } = await db.query<{ artifacts: number; copied: number }>(
      `SELECT count(*)::int AS artifacts, count(x.copy_version_id)::int AS copied FROM backup_artifact a
         LEFT JOIN object_copy x ON x.endpoint = $2 AND x.object_key = a.object_key AND x.source_version_id = a.version_id
        WHERE a.backup_id = $1`,
      [id, origin],
    );
    if (c[0]!.artifacts > 0 && c[0]!.copied === c[0]!.artifacts) {
      run.log(`  ${service}: base ${id.slice(0, 8)} of the returned service copied to the DR region (${c[0]!.copied} object(s)), ${((Date.now() - t0) / 1000).toFixed(1)} s after it completed`);
      return id;
    }
    if (Date.now() - t0 > 180_000) throw new Error(`${service}: base ${id} of the returned service was not copied to the DR region within 180 s (${c[0]!.copied}/${c[0]!.artifacts} object(s)): see 'docker service logs' of the ${LOCAL_STACK} stack's replicators`);
    await sleep(3000);
  }
}

export async function runFailback(
  run: DrillRun,
  ctx: { db: pg.Pool; clients: Map<string, { id: string }>; track: (w: Writer) => void },
): Promise<FailbackReport> {
  const { db, clients } = ctx;
  const { failures, log } = run;
  const gen = FAILBACK_GENERATION;
  const returned = (service: string) => `${run.prefix}-${service}-g${gen}`;
  const standbys = run.services.map((s) => ({ name: s.name, engine: s.engine }));
  const reports = new Map<string, FailbackServiceReport>();

  // What the promoted services hold now: all of it must come back.
  const heldBefore = new Map<string, Set<string>>();
  for (const s of run.services) heldBefore.set(s.name, new Set((await readBack(s.engine, clients.get(s.name)!.id, run.runId, s.dataPath, s.name)).keys()));
  const fbRunId = `${run.runId}fb`;
  const writers = new Map(run.services.map((s) => [s.name, new Writer(s.engine, clients.get(s.name)!.id, fbRunId, s.dataPath, 200, s.name)]));
  for (const w of writers.values()) {
    ctx.track(w);
    w.start();
  }
  await sleep(2000);

  await run.phase(`failback: deploy the ${LOCAL_STACK} stack with kryonix-dr:failback (its services return as standbys of the promoted ones)`, () =>
    deployInChild(LOCAL_STACK, run.projectDir, run.stateDir, { failback: { value: { drStack: LOCAL_DR_STACK, standbys, switch: false, generation: gen } } }, log),
  );
  let following = new Map<string, string>();
  await run.phase("the returning standbys follow the promoted services", async () => {
    following = await waitForStandbys(run, writers, db, { name: returned, region: run.platform.regions.primary.name, runId: fbRunId });
  });
  const switchedAt = Date.now();
  await run.phase("failback: switch (kryonix-dr:failback.switch true: fence, exact catch-up, promote, the stable names back)", () =>
    deployInChild(LOCAL_STACK, run.projectDir, run.stateDir, { failback: { value: { drStack: LOCAL_DR_STACK, standbys, switch: true, generation: gen } } }, log),
  );
  await run.phase("the returned PostgreSQL's first base, now, copied to the DR region (kdr-agent backup --type full in its sidecar)", async () => {
    for (const s of run.services.filter((x) => x.engine === "postgres")) await firstBaseInDr(run, db, s.name, switchedAt);
  });
  await run.phase(`the ${LOCAL_DR_STACK} stack's services become standbys again (kryonix-dr:active false, failover.generation ${gen})`, () =>
    deployInChild(LOCAL_DR_STACK, run.projectDir, run.stateDir, drConfigOfGeneration(run, gen), log),
  );
  let drFollowing = new Map<string, string>();
  await run.phase("the DR region's new standbys follow the returned services", async () => {
    drFollowing = await waitForStandbys(run, writers, db, { name: (service) => `${drPrefix(run)}-${service}-g${gen}`, region: run.platform.regions.dr.name, runId: fbRunId });
  });
  const written = new Map<string, Awaited<ReturnType<Writer["stop"]>>>();
  for (const [name, w] of writers) written.set(name, await w.stop());

  await run.phase("verify the returned services", async () => {
    for (const s of run.services) {
      const container = await waitForTask(returned(s.name), 60_000, false);
      const got = new Set([...(await readBack(s.engine, container, run.runId, s.dataPath)).keys(), ...(await readBack(s.engine, container, fbRunId, s.dataPath)).keys()]);
      const st = written.get(s.name)!;
      const expected = [...heldBefore.get(s.name)!, ...st.acks.map((a) => a.key)];
      const missing = expected.filter((k) => !got.has(k));
      const after = st.acks.filter((a) => a.ackedAt >= switchedAt).map((a) => a.ackedAt);
      const gaps = [switchedAt, ...after].slice(1).map((t, i) => (t - [switchedAt, ...after][i]!) / 1000);
      const rep: FailbackServiceReport = {
        service: s.name,
        engine: s.engine,
        returned: returned(s.name),
        followedBefore: following.get(s.name) ?? null,
        writesDuring: st.acks.length,
        writesFailedDuring: st.failures,
        longestWriteGapSeconds: gaps.length ? Math.max(...gaps) : null,
        missing,
        drStandby: drFollowing.get(s.name) ?? null,
        backedUpAfterSeconds: null,
      };
      reports.set(s.name, rep);
      log(
        `  ${s.name}: ${expected.length - missing.length}/${expected.length} writes on ${rep.returned} (${heldBefore.get(s.name)!.size} the promoted service held, ${st.acks.length} acknowledged during the failback, ${st.failures} failed); ` +
          `longest pause in writes through '${s.name}' from the switch on: ${rep.longestWriteGapSeconds?.toFixed(1) ?? "-"} s`,
      );
      if (missing.length) failures.push(`${s.name}: ${missing.length} write(s) held by the promoted service or acknowledged during the failback are not on the returned ${rep.returned} (e.g. ${missing.slice(0, 3).join(", ")})`);
      if (!after.length) failures.push(`${s.name}: no write through '${s.name}' was acknowledged after the switch: ${st.lastError ?? ""}`);
    }
  });
  await run.phase("this stack's sidecars back the returned services up", async () => {
    for (const rep of reports.values()) {
      rep.backedUpAfterSeconds = await firstBackupAfter(run, db, rep.service, rep.engine, switchedAt);
      if (rep.backedUpAfterSeconds === null) failures.push(`${rep.service}: no backup of the returned ${rep.returned} by ${run.prefix}-${rep.service}-backup (${rep.engine === "postgres" ? "a WAL segment of its new timeline" : "a completed backup"}) within 120 s of this check: see 'docker service logs ${run.prefix}-${rep.service}-backup'`);
      else log(`  ${rep.service}: backed up again ${rep.backedUpAfterSeconds.toFixed(1)} s after the switch began (${rep.engine === "postgres" ? "its first WAL segment" : "its first backup"} of the returned service)`);
    }
  });
  const rows = await db.query<{ recovery_id: string; affected_services: string[]; seconds: number | null; phase_timings: Record<string, number> }>(
    `SELECT recovery_id, affected_services, extract(epoch FROM actual_recovery_time)::float AS seconds, phase_timings FROM disaster_recovery_log
      WHERE tenant_id = $1 AND incident_type = 'failback' AND initiated_at >= $2 ORDER BY initiated_at`,
    [run.tenantId, new Date(switchedAt)],
  );
  for (const rep of reports.values()) {
    const r = rows.rows.find((x) => x.affected_services[0] === rep.service);
    if (r) rep.handover = { recoveryId: r.recovery_id, seconds: r.seconds, phases: r.phase_timings };
    else failures.push(`${rep.service}: the switchover recorded no failback in disaster_recovery_log`);
  }
  log(`  failback done at ${iso(Date.now())}`);
  return { generation: gen, services: [...reports.values()] };
}
