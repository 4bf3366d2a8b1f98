/**
 * `kdr-agent standby switchover [--target <dir>]`: the planned hand-over back (failback, runbook
 * §9c). The standby (KDR_TARGET_HOST) follows a primary that still answers (KDR_PRIMARY_HOST: the
 * promoted service in the other region). Unlike `standby activate`, which refuses while the
 * primary answers, a switchover needs it: it fences the primary so nothing more is written there,
 * waits until the standby holds the primary's last write exactly, promotes the standby, and
 * leaves the old primary fenced (read-only) for its stack to turn into a standby again.
 *
 * - PostgreSQL: the primary is made read-only (`default_transaction_read_only`, by ALTER SYSTEM and
 *   a reload) and its client sessions are ended (a transaction in flight was never acknowledged);
 *   its WAL position after that is the last write, and the standby, streaming, must replay up to it.
 * - Redis: the primary's writes are paused (CLIENT PAUSE WRITE, which expires by itself should this
 *   process die), the replica must reach the primary's replication offset, then it becomes a
 *   master and the old primary its replica (its writes refused with READONLY).
 *
 * Any refusal before the promotion lifts the fence: the primary takes writes again, and nothing moved.
 */
import { execFile } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import * as cat from "../catalog.js";
import { ConfigError, type Settings } from "../config.js";
import { STANDBY_PASSFILE, pgConnect, pgEnv } from "../engines/postgres.js";
import { redisArgs } from "../engines/redis.js";
import { log } from "../storage/progress.js";
import { primaryPort, recordPromotion } from "./shared.js";
import { replayStatus } from "./standby.js";
import { redisInfo } from "./standby-redis.js";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface SwitchoverSummary {
  service: string;
  engine: string;
  /** The server promoted. */
  standby: string;
  /** The old primary, left fenced. */
  primary: string;
  alreadyActive: boolean;
  /** PostgreSQL: the fenced primary's last WAL position, which the standby replayed. Redis: its replication offset. */
  handedOverAt?: string;
  seconds: { fence: number; catchUp: number; promote: number; total: number };
  recoveryId?: string;
  notes: string[];
}

/** Thrown before the promotion: the fence was lifted, nothing moved. */
export class SwitchoverRefused extends Error {}

// ---------- PostgreSQL ----------

async function connectPrimary(s: Settings, host: string): Promise<pg.Client> {
  const env = pgEnv(s);
  const c = new pg.Client({ host, port: primaryPort(s), user: env.PGUSER, password: env.PGPASSWORD, database: "postgres", application_name: "kdr-agent switchover", connectionTimeoutMillis: 5000 });
  c.on("error", () => undefined);
  try {
    await c.connect();
  } catch (e) {
    throw new SwitchoverRefused(
      `the primary ${host} does not answer (${(e as Error).message}): a switchover needs it, to hand over its last write. ` +
        `If it is gone, this is a failover, not a failback: see docs/runbooks.md §9b.`,
    );
  }
  return c;
}

/** Makes the primary read-only and ends its client sessions; returns its WAL position after that. */
async function fencePostgres(p: pg.Client): Promise<string> {
  await p.query("ALTER SYSTEM SET default_transaction_read_only = on");
  await p.query("SELECT pg_reload_conf()");
  // Sessions started before the reload take the new default at their next transaction; one in
  // flight could still commit: ending every client session (not the WAL senders, which carry the
  // last WAL to the standby and to the backup sidecar) leaves nothing that can.
  await p.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()");
  const { rows } = await p.query<{ lsn: string }>("SELECT pg_current_wal_flush_lsn()::text AS lsn");
  return rows[0]!.lsn;
}

async function unfencePostgres(p: pg.Client): Promise<void> {
  await p.query("SET default_transaction_read_only = off");
  await p.query("ALTER SYSTEM RESET default_transaction_read_only");
  await p.query("SELECT pg_reload_conf()");
}

async function switchPostgres(s: Settings, o: { target?: string }, notes: string[]): Promise<{ handedOverAt: string; alreadyActive: boolean; t: number[] }> {
  const standby = s.require("targetHost");
  const primary = s.require("primaryHost");
  const rs = await replayStatus(s).catch((e: Error) => {
    throw new SwitchoverRefused(`the standby ${standby} does not answer (${e.message}): nothing to promote`);
  });
  if (!rs.inRecovery) return { handedOverAt: "", alreadyActive: true, t: [Date.now(), Date.now(), Date.now()] };
  if (!rs.streamingFrom) {
    throw new SwitchoverRefused(
      `the standby ${standby} does not stream from ${primary}: without streaming the primary's last writes cannot reach it before the promotion. ` +
        `Let it catch up and stream (its follower's log says when it does), then run the switchover again.`,
    );
  }
  const p = await connectPrimary(s, primary);
  try {
    const { rows } = await p.query<{ r: boolean }>("SELECT pg_is_in_recovery() AS r");
    if (rows[0]!.r) throw new SwitchoverRefused(`${primary} is itself a standby: there is no primary to hand over from; check ${primary}'s stack`);
    const t0 = Date.now();
    const lsn = await fencePostgres(p);
    log(`standby switchover ${s.service}: ${primary} is read-only and its sessions ended; waiting for ${standby} to replay up to ${lsn}`);
    const t1 = Date.now();
    try {
      const deadline = Date.now() + s.int("catchUpSeconds") * 1000;
      const sc = await pgConnect(s);
      try {
        for (;;) {
          const r = await sc.query<{ ok: boolean; at: string | null }>("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), $1::pg_lsn) >= 0 AS ok, pg_last_wal_replay_lsn()::text AS at", [lsn]);
          if (r.rows[0]!.ok) break;
          if (Date.now() > deadline) {
            throw new SwitchoverRefused(
              `the standby ${standby} replayed up to ${r.rows[0]!.at ?? "nothing"} in ${s.int("catchUpSeconds")} s, not the primary's last write at ${lsn}: ` +
                `promoting it would lose what lies between. ${primary} takes writes again; look at the standby's log, or give it longer (config kryonix-dr:failback.catchUpSeconds)`,
            );
          }
          await sleep(200);
        }
        const t2 = Date.now();
        const { rows: pr } = await sc.query<{ ok: boolean }>("SELECT pg_promote(true, 60) AS ok");
        if (!pr[0]!.ok) throw new SwitchoverRefused(`pg_promote on ${standby} did not finish within 60 s: look at the server's log. ${primary} takes writes again`);
        return { handedOverAt: lsn, alreadyActive: false, t: [t0, t1, t2] };
      } finally {
        await sc.end().catch(() => undefined);
      }
    } catch (e) {
      // Lifting the fence is safe only while the standby is still a standby.
      const state = await replayStatus(s).then((x) => (x.inRecovery ? "standby" : "promoted"), () => "unknown");
      if (state !== "standby") {
        throw new Error(
          `${(e as Error).message}; the standby ${standby} ${state === "promoted" ? "was promoted nonetheless" : "does not answer, so whether it was promoted is unknown"}: ` +
            `${primary} stays fenced (read-only) so that only one primary takes writes. Check ${standby}; should it still be a standby, lift the fence by hand ('ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf()' on ${primary})`,
        );
      }
      const failed = await unfencePostgres(p).then(
        () => "",
        (u: Error) => ` (BUT ${primary}'s fence could NOT be lifted: ${u.message}; run 'ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf()' on it)`,
      );
      if (failed) throw new SwitchoverRefused((e as Error).message + failed);
      throw e;
    }
  } finally {
    await p.end().catch(() => undefined);
    // The promoted server streams from nobody: the old primary's password goes with the role.
    if (o.target && existsSync(path.join(o.target, STANDBY_PASSFILE)) && !(await replayStatus(s).then((x) => x.inRecovery, () => true))) {
      rmSync(path.join(o.target, STANDBY_PASSFILE));
      notes.push(`removed ${STANDBY_PASSFILE} (the old primary's password for streaming) from ${o.target}`);
    }
  }
}

// ---------- Redis ----------

async function redis(s: Settings, host: string | undefined, port: number | undefined, ...cmd: string[]): Promise<string> {
  const { args, env } = redisArgs(s, host, port);
  const r = await run("redis-cli", [...args, "--no-auth-warning", ...cmd], { env, timeout: 10000 });
  return r.stdout.trim();
}

async function switchRedis(s: Settings, notes: string[]): Promise<{ handedOverAt: string; alreadyActive: boolean; t: number[] }> {
  const standby = s.require("targetHost");
  const primary = s.require("primaryHost");
  const port = primaryPort(s);
  const info = await redisInfo(s).catch((e: Error) => {
    throw new SwitchoverRefused(`the Redis replica ${standby} does not answer (${e.message}): nothing to promote`);
  });
  if (info.role === "master") return { handedOverAt: "", alreadyActive: true, t: [Date.now(), Date.now(), Date.now()] };
  if (info.master_link_status !== "up") {
    throw new SwitchoverRefused(`the Redis replica ${standby}'s link to ${info.master_host ?? primary} is ${info.master_link_status ?? "unknown"}: it must be up to take the primary's last write. Let it sync, then run the switchover again.`);
  }
  const pinfo = await redisInfo(s, primary, port).catch((e: Error) => {
    throw new SwitchoverRefused(`the primary ${primary} does not answer (${e.message}): a switchover needs it; if it is gone, this is a failover (docs/runbooks.md §9b)`);
  });
  if (pinfo.role !== "master") throw new SwitchoverRefused(`${primary} is not a master (role ${pinfo.role}): there is no primary to hand over from`);
  const waitMs = s.int("catchUpSeconds") * 1000;
  const t0 = Date.now();
  // Expires by itself (the wait plus a margin) should this process die before lifting it.
  const paused = await redis(s, primary, port, "CLIENT", "PAUSE", String(waitMs + 30_000), "WRITE");
  if (paused !== "OK") throw new SwitchoverRefused(`CLIENT PAUSE WRITE on ${primary} answered '${paused}' (Redis 6.2 or later is needed)`);
  /** Lifts the pause; returns what to add to the message when that failed. */
  const unpause = () =>
    redis(s, primary, port, "CLIENT", "UNPAUSE").then(
      () => "",
      (e: Error) => ` (${primary}'s writes could NOT be resumed: ${e.message}; its pause ends by itself within ${(waitMs + 30_000) / 1000} s)`,
    );
  const t1 = Date.now();
  let offset = "";
  try {
    offset = (await redisInfo(s, primary, port)).master_repl_offset ?? "";
    if (!/^\d+$/.test(offset)) throw new SwitchoverRefused(`${primary} reports no replication offset (INFO replication master_repl_offset '${offset}'): the hand-over cannot be judged. ${primary} takes writes again`);
    log(`standby switchover ${s.service}: ${primary}'s writes are paused; waiting for ${standby} to reach its replication offset ${offset}`);
    const deadline = Date.now() + waitMs;
    for (;;) {
      const r = await redisInfo(s);
      if (Number(r.slave_repl_offset) >= Number(offset)) break;
      if (Date.now() > deadline) {
        throw new SwitchoverRefused(
          `the Redis replica ${standby} reached offset ${r.slave_repl_offset ?? "none"} in ${waitMs / 1000} s, not the primary's ${offset}: promoting it would lose what lies between. ${primary} takes writes again`,
        );
      }
      await sleep(100);
    }
    const t2 = Date.now();
    const promoted = await redis(s, undefined, undefined, "REPLICAOF", "NO", "ONE");
    if (promoted !== "OK") throw new SwitchoverRefused(`REPLICAOF NO ONE on ${standby} answered '${promoted}'. ${primary} takes writes again`);
    // The old primary follows the new one: a client still writing there is refused (READONLY).
    const demoted = await redis(s, primary, port, "REPLICAOF", standby, String(s.int("targetPort", 6379))).catch((e: Error) => e.message);
    if (demoted !== "OK") notes.push(`REPLICAOF ${standby} on the old primary ${primary} answered '${demoted}': it may still take writes; stop it or deploy its stack as a standby now`);
    const stuck = await unpause();
    if (stuck) notes.push(stuck.trim());
    return { handedOverAt: offset, alreadyActive: false, t: [t0, t1, t2] };
  } catch (e) {
    const stuck = await unpause();
    if (stuck) throw new SwitchoverRefused((e as Error).message + stuck);
    throw e;
  }
}

export async function runSwitchover(s: Settings, connect: () => Promise<pg.Client>, o: { target?: string }): Promise<SwitchoverSummary> {
  const engine = s.engine;
  if (engine !== "postgres" && engine !== "redis") throw new ConfigError(`standby switchover hands PostgreSQL and Redis over; ${s.service} is ${engine}.`);
  const standby = s.require("targetHost");
  const primary = s.require("primaryHost");
  const notes: string[] = [];
  const r = engine === "postgres" ? await switchPostgres(s, o, notes) : await switchRedis(s, notes);
  const end = Date.now();
  const [t0, t1, t2] = r.t as [number, number, number];
  const seconds = { fence: (t1 - t0) / 1000, catchUp: (t2 - t1) / 1000, promote: (end - t2) / 1000, total: (end - t0) / 1000 };
  if (r.alreadyActive) return { service: s.service, engine, standby, primary, alreadyActive: true, seconds, notes };
  let recoveryId: string | undefined;
  try {
    const c = await connect();
    try {
      const region = s.get("s3Region");
      if (region) await cat.markStandbyPromoted(c, { tenantId: s.tenantId, service: s.service, region });
      recoveryId = await recordPromotion(c, s, {
        incidentType: "failback",
        procedure: "docs/runbooks.md §9c failback: kdr-agent standby switchover",
        initiatedAt: new Date(t0),
        metadata: { standby, fencedPrimary: primary, handedOverAt: r.handedOverAt },
        totalSeconds: seconds.total,
        dataLossSeconds: 0,
        phaseTimings: { fence: seconds.fence, catch_up: seconds.catchUp, promote: seconds.promote },
        notes,
      });
    } finally {
      await cat.closeCatalog(c);
    }
  } catch (e) {
    // The hand-over happened: the catalog's record of it is second to saying so.
    notes.push(`the switchover is not recorded in the catalog (${(e as Error).message})`);
  }
  return { service: s.service, engine, standby, primary, alreadyActive: false, handedOverAt: r.handedOverAt, seconds, recoveryId, notes };
}
