/**
 * `kdr-agent standby`: the warm standby of a critical service in the DR region (issue #14).
 *
 * - `standby seed --target <dir>`: PostgreSQL only. Restores the newest base and its WAL from
 *   this region's copies into an empty data directory, as a standby (standby.signal, WAL read
 *   from STANDBY_WAL_DIR). A directory already seeded is left alone, so the job can run again.
 * - `standby follow --target <dir>`: PostgreSQL, long-running beside the standby (same volume).
 *   Every few seconds it stages, decrypted and checked, each WAL segment that has been copied
 *   into this region since the last one, in order; the standby replays them when it cannot
 *   stream from the primary, so it keeps following with the primary region gone, as long as its
 *   archive reached this region. It exports whether the standby streams and how far behind it is.
 *   Redis (no --target): watches the replica's replication (link, offset lag) as numbers.
 * - `standby activate [--force]`: the promotion, run once when the dr stack's `active` is set.
 *   It refuses while the primary still answers (unless --force) and while the standby is
 *   behind what this region holds (saying how far), then promotes (PostgreSQL pg_promote,
 *   Redis REPLICAOF NO ONE) and records the failover in disaster_recovery_log.
 */
import { existsSync, readdirSync, readFileSync, renameSync, createWriteStream, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { Gauge } from "prom-client";
import * as cat from "../catalog.js";
import { AGENT_ENV } from "../../contract/index.js";
import { ConfigError, type Settings } from "../config.js";
import { STANDBY_PASSFILE, STANDBY_STATE_FILE, STANDBY_WAL_DIR, checkStreamingSource, ownLikeDataDir, pgConnect, pgEnv, writeStreamingConfig } from "../engines/postgres.js";
import { followRedis, recordLook, redisCli, redisInfo, replayBytesGauge, streamingGauge, withdrawLook } from "./standby-redis.js";
import { registry } from "../metrics.js";
import { httpServer } from "../serve.js";
import { openAndRestore } from "../storage/pipeline.js";
import { log } from "../storage/progress.js";
import { Storage } from "../storage/s3.js";
import { runRestore, type RestoreSummary } from "./restore.js";
import { heldHere, identityFor, primaryPort, recordPromotion } from "./shared.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the follower has staged, kept beside the data (PostgreSQL removes replayed segments). */
export const STATE_FILE = STANDBY_STATE_FILE;
interface FollowState {
  timeline: number;
  /** The newest segment staged (a WAL file name). */
  segment: string;
}

function readState(target: string): FollowState | undefined {
  const f = path.join(target, STATE_FILE);
  if (existsSync(f)) return JSON.parse(readFileSync(f, "utf8")) as FollowState;
  const dir = path.join(target, STANDBY_WAL_DIR);
  const names = existsSync(dir) ? readdirSync(dir).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort() : [];
  const last = names[names.length - 1];
  return last ? { timeline: parseInt(last.slice(0, 8), 16), segment: last } : undefined;
}

function writeState(target: string, st: FollowState): void {
  const f = path.join(target, STATE_FILE);
  writeFileSync(`${f}.tmp`, JSON.stringify(st) + "\n");
  renameSync(`${f}.tmp`, f);
}

/** The timeline a fresh base starts on (from its catalog row), when nothing is staged yet. */
async function baseState(c: pg.Client, s: Settings, backupId: string): Promise<FollowState> {
  const row = await cat.getBackup(c, backupId);
  if (!row?.startLsn || !row.timeline) throw new Error(`backup ${backupId} has no start LSN or timeline in the catalog: it cannot seed a standby.`);
  const segno = cat.lsnToSegmentNumber(row.startLsn);
  // "The newest staged" is the one before the base's first segment: following starts at the base.
  return { timeline: row.timeline, segment: cat.walFileName(row.timeline, segno - 1n) };
}

export interface SeedSummary {
  service: string;
  target: string;
  alreadySeeded: boolean;
  restore?: RestoreSummary;
}

export async function runSeed(s: Settings, c: pg.Client, target: string): Promise<SeedSummary> {
  if (s.engine !== "postgres") throw new ConfigError(`standby seed is for PostgreSQL (a Redis replica syncs from its primary by itself); ${s.service} is ${s.engine}.`);
  if (!target) throw new ConfigError("standby seed needs --target <the standby's data directory>.");
  const dir = path.resolve(target);
  const primary = s.get("primaryHost");
  const source = primary ? { host: primary, port: primaryPort(s), user: s.require("targetUser"), password: s.secret("targetPassword") } : undefined;
  // Before the long restore: a host primary_conninfo cannot take fails now, not after it.
  if (source) checkStreamingSource(dir, source);
  if (existsSync(path.join(dir, "standby.signal")) && existsSync(path.join(dir, "PG_VERSION"))) {
    // A standby seeded before streaming existed, or a seed cut short after its restore, gets it.
    const added = source ? writeStreamingConfig(dir, source) : false;
    log(`standby seed ${s.service}: ${dir} already holds a standby; left as it is${added ? `, except primary_conninfo (streaming from ${primary}), which takes effect when the standby restarts` : ""}`);
    return { service: s.service, target: dir, alreadySeeded: true };
  }
  const r = await runRestore(s, c, { target: dir, standby: true });
  if (source) {
    writeStreamingConfig(dir, source, { replace: true });
    log(`standby seed ${s.service}: streams from ${primary} while it answers, and replays the WAL copied to this region when it does not`);
  }
  if (!readState(dir)) writeState(dir, await baseState(c, s, r.backupId));
  const st = readState(dir)!;
  writeState(dir, st);
  ownLikeDataDir(dir, [path.join(dir, STATE_FILE)]);
  log(`standby seed ${s.service}: seeded from backup ${r.backupId}; follows timeline ${st.timeline} after ${st.segment}`);
  return { service: s.service, target: dir, alreadySeeded: false, restore: r };
}

/** Thrown when the catalog lacks the next segment but holds later ones: the standby can never catch up. */
export class WalGapError extends Error {}

/** The segments of the timeline after `after`, in order, with this region's version of each; stops at the first not copied here yet. */
async function copiedAfter(c: pg.Client, s: Settings, storage: Storage, st: FollowState): Promise<Array<{ row: cat.WalSegmentRow; versionId: string | undefined }>> {
  const after = cat.walSegmentNumber(st.segment);
  const rows = (await cat.listWalSegments(c, s.service, { tenantId: s.tenantId, timeline: st.timeline })).filter(
    (w) => /^[0-9A-F]{24}$/.test(w.segmentName) && cat.walSegmentNumber(w.segmentName) > after,
  );
  if (rows.length > 0 && cat.walSegmentNumber(rows[0]!.segmentName) !== after + 1n) {
    throw new WalGapError(
      `the catalog holds no WAL segment ${cat.walFileName(st.timeline, after + 1n)} (expired, or never archived) but holds later ones from ${rows[0]!.segmentName}: ` +
        `this standby can never catch up; seed it again (remove the standby's volume and deploy the dr stack again)`,
    );
  }
  let n = 0;
  while (n < rows.length && cat.walSegmentNumber(rows[n]!.segmentName) === after + 1n + BigInt(n)) n++;
  // Copied here, or written here (after a failover and back the WAL was written in both regions).
  const held = await heldHere(c, storage, rows.slice(0, n));
  const copies = await cat.copyVersions(c, storage.endpoint, storage.bucket, held.flatMap((w) => (w.versionId ? [{ key: w.objectKey, versionId: w.versionId }] : [])));
  return held.map((w) => {
    const k = `${w.objectKey}\n${w.versionId}`;
    // A copy's own version here (none recorded: the latest), or this bucket's own version.
    return { row: w, versionId: w.versionId && copies.has(k) ? (copies.get(k) ?? undefined) : (w.versionId ?? undefined) };
  });
}

const g = {
  staged: new Gauge({ name: "kdr_standby_staged_wal_age_seconds", help: "Seconds since the writes of the newest WAL segment staged for the standby (how far the DR region's copy is behind)", labelNames: ["service"], registers: [registry] }),
  replaySegments: new Gauge({ name: "kdr_standby_replay_lag_segments", help: "WAL segments staged for the standby that its replay has not reached yet", labelNames: ["service"], registers: [registry] }),
  replaySeconds: new Gauge({ name: "kdr_standby_replay_lag_seconds", help: "Seconds since the last transaction the standby replayed was committed on the primary", labelNames: ["service"], registers: [registry] }),
};

export interface ReplayStatus {
  inRecovery: boolean;
  replayLsn: string | null;
  lastReplayAt: Date | null;
  /** The host the standby streams from right now, or null while it replays only staged WAL. */
  streamingFrom: string | null;
}

export async function replayStatus(s: Settings): Promise<ReplayStatus> {
  const c = await pgConnect(s);
  try {
    const { rows } = await c.query<{ r: boolean; lsn: string | null; at: Date | null; sender: string | null }>(
      `SELECT pg_is_in_recovery() AS r, pg_last_wal_replay_lsn()::text AS lsn, pg_last_xact_replay_timestamp() AS at,
              (SELECT sender_host FROM pg_stat_wal_receiver WHERE status = 'streaming') AS sender`,
    );
    return { inRecovery: rows[0]!.r, replayLsn: rows[0]!.lsn, lastReplayAt: rows[0]!.at, streamingFrom: rows[0]!.sender };
  } finally {
    await cat.closeCatalog(c);
  }
}

/** Bytes of WAL the primary has written beyond `replayLsn`, or undefined when the primary does not answer. */
async function bytesBehindPrimary(s: Settings, replayLsn: string): Promise<number | undefined> {
  const env = pgEnv(s);
  const p = new pg.Client({ host: s.require("primaryHost"), port: primaryPort(s), user: env.PGUSER, password: env.PGPASSWORD, database: "postgres", connectionTimeoutMillis: 3000 });
  p.on("error", () => undefined);
  try {
    await p.connect();
    const { rows } = await p.query<{ n: string }>("SELECT greatest(0, pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn))::text AS n", [replayLsn]);
    return Number(rows[0]!.n);
  } catch {
    return undefined;
  } finally {
    await cat.closeCatalog(p);
  }
}

const lsnBytes = (lsn: string) => {
  const [hi, lo] = lsn.split("/") as [string, string];
  return (BigInt("0x" + hi) << 32n) | BigInt("0x" + lo);
};
const SEGMENT_BYTES = 16n * 1024n * 1024n;

/** One look: stages every newly copied segment, in order, each checked and renamed into place whole. */
export async function followPass(s: Settings, c: pg.Client, storage: Storage, target: string): Promise<{ staged: string[]; newest?: cat.WalSegmentRow }> {
  const st = readState(target);
  if (!st) throw new Error(`${target} holds no standby (no ${STATE_FILE} and nothing staged): seed it first with 'kdr-agent standby seed --target ${target}'.`);
  const dir = path.join(target, STANDBY_WAL_DIR);
  const staged: string[] = [];
  let newest: cat.WalSegmentRow | undefined;
  for (const { row, versionId } of await copiedAfter(c, s, storage, st)) {
    const file = path.join(dir, row.segmentName);
    await openAndRestore({
      storage,
      ref: { key: row.objectKey, versionId, sha256: row.sha256, storedBytes: row.sizeBytes, rawBytes: row.rawSize ?? undefined },
      identityFile: identityFor(s, row.encryptionKeyId),
      label: row.segmentName,
      sink: createWriteStream(`${file}.part`),
    });
    // PostgreSQL's restore_command copies the file by name: it only ever sees it whole.
    renameSync(`${file}.part`, file);
    ownLikeDataDir(target, [file]);
    writeState(target, { timeline: st.timeline, segment: row.segmentName });
    staged.push(row.segmentName);
    newest = row;
  }
  return { staged, newest };
}

/**
 * PostgreSQL: whether the standby streams and how far behind the primary it is, as gauges and a
 * line when that changes. A standby that does not answer does not stream; a lag that cannot be
 * measured (the primary gone) is not exported rather than left at its last value.
 */
async function reportStreaming(s: Settings, replay: ReplayStatus | undefined, was: string | undefined): Promise<{ mode: string | undefined; behind?: number }> {
  const service = { service: s.service };
  if (!replay?.inRecovery) {
    streamingGauge.set(service, 0);
    replayBytesGauge.remove(service);
    return { mode: was };
  }
  streamingGauge.set(service, replay.streamingFrom ? 1 : 0);
  const behind = replay.replayLsn && s.get("primaryHost") ? await bytesBehindPrimary(s, replay.replayLsn) : undefined;
  if (behind !== undefined) replayBytesGauge.set(service, behind);
  else replayBytesGauge.remove(service);
  const mode = replay.streamingFrom ?? "";
  if (mode !== was) {
    log(
      mode
        ? `standby follow ${s.service}: the standby streams from ${mode}${behind !== undefined ? ` (${behind} bytes of the primary's WAL not replayed yet)` : ""}`
        : `standby follow ${s.service}: the standby does not stream from the primary${was ? ` (it did from ${was})` : ""}; it replays the WAL copied to this region`,
    );
  }
  return { mode, behind };
}

/** This look, as the catalog keeps it for `status` and the health job (catalog/standby.ts). */
export function standbyReport(s: Settings, replay: ReplayStatus | undefined, behind: number | undefined, now: Date): cat.StandbyReport {
  const state = !replay ? "unreachable" : replay.inRecovery ? "following" : "promoted";
  const following = state === "following";
  return {
    tenantId: s.tenantId,
    service: s.service,
    region: s.require("s3Region"),
    engine: "postgres",
    standbyHost: s.require("targetHost"),
    primaryHost: s.get("primaryHost") ?? "-",
    state,
    streaming: following && !!replay?.streamingFrom,
    lagBytes: following && behind !== undefined ? behind : null,
    // Nothing behind: no lag. Behind: at most since the last commit it replayed (an upper bound).
    lagSeconds: !following || behind === undefined ? null : behind === 0 ? 0 : replay?.lastReplayAt ? Math.max(0, (now.getTime() - replay.lastReplayAt.getTime()) / 1000) : null,
    lastReplayedAt: replay?.lastReplayAt ?? null,
    rpoTargetSeconds: s.get("rpoSeconds") ? s.int("rpoSeconds") : null,
    reportIntervalSeconds: s.int("followIntervalSeconds"),
    detail: state === "unreachable" ? "it refuses connections or does not answer" : replay?.replayLsn ? `replayed up to ${replay.replayLsn}` : null,
  };
}

/** `standby follow`: stages newly copied WAL until stopped; the log says what arrived and how far replay is. */
export async function follow(s: Settings, target: string, connect: () => Promise<pg.Client>): Promise<void> {
  if (s.engine === "redis") return followRedis(s, connect);
  if (s.engine !== "postgres") throw new ConfigError(`standby follow is for PostgreSQL and Redis; ${s.service} is ${s.engine}.`);
  if (!target) throw new ConfigError("standby follow of PostgreSQL needs --target <the standby's data directory>.");
  const dir = path.resolve(target);
  const storage = Storage.fromSettings(s);
  const interval = s.int("followIntervalSeconds") * 1000;
  let stopping = false;
  for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => (stopping = true));
  let c: pg.Client | undefined;
  let lastError = "";
  let newestAt: Date | undefined;
  let healthy = false;
  /** The host the standby streamed from at the last look ("" none, undefined not looked yet). */
  let streamingFrom: string | undefined;
  let reportError = "";
  const srv = httpServer(s.metricsPort, () => ({ ok: healthy, detail: { service: s.service, role: "standby-follower", lastError: lastError || undefined } }));
  log(`standby follow ${s.service}: staging WAL copied to ${storage.bucket} (${storage.region}) into ${path.join(dir, STANDBY_WAL_DIR)} every ${interval / 1000} s`);
  while (!stopping) {
    // The standby's own view first: it needs neither the catalog nor S3, which may be what is gone.
    const replay = await replayStatus(s).catch(() => undefined);
    const looked = await reportStreaming(s, replay, streamingFrom);
    streamingFrom = looked.mode;
    try {
      c ??= await connect();
      reportError = await recordLook(c, standbyReport(s, replay, looked.behind, new Date()), reportError);
      const r = await followPass(s, c, storage, dir);
      if (r.newest) newestAt = r.newest.coversUntil;
      if (newestAt) g.staged.set({ service: s.service }, (Date.now() - newestAt.getTime()) / 1000);
      const st = readState(dir);
      if (replay?.replayLsn && st) {
        // By segment, not by byte: a switched segment ends in padding that replay never "reaches".
        const lag = cat.walSegmentNumber(st.segment) - (lsnBytes(replay.replayLsn) - 1n) / SEGMENT_BYTES;
        g.replaySegments.set({ service: s.service }, Number(lag > 0n ? lag : 0n));
      }
      if (replay?.lastReplayAt) g.replaySeconds.set({ service: s.service }, (Date.now() - replay.lastReplayAt.getTime()) / 1000);
      if (replay && !replay.inRecovery) {
        log(`standby follow ${s.service}: the server is no longer in recovery (promoted): nothing more to stage; idle`);
        while (!stopping) await sleep(interval);
        break;
      }
      if (r.staged.length) {
        log(
          `standby follow ${s.service}: staged ${r.staged.length} segment(s) up to ${r.staged[r.staged.length - 1]} (writes until ${r.newest!.coversUntil.toISOString()})` +
            (replay ? `; replayed up to ${replay.replayLsn ?? "-"}${replay.lastReplayAt ? `, last commit replayed ${replay.lastReplayAt.toISOString()}` : ""}` : "; the standby does not answer yet"),
        );
      }
      lastError = "";
      healthy = true;
    } catch (e) {
      const msg = (e as Error).message;
      // Said once per distinct problem, not at every look.
      if (msg !== lastError) log(`standby follow ${s.service}: ${msg} (retrying every ${interval / 1000} s)`);
      lastError = msg;
      healthy = false;
      if (c) await cat.closeCatalog(c);
      c = undefined;
    }
    await sleep(interval);
  }
  srv.close();
  await withdrawLook(c, s);
  if (c) await cat.closeCatalog(c);
}

// ---------------------------------------------------------------------------------------------
// Activation

export interface ActivateSummary {
  service: string;
  engine: string;
  standby: string;
  alreadyActive: boolean;
  /** The newest commit (PostgreSQL) the promoted server holds, when known. */
  recoveryPoint?: string;
  seconds: { primaryCheck: number; catchUp: number; promote: number; total: number };
  recoveryId?: string;
  notes: string[];
}

/** Does the primary still answer as a working server? */
async function primaryAnswers(s: Settings, host: string): Promise<string | undefined> {
  if (s.engine === "postgres") {
    const env = pgEnv(s);
    const c = new pg.Client({ host, port: primaryPort(s), user: env.PGUSER, password: env.PGPASSWORD, database: "postgres", connectionTimeoutMillis: 5000 });
    c.on("error", () => undefined);
    try {
      await c.connect();
      const { rows } = await c.query<{ r: boolean }>("SELECT pg_is_in_recovery() AS r");
      return rows[0]!.r ? undefined : `PostgreSQL at ${host} accepts connections and is a primary`;
    } catch {
      return undefined;
    } finally {
      await cat.closeCatalog(c);
    }
  }
  try {
    return (await redisCli(s, { host, port: primaryPort(s), timeoutMs: 5000 }, "PING")) === "PONG" ? `Redis at ${host} answers PING` : undefined;
  } catch {
    return undefined;
  }
}


/** PostgreSQL: waits until the standby replayed into the newest segment this region holds; refuses, with how far behind it is, after `seconds`. */
async function waitCaughtUp(s: Settings, c: pg.Client, storage: Storage, seconds: number): Promise<ReplayStatus> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const rs = await replayStatus(s);
    if (!rs.replayLsn) throw new Error(`the standby ${s.get("targetHost")} has replayed no WAL at all: it never caught up; see its follower's log`);
    // The segment holding the last byte replayed: at a segment boundary the LSN already names the
    // next segment, which has not been replayed yet.
    const segno = (lsnBytes(rs.replayLsn) - 1n) / SEGMENT_BYTES;
    const timeline = (await c.query<{ t: number }>("SELECT max(timeline) AS t FROM wal_segment WHERE tenant_id = $1 AND service_name = $2", [s.tenantId, s.service])).rows[0]?.t ?? 1;
    const ahead = await copiedAfter(c, s, storage, { timeline, segment: cat.walFileName(timeline, segno) });
    if (ahead.length === 0) return rs;
    if (Date.now() > deadline) {
      const last = ahead[ahead.length - 1]!.row;
      throw new Error(
        `the standby ${s.get("targetHost")} has not caught up: it replayed up to ${rs.replayLsn} (last commit ${rs.lastReplayAt?.toISOString() ?? "none"}), ` +
          `and this region holds ${ahead.length} more WAL segment(s), up to ${last.segmentName} (writes until ${last.coversUntil.toISOString()}). ` +
          `Promoting now would lose them: see the follower's log ('docker service logs <standby>-follower'), or give it longer (${AGENT_ENV.catchUpSeconds}, config kryonix-dr:failover.catchUpSeconds)`,
      );
    }
    await sleep(1000);
  }
}

export async function runActivate(s: Settings, connect: () => Promise<pg.Client>, o: { force: boolean; target?: string }): Promise<ActivateSummary> {
  const engine = s.engine;
  if (engine !== "postgres" && engine !== "redis") throw new ConfigError(`standby activate promotes PostgreSQL and Redis standbys; ${s.service} is ${engine}.`);
  const standby = s.require("targetHost");
  const primary = s.require("primaryHost");
  const t0 = Date.now();
  const notes: string[] = [];
  const answers = await primaryAnswers(s, primary);
  if (answers && !o.force) {
    throw new ConfigError(
      `the primary still answers (${answers}): promoting the standby now would leave two writable primaries and split the data. ` +
        `Stop the primary first, or, if it is unreachable for its clients although it answers here, set 'kryonix-dr:failover' { force: true } and deploy again.`,
    );
  }
  if (answers) notes.push(`forced: ${answers}`);
  const t1 = Date.now();
  let c: pg.Client | undefined;
  try {
    c = await connect();
  } catch (e) {
    if (!o.force) throw new Error(`${(e as Error).message}; without the catalog the standby's catch-up cannot be judged (force skips that check).`);
    notes.push(`catalog unreachable: ${(e as Error).message}`);
  }
  try {
    let recoveryPoint: Date | null = null;
    let alreadyActive = false;
    let t2 = Date.now();
    if (engine === "postgres") {
      const rs = await replayStatus(s);
      if (!rs.inRecovery) {
        alreadyActive = true;
      } else {
        const caught = c ? await waitCaughtUp(s, c, Storage.fromSettings(s), s.int("catchUpSeconds")) : rs;
        recoveryPoint = caught.lastReplayAt;
        t2 = Date.now();
        const p = await pgConnect(s);
        try {
          const { rows } = await p.query<{ ok: boolean }>("SELECT pg_promote(true, 60) AS ok");
          if (!rows[0]!.ok) throw new Error(`pg_promote on ${standby} did not finish within 60 s: look at the server's log`);
        } finally {
          await p.end().catch(() => undefined);
        }
      }
    } else {
      const info = await redisInfo(s);
      if (info.role === "master") {
        alreadyActive = true;
      } else {
        const offset = Number(info.slave_repl_offset ?? "0");
        if (!(offset > 0)) {
          throw new Error(`the Redis replica ${standby} never completed a sync with ${info.master_host ?? primary} (offset ${info.slave_repl_offset ?? "none"}, link ${info.master_link_status ?? "unknown"}): it holds nothing to promote`);
        }
        if (info.master_link_status !== "up") notes.push(`replica link to ${info.master_host} was ${info.master_link_status} for ${info.master_link_down_since_seconds ?? "?"} s; replication offset ${offset}`);
        t2 = Date.now();
        const r = await redisCli(s, {}, "REPLICAOF", "NO", "ONE");
        if (r !== "OK") throw new Error(`REPLICAOF NO ONE on ${standby} answered '${r}'`);
      }
    }
    // A promoted server streams from nobody: the primary's password it used goes with the role.
    if (engine === "postgres" && o.target) {
      if (existsSync(path.join(o.target, STANDBY_PASSFILE))) {
        rmSync(path.join(o.target, STANDBY_PASSFILE));
        notes.push(`removed ${STANDBY_PASSFILE} (the primary's password for streaming) from ${o.target}`);
      } else {
        notes.push(`no ${STANDBY_PASSFILE} in ${o.target}: if the standby's data is elsewhere (another node), remove it there, or the promoted server's backups will carry it`);
      }
    }
    const t3 = Date.now();
    const seconds = { primaryCheck: (t1 - t0) / 1000, catchUp: (t2 - t1) / 1000, promote: (t3 - t2) / 1000, total: (t3 - t0) / 1000 };
    let recoveryId: string | undefined;
    // Status and the health job stop judging it as a standby (its follower goes now).
    const region = s.get("s3Region");
    if (c && region) await cat.markStandbyPromoted(c, { tenantId: s.tenantId, service: s.service, region }).catch((e: Error) => notes.push(`its standby status row was not marked promoted (${e.message})`));
    if (c && !alreadyActive) {
      recoveryId = await recordPromotion(c, s, {
        incidentType: "failover",
        procedure: "docs/runbooks.md §9 failover: kryonix-dr:active true on the dr stack",
        initiatedAt: new Date(t0),
        metadata: { standby, primary, forced: !!answers },
        recoveryPoint: recoveryPoint ?? undefined,
        totalSeconds: seconds.total,
        phaseTimings: { primary_check: seconds.primaryCheck, catch_up: seconds.catchUp, promote: seconds.promote },
        notes,
      });
    }
    return { service: s.service, engine, standby, alreadyActive, recoveryPoint: recoveryPoint?.toISOString(), seconds, recoveryId, notes };
  } finally {
    if (c) await cat.closeCatalog(c);
  }
}
