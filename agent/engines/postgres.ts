/**
 * PostgreSQL: physical base backups with pg_basebackup and continuous WAL with pg_receivewal,
 * both over a replication connection only, so the sidecar works with a stock PostgreSQL image
 * and can be rescheduled anywhere by Swarm. Plus a logical pg_dump -Fc per database for
 * single-database restores.
 *
 * What the backup role needs on the primary:
 *   CREATE ROLE kdr_backup LOGIN REPLICATION PASSWORD '...';
 *   GRANT pg_read_all_data TO kdr_backup;                        -- pg_dump of every database
 *   GRANT EXECUTE ON FUNCTION pg_switch_wal() TO kdr_backup;     -- bounded RPO (see WalStreamer)
 *   and a pg_hba.conf line allowing it `replication` and normal connections.
 *
 * "Incremental" for PostgreSQL 15 means: the WAL written since the last base backup, made
 * durable in the object store (PostgreSQL 15's pg_basebackup has no block-level incremental
 * backup; that arrived in 17). An incremental run forces a segment switch, waits until every
 * completed segment up to it is uploaded and recorded, and records a row covering that range.
 */
import { chmodSync, chownSync, existsSync, readFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, appendFileSync, createWriteStream } from "node:fs";
import path from "node:path";
import pg from "pg";
import { ConfigError, type Settings } from "../config.js";
import { childSink, openAndRestore, openIntoDir, sealAndUpload, spawnTool, devNull, throwCause, ZSTD_LEVEL, compressionWorkers, type SealedArtifact } from "../storage/pipeline.js";
import { Progress, log } from "../storage/progress.js";
import type { Storage } from "../storage/s3.js";
import { toolPath, toolVersion } from "./tools.js";
import { baseCoversUntil, sampleMarks, type WalMark } from "./wal-coverage.js";
import type { BackupContext, EngineResult } from "./types.js";
import { AGENT_ENV, objectPrefix, replicationSlotName } from "../../contract/index.js";

export function pgEnv(s: Settings): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: toolPath(),
    PGHOST: s.require("targetHost"),
    PGPORT: String(s.int("targetPort", 5432)),
    PGUSER: s.require("targetUser"),
    PGAPPNAME: "kdr-agent",
    PGCONNECT_TIMEOUT: "15",
  };
  // The password travels to child processes in their environment only, never in argv.
  if (existsSync(s.secretPath("targetPassword"))) env.PGPASSWORD = s.secret("targetPassword");
  return env;
}

export async function pgConnect(s: Settings, database = "postgres"): Promise<pg.Client> {
  const env = pgEnv(s);
  const c = new pg.Client({ host: env.PGHOST, port: Number(env.PGPORT), user: env.PGUSER, password: env.PGPASSWORD, database, application_name: "kdr-agent", connectionTimeoutMillis: 15000 });
  try {
    await c.connect();
  } catch (e) {
    throw new ConfigError(`cannot connect to PostgreSQL ${env.PGUSER}@${env.PGHOST}:${env.PGPORT}/${database}: ${(e as Error).message}. Check ${AGENT_ENV.targetHost}, ${AGENT_ENV.targetPort}, ${AGENT_ENV.targetUser} and the kdr-target-password secret.`);
  }
  return c;
}

const lsnRe = (what: string) => new RegExp(`write-ahead log ${what} point: ([0-9A-F]+/[0-9A-F]+)(?: on timeline (\\d+))?`);

/**
 * The slot must reserve WAL from the moment it exists (pg_receivewal --create-slot does not),
 * so that everything after a base is kept until it has been streamed. A slot declared by the
 * stack (it owns the slot, so a destroy drops it) exists before any stream and reserves nothing
 * yet: it is made to reserve in place, by streaming from it once up to the current position
 * (pg_receivewal's first status report sets its restart LSN). Never dropped and created again
 * for that: the stack's deployer (and a refresh) would see it gone in between. Only a slot the
 * server invalidated (its WAL removed) is replaced, as nothing else makes it usable again.
 */
export async function ensureSlot(s: Settings, slot: string): Promise<void> {
  const c = await pgConnect(s);
  const denied = (e: Error) =>
    new ConfigError(
      `cannot make the replication slot ${slot} reserve WAL for ${s.require("targetUser")}: ${e.message}` +
        (/permission denied|replication role|superuser/i.test(e.message) ? ". The backup role needs the REPLICATION attribute." : ""),
    );
  let lastError: Error | undefined;
  let streamedAt: string | undefined;
  try {
    for (let attempt = 0; attempt < 20; attempt++) {
      const row = (
        await c.query<{ restart_lsn: string | null; active: boolean; wal_status: string | null }>(
          "SELECT restart_lsn::text, active, wal_status FROM pg_replication_slots WHERE slot_name = $1",
          [slot],
        )
      ).rows[0];
      if (row?.restart_lsn) {
        if (streamedAt) log(`wal ${s.service}: slot ${slot} (declared without reserving WAL) now reserves it, from ${row.restart_lsn} (streamed once up to ${streamedAt})`);
        return;
      }
      if (!row || row.wal_status === "lost") {
        if (row) {
          log(`wal ${s.service}: slot ${slot} was invalidated by the server (the WAL it held was removed, e.g. over max_slot_wal_keep_size): dropped and created again, reserving from now`);
          await c.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active", [slot]);
        }
        try {
          await c.query("SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", [slot]);
        } catch (e) {
          // Another run created it between the two statements: looked at again.
          if (!/already exists/.test((e as Error).message)) throw denied(e as Error);
        }
        continue;
      }
      // A stream that just began reserves with its first status report.
      if (row.active) {
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      try {
        streamedAt = await reserveByStreaming(s, slot, c);
      } catch (e) {
        // E.g. another run's stream took the slot first (it reserves then), or a full disk.
        if (lastError) throw denied(e as Error);
        lastError = e as Error;
      }
    }
  } finally {
    await c.end();
  }
  throw denied(lastError ?? new Error("it still reserves no WAL after 20 attempts"));
}

/** Streams from a slot that reserves nothing up to the current flush position, into a scratch directory. */
async function reserveByStreaming(s: Settings, slot: string, c: pg.Client): Promise<string> {
  const end = (await c.query<{ lsn: string }>("SELECT pg_current_wal_flush_lsn()::text AS lsn")).rows[0]!.lsn;
  mkdirSync(s.stateDir, { recursive: true });
  const dir = mkdtempSync(path.join(s.stateDir, "slot-reserve-"));
  try {
    const p = spawnTool("pg_receivewal", ["-D", dir, "--slot", slot, `--endpos=${end}`, "--no-loop", "--no-password", "--status-interval=5"], {
      env: pgEnv(s),
      stdin: "ignore",
    });
    await p.exited;
    return end;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Replication slot the agent streams WAL through (one per protected service). */
export const slotName = replicationSlotName;

/**
 * Whether a full backup carries the logical dumps: when none does yet (a verify that failed
 * counts as none), or when the newest that
 * does began `everyDays` ago or more, less an hour (so a daily full at a fixed time keeps a weekly
 * cadence although each run starts a little before the last one's start plus 7 days); every full
 * when `everyDays` is 0. Says why either way, for the run's log.
 */
export function logicalDumpDue(last: { backupId: string; createdAt: Date } | null, everyDays: number, now: Date): { due: boolean; why: string } {
  if (everyDays === 0) return { due: true, why: "with every full (pgLogicalEveryDays 0)" };
  if (!last) return { due: true, why: "no backup of this service carries them yet (none whose verify did not fail)" };
  const ageDays = (now.getTime() - last.createdAt.getTime()) / 86400_000;
  const age = ageDays >= 1 ? `${ageDays.toFixed(1)} days` : `${(ageDays * 24).toFixed(1)} hours`;
  const due = ageDays >= everyDays - 1 / 24;
  return { due, why: `the newest, in backup ${last.backupId}, began ${age} ago (every ${everyDays} days${due ? "" : "; --logical takes them now"})` };
}

/** pg_basebackup -P's count: "4208535/4208535 kB (100%), 1/1 tablespace" (then, with -v, a name). */
export const BB_PROGRESS = /^\s*(\d+)\/\d+ kB \(\d+%\), \d+\/\d+ tablespaces?\b/;

/**
 * What pg_basebackup -P says it has received of the server's archive, fed to `progress` as it
 * grows: the base's raw bytes, to the KiB (the manifest it appends is not counted). Its last
 * line, at the end, is the whole.
 */
export function basebackupCounter(progress?: Progress) {
  let kib = 0;
  return {
    onChatter: (line: string) => {
      const n = Number(BB_PROGRESS.exec(line)?.[1]);
      if (n > kib) {
        progress?.add((n - kib) * 1024);
        kib = n;
      }
    },
    rawBytes: () => kib * 1024,
  };
}

export async function backupFull(ctx: BackupContext, opts: { logical?: boolean } = {}): Promise<EngineResult> {
  const env = pgEnv(ctx.settings);
  // The WAL archive must continue from this base: the slot makes the primary keep every segment
  // after it until pg_receivewal (serve, or the next incremental run) has streamed it.
  await ensureSlot(ctx.settings, slotName(ctx.service));
  // Marks (the primary's clock and flush LSN) through the backup: its recovery point is the newest
  // one at or before its end LSN. The same connection sizes the progress estimate.
  const mc = await pgConnect(ctx.settings);
  mc.on("error", () => undefined);
  const marks = sampleMarks(async () => (await mc.query<WalMark>("SELECT clock_timestamp() AS at, pg_current_wal_flush_lsn()::text AS lsn")).rows[0]!, 1000);
  // On the primary's clock, as the recovery point's end is (the catalog wants start <= end).
  const started = (await marks.first)?.at ?? new Date();
  // pgMaxRate (e.g. 50M, checked by the settings table): pg_basebackup's --max-rate, to bound the load on the primary.
  const maxRate = ctx.settings.get("pgMaxRate");
  // The sum of database sizes is what pg_basebackup will read, give or take WAL and config
  // files: good enough for an ETA, never recorded as a measurement.
  const estimate = await mc.query<{ n: string }>("SELECT sum(pg_database_size(oid))::bigint AS n FROM pg_database").then((r) => Number(r.rows[0]!.n), () => undefined);
  const counted = basebackupCounter(new Progress(`pg_basebackup ${ctx.service}`, estimate));
  const bb = spawnTool(
    "pg_basebackup",
    // -X fetch: the WAL needed to make the base consistent goes inside base.tar, so a base is
    // restorable on its own; -X stream cannot write tar to stdout. The backup_manifest (a CRC32C
    // per file, PostgreSQL's default: the object's SHA-256 and age guard the artifact, and SHA-256
    // cost the server about 3 s at 4 GiB, docs/benchmarks.md) is part of the tar stream in 15.
    // pg_basebackup compresses the stream itself (zstd at the agent's level, a worker per CPU it may use;
    // the server's compression would leave no manifest on stdout) and counts it (-P).
    ["-D", "-", "-Ft", "-X", "fetch", "-c", "fast", "--manifest-checksums=CRC32C", `--compress=client-zstd:level=${ZSTD_LEVEL},workers=${compressionWorkers()}`, "-P", "-v", "--no-password", `--label=kdr-${ctx.backupId}`, ...(maxRate ? [`--max-rate=${maxRate}`] : [])],
    { env, stdin: "ignore", chatter: BB_PROGRESS, onChatter: counted.onChatter },
  );
  const base = await sealAndUpload({
    storage: ctx.storage,
    key: `${ctx.prefix}base.tar.zst.age`,
    name: "base.tar",
    source: bb.child.stdout!,
    recipientFile: ctx.recipientFile,
    lock: ctx.lock("full"),
    producers: [bb.exited],
    // The base is the bulk of the bytes: compressed by pg_basebackup, straight into age (an OS pipe).
    compressed: counted,
  }).finally(() => marks.stop().finally(() => mc.end().catch(() => undefined)));
  const err = bb.stderr();
  const start = lsnRe("start").exec(err);
  const end = lsnRe("end").exec(err);
  const ended = baseCoversUntil(await marks.stop(), end?.[1], started);
  const artifacts: SealedArtifact[] = [base];
  const dbs: string[] = [];
  if (opts.logical !== false && ctx.settings.get("pgLogicalDumps") !== "none") {
    const c = await pgConnect(ctx.settings);
    try {
      const r = await c.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname");
      dbs.push(...r.rows.map((x) => x.datname));
    } finally {
      await c.end();
    }
    for (const db of dbs) {
      const d = spawnTool("pg_dump", ["-Fc", "-Z0", "--no-password", "-d", db], { env, stdin: "ignore" });
      artifacts.push(
        await sealAndUpload({
          storage: ctx.storage,
          key: `${objectPrefix("logical", ctx.service)}${ctx.backupId}/${encodeURIComponent(db)}.dump.zst.age`,
          name: `logical/${db}.dump`,
          source: d.child.stdout!,
          recipientFile: ctx.recipientFile,
          lock: ctx.lock("logical"),
          producers: [d.exited],
          progress: new Progress(`pg_dump ${db}`),
        }),
      );
    }
  }
  return {
    artifacts,
    tool: "pg_basebackup",
    toolVersion: toolVersion("pg_basebackup"),
    recoveryPointStart: started,
    recoveryPointEnd: ended,
    details: {
      startLsn: start?.[1],
      endLsn: end?.[1],
      timeline: start ? Number(start[2]) : undefined,
      walMethod: "fetch (WAL for consistency inside base.tar)",
      logicalDatabases: dbs,
      pgDumpVersion: dbs.length ? toolVersion("pg_dump") : undefined,
    },
  };
}

export interface StoredRef {
  key: string;
  versionId?: string | null;
  sha256: string;
  storedBytes?: number;
  rawBytes?: number;
  rawSha256?: string;
  name: string;
}

/** Where WAL is staged by default: inside the data dir, so it travels with the volume. */
export const STAGED_WAL_DIR = "kdr_restore_wal";

/**
 * Unpacks a base into `target` (empty or new), its SHA-256s checked as it streams: one download,
 * no pass before it. A base that fails to read leaves a half-unpacked target, which the caller
 * empties before it falls back to another backup (restore.ts).
 */
export async function unpackBase(o: { storage: Storage; identityFile: string; base: StoredRef; target: string }): Promise<void> {
  mkdirSync(o.target, { recursive: true, mode: 0o700 });
  await openIntoDir({ storage: o.storage, ref: o.base, identityFile: o.identityFile, label: o.base.name }, o.target);
  // A base of a server that was a warm standby (promoted since: a failover) carries what its
  // follower kept in the data directory: the state of where it had staged to, the WAL it had
  // staged (of the old timeline), the old primary's password. None of it belongs to this copy.
  const carried = [STANDBY_STATE_FILE, STANDBY_PASSFILE].filter((f) => existsSync(path.join(o.target, f)));
  for (const f of carried) rmSync(path.join(o.target, f), { force: true });
  const staged = path.join(o.target, STANDBY_WAL_DIR);
  const stale = existsSync(staged) ? readdirSync(staged) : [];
  for (const f of stale) rmSync(path.join(staged, f), { recursive: true, force: true });
  if (carried.length || stale.length) log(`postgres restore: removed what the base's server kept as a warm standby before its promotion (${[...carried, ...(stale.length ? [`${stale.length} file(s) in ${STANDBY_WAL_DIR}`] : [])].join(", ")})`);
}

/** How many WAL segments are fetched at once: each is a GET, an age and a zstd. */
export const WAL_FETCH_CONCURRENCY = 4;

/** Where restored WAL is staged: `walDir`, or a directory in the data directory. */
export const walStagingDir = (target: string, o: { walDir?: string; standby?: boolean }): string =>
  o.standby ? path.join(target, STANDBY_WAL_DIR) : (o.walDir ?? path.join(target, STAGED_WAL_DIR));

/**
 * Stages WAL segments, decrypted, into `dir`, each checked (SHA-256) as it streams, a few at a
 * time. A segment that `isDamage` judges damaged ends the chain there: nothing from it on is
 * staged (what was fetched ahead is removed) and its index is returned, for the caller to say
 * where the replay now stops. Any other failure fails the staging.
 */
export async function stageWal(o: { storage: Storage; identityFile: string; wal: StoredRef[]; dir: string; isDamage: (e: unknown) => boolean }): Promise<{ staged: number; damaged?: { index: number; error: Error } }> {
  mkdirSync(o.dir, { recursive: true });
  const progress = new Progress(`wal segments`, o.wal.length, 5000, "items");
  /** The first damaged segment, and the first other failure, by index. */
  const st = {} as { damaged?: { index: number; error: Error }; failed?: { index: number; error: unknown } };
  let next = 0;
  const worker = async () => {
    for (;;) {
      // Taken in order: every segment before one that failed was taken already.
      const i = next++;
      if (i >= o.wal.length || st.failed || (st.damaged && i > st.damaged.index)) return;
      const w = o.wal[i]!;
      const file = path.join(o.dir, w.name);
      const out = createWriteStream(file);
      try {
        await openAndRestore({ storage: o.storage, ref: w, identityFile: o.identityFile, label: w.name, sink: out });
        progress.add(1);
      } catch (e) {
        // Removed once closed: the file is opened asynchronously, and may be after a fast failure.
        out.destroy();
        if (!out.closed) await new Promise<void>((r) => out.once("close", () => r()));
        rmSync(file, { force: true });
        // (Read again after the await: another worker may have set them meanwhile.)
        const earlier = (prev?: { index: number }) => !prev || i < prev.index;
        if (!o.isDamage(e)) {
          if (earlier(st.failed)) st.failed = { index: i, error: e };
        } else if (earlier(st.damaged)) st.damaged = { index: i, error: e as Error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(WAL_FETCH_CONCURRENCY, o.wal.length) }, worker));
  // A failure after a damaged segment concerns WAL that is not replayed anyway (fetched ahead).
  const { damaged, failed } = st;
  if (failed && (!damaged || failed.index < damaged.index)) throw failed.error;
  if (damaged) for (const w of o.wal.slice(damaged.index)) rmSync(path.join(o.dir, w.name), { force: true });
  return { staged: damaged ? damaged.index : o.wal.length, damaged };
}

/**
 * The recovery settings of a restored base whose WAL is staged: replay it (to `targetTime`, or
 * to its end), then promote and delete the staged WAL. A standby's instead: writeStandbyConfig.
 */
export function writeRecoveryConfig(target: string, o: { walDir?: string; targetTime?: Date }): void {
  // restore_command runs with the data directory as its working directory.
  const from = o.walDir ? o.walDir : STAGED_WAL_DIR;
  const conf = [
    "",
    "# written by kdr-agent restore",
    `restore_command = 'cp "${from}/%f" "%p"'`,
    ...(o.targetTime ? [`recovery_target_time = '${o.targetTime.toISOString().replace("T", " ").replace("Z", "+00")}'`] : []),
    "recovery_target_action = 'promote'",
    ...(o.walDir ? [] : [`recovery_end_command = 'rm -rf ${STAGED_WAL_DIR}'`]),
    "",
  ];
  appendFileSync(path.join(target, "postgresql.auto.conf"), conf.join("\n"));
  writeFileSync(path.join(target, "recovery.signal"), "");
}

/** Where a warm standby's WAL is staged, inside its data directory (shared with the follower's volume mount). */
export const STANDBY_WAL_DIR = "kdr_standby_wal";
/** Where a standby's follower records the newest WAL segment it staged (in the data directory). */
export const STANDBY_STATE_FILE = "kdr_standby.json";

/**
 * A standby's recovery settings: replay what the follower stages, keep asking for the next
 * segment (standby mode), and let PostgreSQL remove what it no longer needs. The staging
 * directory is owned by the data directory's owner, so the server can clean it up.
 */
export function writeStandbyConfig(target: string): void {
  const conf = [
    "",
    "# written by kdr-agent standby seed: a warm standby fed from the DR region's archived WAL",
    `restore_command = 'cp "${STANDBY_WAL_DIR}/%f" "%p"'`,
    `archive_cleanup_command = 'pg_archivecleanup ${STANDBY_WAL_DIR} %r'`,
    "recovery_target_timeline = 'latest'",
    "hot_standby = on",
    "",
  ];
  appendFileSync(path.join(target, "postgresql.auto.conf"), conf.join("\n"));
  writeFileSync(path.join(target, "standby.signal"), "");
  rmSync(path.join(target, "recovery.signal"), { force: true });
  const walDir = path.join(target, STANDBY_WAL_DIR);
  mkdirSync(walDir, { recursive: true });
  ownLikeDataDir(target, [walDir, ...readdirSync(walDir).map((f) => path.join(walDir, f))]);
}

/**
 * The primary's password for a standby's streaming connection, in libpq's passfile format, inside
 * the standby's data directory (owned by the server's user, mode 0600), so that it is in no
 * configuration file, argument or environment; `standby activate` removes it on promotion.
 */
export const STANDBY_PASSFILE = "kdr_standby_pgpass";

export interface StreamingSource {
  host: string;
  port: number;
  user: string;
  password: string;
}

/** Refuses what primary_conninfo cannot take as it is (checked before any restore starts). */
export function checkStreamingSource(target: string, o: Pick<StreamingSource, "host" | "user">): void {
  for (const [what, v] of [["primary host", o.host], ["user", o.user]] as const) {
    if (!/^[A-Za-z0-9._-]+$/.test(v)) throw new ConfigError(`the standby's ${what} '${v}' is not a plain host or role name (letters, digits, '.', '_', '-'): it cannot go into primary_conninfo as it is.`);
  }
  if (!/^[A-Za-z0-9._/-]+$/.test(path.join(target, STANDBY_PASSFILE))) throw new ConfigError(`the standby's data directory '${target}' holds characters primary_conninfo cannot take as they are: use a plain path.`);
}

/**
 * Streaming from the primary where it can be reached: primary_conninfo beside the restore_command
 * of writeStandbyConfig. PostgreSQL streams while it can connect, and replays the WAL staged from
 * this region's copies when it cannot (the primary's network gone), switching by itself. Safe to
 * run again (a standby seeded before streaming existed gets it): the passfile is rewritten, and
 * primary_conninfo added only when the configuration has none. Returns whether it added it.
 */
export function writeStreamingConfig(target: string, o: StreamingSource, opts: { replace?: boolean } = {}): boolean {
  checkStreamingSource(target, o);
  const passfile = path.join(target, STANDBY_PASSFILE);
  const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/:/g, "\\:");
  writeFileSync(passfile, `${esc(o.host)}:${o.port}:*:${esc(o.user)}:${esc(o.password)}\n`, { mode: 0o600 });
  ownLikeDataDir(target, [passfile]);
  const conf = path.join(target, "postgresql.auto.conf");
  const text = readFileSync(conf, "utf8");
  if (/^\s*primary_conninfo\s*=/m.test(text)) {
    if (!opts.replace) return false;
    // A base of a server that was a standby itself (a promoted one, failing back) carries its
    // old primary_conninfo: a fresh seed streams from its own primary, never from that one.
    writeFileSync(conf, text.replace(/^# written by kdr-agent standby seed:.*\n/gm, "").replace(/^\s*primary_conninfo\s*=.*\n?/gm, ""));
  }
  // connect_timeout short: while the primary's network is gone, each failed attempt delays the
  // replay of the WAL staged from this region by that much.
  const conninfo = `host=${o.host} port=${o.port} user=${o.user} passfile=${passfile} application_name=kdr_standby connect_timeout=3`;
  appendFileSync(conf, ["", "# written by kdr-agent standby seed: stream from the primary while it answers", `primary_conninfo = '${conninfo}'`, ""].join("\n"));
  return true;
}

/** Gives paths the owner of the data directory's PG_VERSION (the server's user), when run as root. */
export function ownLikeDataDir(target: string, paths: string[]): void {
  const version = path.join(target, "PG_VERSION");
  if (!existsSync(version) || process.getuid?.() !== 0) return;
  const { uid, gid } = statSync(version);
  for (const p of paths) chownSync(p, uid, gid);
}

/**
 * Each artifact read once: its stored SHA-256, age and zstd checked as it streams into the tool's
 * own check (pg_verifybackup on the unpacked base with its backup_manifest, pg_restore over dumps).
 */
export async function verifyArtifacts(o: { storage: Storage; identityFile: string; artifacts: StoredRef[]; scratch: string }): Promise<string[]> {
  const notes: string[] = [];
  for (const a of o.artifacts) {
    if (a.name === "base.tar") {
      // One directory per verify: a cron container verifies several PostgreSQL services at the
      // same minute, and a shared directory made one verify read another's half-unpacked base
      // ("present in the manifest but not on disk"), failing good backups.
      mkdirSync(o.scratch, { recursive: true });
      const dir = mkdtempSync(path.join(o.scratch, "verify-base-"));
      chmodSync(dir, 0o700);
      try {
        // A full disk is tar's error, and says nothing about the backup (openIntoDir names it).
        await openIntoDir({ storage: o.storage, ref: a, identityFile: o.identityFile, label: a.name }, dir);
        const v = spawnTool("pg_verifybackup", [dir], { env: { ...process.env, PATH: toolPath() }, stdin: "ignore" });
        let out = "";
        v.child.stdout!.on("data", (d: Buffer) => (out += d));
        await v.exited;
        notes.push(`base.tar: pg_verifybackup (checksums against backup_manifest, WAL parsed with pg_waldump): ${out.trim() || "ok"}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    } else if (a.name.endsWith(".dump")) {
      // pg_restore reads the whole archive (every table's data) and writes the SQL nowhere.
      const l = spawnTool("pg_restore", ["-f", "/dev/null"], { env: { ...process.env, PATH: toolPath() } });
      l.child.stdout!.resume();
      // pg_restore's own error when all the stream saw was its input closing; else the stream's (the SHA-256, the key).
      throwCause(...(await Promise.allSettled([openAndRestore({ storage: o.storage, ref: a, identityFile: o.identityFile, label: a.name, sink: childSink(l.child.stdin!) }), l.exited])));
      notes.push(`${a.name}: pg_restore read the whole archive`);
    } else {
      await openAndRestore({ storage: o.storage, ref: a, identityFile: o.identityFile, label: a.name, sink: devNull() });
      notes.push(`${a.name}: decrypt + zstd ok`);
    }
  }
  return notes;
}

