/**
 * `kdr-agent standby switchover [--target <dir>]`: the planned hand-over back (failback, runbook
 * §9c). The standby (KDR_TARGET_HOST) follows a primary that still answers (KDR_PRIMARY_HOST: the
 * promoted service in the other region). Unlike `standby activate`, which refuses while the
 * primary answers, a switchover needs it: it fences the primary so nothing more is written there,
 * waits until the standby holds the primary's last write exactly, promotes the standby, and
 * leaves the old primary fenced (read-only) for its stack to turn into a standby again.
 *
 * - PostgreSQL: the primary is made read-only (`default_transaction_read_only`, by ALTER SYSTEM and
 *   a reload; a soft fence: see fencePostgres), its client sessions are ended and waited for, and
 *   its WAL switched; the standby, streaming, must replay up to that switch.
 * - Redis: Redis's own FAILOVER on the primary (writes paused, the replica catches up, roles swap,
 *   or it aborts by itself and the primary takes writes again).
 *
 * A refusal before the promotion lifts the fence: the primary takes writes again, nothing moved.
 * Once the promotion is under way the old primary is never unfenced by this command.
 */
import { lookup } from "node:dns/promises";
import { existsSync, rmSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import * as cat from "../catalog.js";
import { ConfigError, type Settings } from "../config.js";
import { STANDBY_PASSFILE, pgConnect, pgEnv } from "../engines/postgres.js";
import { log } from "../storage/progress.js";
import { primaryPort, recordPromotion } from "./shared.js";
import { replayStatus } from "./standby.js";
import { redisCli, redisInfo } from "./standby-redis.js";

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

const UNFENCE_SQL = "ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf()";

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
  // This session's own statements stay writable whatever the fence does to the server's default.
  await c.query("SET default_transaction_read_only = off");
  return c;
}

const systemId = async (c: pg.Client) => (await c.query<{ id: string }>("SELECT system_identifier::text AS id FROM pg_control_system()")).rows[0]!.id;

/**
 * Makes the primary read-only and ends its client sessions, waiting until each has exited (one
 * inside its commit finishes it first); then switches the WAL segment, which flushes every commit
 * (also those acknowledged before their flush, synchronous_commit off) and returns the segment's
 * end: a position a standby's replay reaches exactly.
 * The fence is PostgreSQL's read-only default: it stops every client that does not override it
 * (BEGIN READ WRITE, or setting the default off itself). Such a client could still write on the
 * old primary; its stack turning it into a standby is what stops that.
 */
async function fencePostgres(p: pg.Client, primary: string): Promise<string> {
  await p.query("ALTER SYSTEM SET default_transaction_read_only = on");
  await p.query("SELECT pg_reload_conf()");
  const { rows } = await p.query<{ pid: number; gone: boolean }>(
    "SELECT pid, pg_terminate_backend(pid, 10000) AS gone FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
  );
  const left = rows.filter((r) => !r.gone).map((r) => r.pid);
  if (left.length) throw new SwitchoverRefused(`${left.length} client session(s) of ${primary} did not end within 10 s of being told to (pids ${left.join(", ")}): their writes could still commit`);
  return (await p.query<{ lsn: string }>("SELECT pg_switch_wal()::text AS lsn")).rows[0]!.lsn;
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
  const sc = await pgConnect(s);
  let fenced = false;
  let promoting = false;
  try {
    if ((await p.query<{ r: boolean }>("SELECT pg_is_in_recovery() AS r")).rows[0]!.r) {
      throw new SwitchoverRefused(`${primary} is itself a standby: there is no primary to hand over from; check ${primary}'s stack`);
    }
    const [pid, sid] = [await systemId(p), await systemId(sc)];
    if (pid !== sid) throw new SwitchoverRefused(`the standby ${standby} is not a copy of ${primary} (system identifiers ${sid} and ${pid}): it follows another server; check both hosts`);
    const t0 = Date.now();
    fenced = true;
    const lsn = await fencePostgres(p, primary);
    log(`standby switchover ${s.service}: ${primary} is read-only, its sessions ended, its WAL switched at ${lsn}; waiting for ${standby} to replay up to there`);
    const t1 = Date.now();
    const deadline = Date.now() + s.int("catchUpSeconds") * 1000;
    for (;;) {
      const r = await sc.query<{ ok: boolean; at: string | null }>("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), $1::pg_lsn) >= 0 AS ok, pg_last_wal_replay_lsn()::text AS at", [lsn]);
      if (r.rows[0]!.ok) break;
      if (Date.now() > deadline) {
        throw new SwitchoverRefused(
          `the standby ${standby} replayed up to ${r.rows[0]!.at ?? "nothing"} in ${s.int("catchUpSeconds")} s, not the primary's last write at ${lsn}: ` +
            `promoting it would lose what lies between; look at the standby's log, or give it longer (config kryonix-dr:failback.catchUpSeconds)`,
        );
      }
      await sleep(200);
    }
    const t2 = Date.now();
    // From here the standby may become a primary: the old one is never unfenced again.
    promoting = true;
    const { rows: pr } = await sc.query<{ ok: boolean }>("SELECT pg_promote(true, 60) AS ok");
    if (!pr[0]!.ok) throw new Error(`pg_promote on ${standby} did not finish within 60 s (it may still be under way): look at the server's log`);
    return { handedOverAt: lsn, alreadyActive: false, t: [t0, t1, t2] };
  } catch (e) {
    const msg = (e as Error).message;
    if (promoting) {
      throw new Error(
        `${msg}. ${primary} stays fenced (read-only) so that only one primary takes writes. Check ${standby}: ` +
          `should it still be a standby, lift the fence by hand ('${UNFENCE_SQL}' on ${primary})`,
      );
    }
    if (!fenced) throw e;
    const lifted = await p.query("ALTER SYSTEM RESET default_transaction_read_only").then(() => p.query("SELECT pg_reload_conf()")).then(
      () => `; the fence is lifted: ${primary} takes writes again`,
      (u: Error) => `; BUT ${primary}'s fence could NOT be lifted (${u.message}): run '${UNFENCE_SQL}' on it`,
    );
    throw new SwitchoverRefused(msg + lifted);
  } finally {
    await p.end().catch(() => undefined);
    await sc.end().catch(() => undefined);
    // The promoted server streams from nobody: the old primary's password goes with the role.
    const passfile = o.target ? path.join(o.target, STANDBY_PASSFILE) : "";
    if (promoting && passfile && existsSync(passfile)) {
      try {
        rmSync(passfile);
        notes.push(`removed ${STANDBY_PASSFILE} (the old primary's password for streaming) from ${o.target}`);
      } catch (e) {
        notes.push(`${passfile} could not be removed (${(e as Error).message}): remove it, or the promoted server's backups carry the old primary's password`);
      }
    }
  }
}

// ---------- Redis ----------

const redisRole = (i: Record<string, string>) => i.role ?? "unknown";

/**
 * Redis's own coordinated hand-over, FAILOVER (6.2 and later), run on the primary: it pauses the
 * primary's writes, waits until the named replica has its whole replication stream, makes it the
 * master and the old primary its replica (writes there refused with READONLY); past the timeout it
 * aborts by itself and the primary takes writes again.
 */
async function switchRedis(s: Settings): Promise<{ handedOverAt: string; alreadyActive: boolean; t: number[] }> {
  const standby = s.require("targetHost");
  const primary = s.require("primaryHost");
  const port = primaryPort(s);
  const standbyPort = s.int("targetPort", 6379);
  const info = await redisInfo(s).catch((e: Error) => {
    throw new SwitchoverRefused(`the Redis replica ${standby} does not answer (${e.message}): nothing to promote`);
  });
  if (redisRole(info) === "master") return { handedOverAt: "", alreadyActive: true, t: [Date.now(), Date.now(), Date.now()] };
  if (info.master_link_status !== "up") {
    throw new SwitchoverRefused(`the Redis replica ${standby}'s link to ${info.master_host ?? primary} is ${info.master_link_status ?? "unknown"}: it must be up to take the primary's last write. Let it sync, then run the switchover again.`);
  }
  const pinfo = await redisInfo(s, primary, port).catch((e: Error) => {
    throw new SwitchoverRefused(`the primary ${primary} does not answer (${e.message}): a switchover needs it; if it is gone, this is a failover (docs/runbooks.md §9b)`);
  });
  if (redisRole(pinfo) !== "master") throw new SwitchoverRefused(`${primary} is not a master (role ${redisRole(pinfo)}): there is no primary to hand over from`);
  // FAILOVER names the replica as the primary sees it: its address and listening port.
  const addresses = new Set((await lookup(standby, { all: true })).map((a) => a.address));
  const replicas = Object.entries(pinfo)
    .filter(([k]) => /^slave\d+$/.test(k))
    .map(([, v]) => Object.fromEntries(v.split(",").map((kv) => kv.split("=") as [string, string])));
  const mine = replicas.find((r) => addresses.has(r.ip ?? "") && Number(r.port) === standbyPort);
  if (!mine) {
    throw new SwitchoverRefused(
      `${primary} does not list ${standby} (${[...addresses].join(", ")} port ${standbyPort}) among its replicas (it lists ${replicas.map((r) => `${r.ip}:${r.port}`).join(", ") || "none"}): the standby must replicate from this primary`,
    );
  }
  const waitMs = s.int("catchUpSeconds") * 1000;
  const t0 = Date.now();
  const offset = pinfo.master_repl_offset ?? "?";
  const r = await redisCli(s, { host: primary, port }, "FAILOVER", "TO", mine.ip!, String(standbyPort), "TIMEOUT", String(waitMs));
  if (r !== "OK") throw new SwitchoverRefused(`FAILOVER TO ${mine.ip} ${standbyPort} on ${primary} answered '${r}'`);
  log(`standby switchover ${s.service}: ${primary}'s writes are paused (FAILOVER); waiting for ${standby} to take its replication stream (offset ${offset} and on)`);
  const t1 = Date.now();
  // FAILOVER answers at once; its progress is the primary's master_failover_state.
  const deadline = Date.now() + waitMs + 15_000;
  let state = "";
  for (;;) {
    state = (await redisInfo(s, primary, port).catch(() => ({}) as Record<string, string>)).master_failover_state ?? "unknown";
    if (state === "no-failover") break;
    if (Date.now() > deadline) {
      throw new Error(`${primary} is still in FAILOVER state '${state}' after ${(waitMs + 15_000) / 1000} s: run 'ROLE' on ${primary} and ${standby}; 'FAILOVER ABORT' on ${primary} ends it`);
    }
    await sleep(100);
  }
  const t2 = Date.now();
  const [now, old] = [await redisInfo(s), await redisInfo(s, primary, port).catch(() => ({}) as Record<string, string>)];
  if (redisRole(now) !== "master") {
    throw new SwitchoverRefused(
      `Redis aborted the FAILOVER: ${standby} did not take ${primary}'s replication stream within ${waitMs / 1000} s (replica offset ${now.slave_repl_offset ?? "?"}, primary ${old.master_repl_offset ?? "?"}); ` +
        `${primary} is ${redisRole(old)} and takes writes again. Look at both servers' logs, or give it longer (config kryonix-dr:failback.catchUpSeconds)`,
    );
  }
  return { handedOverAt: now.master_repl_offset ?? offset, alreadyActive: false, t: [t0, t1, t2] };
}


export async function runSwitchover(s: Settings, connect: () => Promise<pg.Client>, o: { target?: string }): Promise<SwitchoverSummary> {
  const engine = s.engine;
  if (engine !== "postgres" && engine !== "redis") throw new ConfigError(`standby switchover hands PostgreSQL and Redis over; ${s.service} is ${engine}.`);
  const standby = s.require("targetHost");
  const primary = s.require("primaryHost");
  const notes: string[] = [];
  const r = engine === "postgres" ? await switchPostgres(s, o, notes) : await switchRedis(s);
  const end = Date.now();
  const [t0, t1, t2] = r.t as [number, number, number];
  const seconds = { fence: (t1 - t0) / 1000, catchUp: (t2 - t1) / 1000, promote: (end - t2) / 1000, total: (end - t0) / 1000 };
  if (r.alreadyActive) return { service: s.service, engine, standby, primary, alreadyActive: true, seconds, notes };
  let recoveryId: string | undefined;
  try {
    const c = await connect();
    try {
      const region = s.get("s3Region");
      if (region) await cat.markStandbyPromoted(c, { tenantId: s.tenantId, service: s.service, region, by: "switchover" });
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
