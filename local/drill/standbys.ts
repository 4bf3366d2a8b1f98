/**
 * Warm standbys as a drill watches them (failover and failback): that each holds the newest
 * write and streams from its primary, and that `kryonix-dr status` (the same report) says so;
 * after a failover, that replication was reversed.
 */
import type pg from "pg";
import { statusReport } from "../../cli/commands/status.js";
import { waitForTask, dockerExec } from "./docker.js";
import { iso, type DrillRun } from "./phases.js";
import { readBack, type Writer } from "./writers.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Where a set of standbys runs: each one's Swarm name, and the region it reports from. */
export interface StandbyPlace {
  name: (service: string) => string;
  region: string;
  /** The writers' run id (their writes are read back by it). @default the drill's */
  runId?: string;
}

/**
 * Waits until each standby holds the newest write acknowledged when the wait began: it follows.
 * A PostgreSQL standby must also stream from its primary, which answers here (the archived WAL
 * is its fallback, not its only feed): returns how each one follows.
 */
export async function waitForStandbys(run: DrillRun, writers: Map<string, Writer>, db: pg.Pool, where: StandbyPlace): Promise<Map<string, string>> {
  const how = new Map<string, string>();
  for (const s of run.services) {
    const w = writers.get(s.name)!;
    const mark = w.stats.acks.at(-1);
    if (!mark) throw new Error(`${s.name}: no write acknowledged yet, nothing to follow`);
    const standby = where.name(s.name);
    const container = await waitForTask(standby, 180_000, false);
    const t0 = Date.now();
    for (;;) {
      const got = await readBack(s.engine, container, where.runId ?? run.runId, s.dataPath).catch(() => new Map<string, string>());
      if (got.has(mark.key)) {
        run.log(`  ${s.name}: the standby holds the write acknowledged at ${iso(mark.ackedAt)} (${((Date.now() - mark.ackedAt) / 1000).toFixed(1)} s later; ${got.size} writes in all)`);
        break;
      }
      if (Date.now() - t0 > 240_000) throw new Error(`${s.name}: the standby did not receive the write acknowledged at ${iso(mark.ackedAt)} within 240 s: see 'docker service logs ${standby}${s.engine === "postgres" ? "-follower" : ""}'`);
      await sleep(2000);
    }
    if (s.engine !== "postgres") {
      how.set(s.name, "replica (Redis replication)");
      await statusShowsStandby(run, db, s.name, where.region, standby);
      continue;
    }
    for (const t1 = Date.now(); ; ) {
      // Runbook §9a's check, as written there.
      const r = await dockerExec(container, ["psql", "-U", "postgres", "-Atc", "SELECT status, sender_host FROM pg_stat_wal_receiver"], 30_000);
      const sender = r.code === 0 ? (/^streaming\|(\S+)$/m.exec(r.stdout)?.[1] ?? "") : "";
      if (sender) {
        how.set(s.name, `streaming from ${sender}`);
        run.log(`  ${s.name}: the standby streams from ${sender} (and replays the WAL copied to the DR region when it cannot)`);
        break;
      }
      if (Date.now() - t1 > 60_000) throw new Error(`${s.name}: the standby does not stream from its primary, which answers: see 'docker service logs ${standby}' (primary_conninfo, pg_hba on the primary)`);
      await sleep(2000);
    }
    await statusShowsStandby(run, db, s.name, where.region, standby);
  }
  return how;
}

/** The service's entry in `kryonix-dr status` (the same report), as the drill's tenant sees it. */
async function serviceStatusOf(run: DrillRun, db: pg.Pool, service: string) {
  const c = await db.connect();
  try {
    return (await statusReport(c, { tenantId: run.tenantId })).tenants[0]?.services.find((x) => x.service === service);
  } finally {
    c.release();
  }
}

/**
 * Runbook §9a's `kryonix-dr status` (the same report): the standby's follower reports it to the
 * catalog, streaming, within the RPO, judged ok. Waits up to 60 s for the first such look.
 */
async function statusShowsStandby(run: DrillRun, db: pg.Pool, service: string, region: string, standby: string): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const st = await serviceStatusOf(run, db, service);
    const sb = st?.standbys.find((b) => b.region === region);
    if (sb?.ok && sb.streaming && sb.state === "following") {
      run.log(`  ${service}: kryonix-dr status: ${sb.message}`);
      return;
    }
    if (Date.now() - t0 > 60_000) {
      throw new Error(`${service}: kryonix-dr status does not show its standby in region ${region} following within the RPO: ${sb ? sb.message : "no report from its follower in the catalog"}: see 'docker service logs ${standby}-follower'`);
    }
    await sleep(2000);
  }
}

/**
 * Runbook §9b's checks in `kryonix-dr status` once replication is reversed: the copies in the
 * primary region, the reverse replicator's backlog there drained (it reports after its next pass,
 * so up to 60 s), and the promoted standby shown as promoted, not as a follower gone silent.
 */
export async function statusAfterReversal(run: DrillRun, db: pg.Pool, service: string, failures: string[]): Promise<void> {
  const primary = run.platform.regions.primary.name;
  const t0 = Date.now();
  for (;;) {
    const st = await serviceStatusOf(run, db, service);
    const copies = st?.drCopies.find((x) => x.region === primary);
    const back = st?.replication.find((x) => x.region === primary);
    const standby = st?.standbys.find((x) => x.region === run.platform.regions.dr.name);
    if (copies && back?.ok && back.pendingObjects === 0 && !back.lastError && standby?.ok && standby.state === "promoted") {
      run.log(`  ${service}: kryonix-dr status: ${copies.copies} object(s) copied to region ${primary}; ${back.message}; ${standby.message}`);
      return;
    }
    if (Date.now() - t0 > 60_000) {
      failures.push(
        `${service}: kryonix-dr status after the reversal: ${copies ? `${copies.copies} copies in region ${primary}` : `no copies in region ${primary}`}; ` +
          `${back ? back.message : `no backlog report from the replicator to region ${primary}`}; ${standby ? standby.message : "no standby row"}`,
      );
      return;
    }
    await sleep(3000);
  }
}

