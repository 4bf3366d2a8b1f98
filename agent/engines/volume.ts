/**
 * Volumes and configuration: restic (content-defined dedup, its own encryption with the
 * repository password from a Swarm secret) straight to S3, at s3:<endpoint>/<bucket>/restic/<service>/g<N>
 * (one repository per generation: see restic-repo.ts).
 * Only changed chunks are uploaded, so an incremental run is simply the next snapshot. What a run
 * stored is measured in the bucket: the bytes of the objects it added under the repository (packs
 * after dedup and restic's compression, index and snapshot files), never an estimate.
 */
import { spawn } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { AGENT_ENV } from "../../contract/index.js";
import { ConfigError, type Settings } from "../config.js";
import { log } from "../storage/progress.js";
import type { Storage } from "../storage/s3.js";
import { openRepo, repoOfSnapshot, restic, ResticDamagedError, type ActiveRepo } from "./restic-repo.js";
import { enterMaintenance, leaveMaintenance, recoverMaintenance, removeTsdbSnapshot, takeTsdbSnapshot } from "./consistency.js";
import { toolVersion } from "./tools.js";
import type { BackupContext, EngineResult } from "./types.js";

/** The tag of the companion snapshot that holds a run's SQLite online copies. */
const SQLITE_TAG = "sqlite";

/** An HTTP hook: `<METHOD> <url>`, made by the agent itself (the image has no curl or wget). */
const HTTP_HOOK = /^(GET|POST|PUT|DELETE)\s+(https?:\/\/\S+)$/;

/**
 * Runs a pre/post hook: an HTTP call when the hook is `<METHOD> <url>` (e.g. Prometheus's
 * `POST http://prometheus:9090/api/v1/admin/tsdb/snapshot`), which must answer 2xx, else a shell
 * command, which must exit 0.
 */
export async function runHook(s: Settings, which: "hookPre" | "hookPost"): Promise<void> {
  const cmd = s.get(which)?.trim();
  if (!cmd) return;
  const label = which === "hookPre" ? "pre" : "post";
  const http = HTTP_HOOK.exec(cmd);
  if (http) {
    log(`hook ${label}: ${http[1]} ${http[2]}`);
    let res: Response;
    try {
      res = await fetch(http[2]!, { method: http[1], signal: AbortSignal.timeout(600_000) });
    } catch (e) {
      throw new Error(`${AGENT_ENV[which]} call failed: ${cmd}: ${(e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message}`);
    }
    const body = (await res.text()).trim();
    if (!res.ok) throw new Error(`${AGENT_ENV[which]} call failed: ${cmd} answered HTTP ${res.status}${body ? `: ${body.slice(0, 300)}` : ""}`);
    log(`hook ${label}: HTTP ${res.status}${body ? ` ${body.slice(0, 200)}` : ""}`);
    return;
  }
  log(`hook ${label}: ${cmd}`);
  const r = await command("/bin/sh", ["-c", cmd], true);
  if (r.error) throw new Error(`${AGENT_ENV[which]} command did not run: ${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${AGENT_ENV[which]} command failed (${r.status !== null ? `exit ${r.status}` : `killed by ${r.signal}`}): ${cmd}`);
}

/**
 * A hook or sqlite3, run without blocking the event loop: a serving sidecar keeps answering its
 * HEALTHCHECK (else Swarm would replace a task whose hook runs for minutes) and its SIGTERM.
 * Stopped (SIGTERM) after ten minutes; `status` null and `signal` set when it was killed.
 */
function command(cmd: string, args: string[], inherit = false): Promise<{ status: number | null; signal?: string; stdout: string; stderr: string; error?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", inherit ? "inherit" : "pipe", inherit ? "inherit" : "pipe"], timeout: 600_000 });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", (error) => resolve({ status: null, stdout, stderr, error }));
    child.once("close", (code, signal) => resolve({ status: code, signal: signal === "SIGTERM" ? "SIGTERM: 600 s passed, or the container is stopping" : (signal ?? undefined), stdout, stderr }));
  });
}

/** The volume's SQLite databases (KDR_SQLITE_FILES), relative paths. */
function sqliteFiles(s: Settings): string[] {
  const raw = s.get("sqliteFiles");
  if (!raw) return [];
  const list = JSON.parse(raw) as unknown;
  if (!Array.isArray(list) || !list.every((f) => typeof f === "string" && f !== "" && !f.startsWith("/") && !f.split("/").includes(".."))) {
    throw new ConfigError(`${AGENT_ENV.sqliteFiles}=${raw} must be a JSON list of paths relative to the volume, e.g. ["grafana.db"].`);
  }
  return list as string[];
}

/** How long one online backup waits for the database's shared lock, and how often it tries. */
const SQLITE_BUSY_MS = 15_000;
const SQLITE_ATTEMPTS = 4;

/** A database file and the files SQLite keeps beside it while it writes. */
const sqliteSiblings = (f: string) => [f, `${f}-journal`, `${f}-wal`, `${f}-shm`];

async function sqlite3(args: string[]): Promise<string> {
  const r = await command("sqlite3", args);
  if (r.error?.code === "ENOENT") throw new Error("sqlite3 is not installed: the agent image must contain the sqlite3 package.");
  if (r.error) throw new Error(`sqlite3 ${args.slice(1).join(" ")} did not run: ${r.error.message}`);
  if (r.status === null) throw new Error(`sqlite3 ${args.slice(1).join(" ")} was killed by ${r.signal}`);
  if (r.status !== 0) throw new Error(`sqlite3 ${args.slice(1).join(" ")} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

/**
 * Copies each SQLite database with SQLite's online backup API (`.backup`: a consistent copy
 * while the application keeps writing; it takes the database's own shared lock, so the
 * read-only mount is enough) into `staging`, at the same relative path, and checks each copy
 * (`PRAGMA integrity_check`) before anything is uploaded.
 */
async function copySqlite(volume: string, files: string[], staging: string): Promise<void> {
  for (const f of files) {
    const src = join(volume, f);
    if (!existsSync(src)) throw new ConfigError(`${AGENT_ENV.sqliteFiles} names ${f}, which is not in ${volume}: correct the service's sqlite list.`);
    const dst = join(staging, f);
    mkdirSync(dirname(dst), { recursive: true });
    const t0 = Date.now();
    // A rollback-journal writer that commits back to back can keep the shared lock from the
    // backup past one busy timeout: try again a few times before failing the run.
    for (let attempt = 1; ; attempt++) {
      try {
        await sqlite3([`file:${src}?mode=ro`, `.timeout ${SQLITE_BUSY_MS}`, `.backup '${dst.replace(/'/g, "''")}'`]);
        break;
      } catch (e) {
        if (!/database is locked|database is busy/i.test((e as Error).message)) throw e;
        if (attempt >= SQLITE_ATTEMPTS) {
          throw new Error(`sqlite ${f}: its writer kept it locked through ${SQLITE_ATTEMPTS} attempts of ${SQLITE_BUSY_MS / 1000} s; SQLite's online backup needs a moment between two of its write transactions (or the database in WAL mode, where readers never wait): nothing was uploaded.`);
        }
        log(`sqlite ${f}: locked by its writer for ${SQLITE_BUSY_MS / 1000} s (attempt ${attempt} of ${SQLITE_ATTEMPTS}); trying again`);
      }
    }
    // The copy is written by the agent; give it the source's owner and mode, so a restored
    // database is writable by the application's own user (Grafana runs as uid 472).
    const st = statSync(src);
    try {
      chownSync(dst, st.uid, st.gid);
      chmodSync(dst, st.mode & 0o7777);
    } catch (e) {
      log(`sqlite ${f}: could not give the copy the owner ${st.uid}:${st.gid} of the database (${(e as Error).message}); a restore leaves it owned by the agent's user`);
    }
    const check = (await sqlite3([dst, "PRAGMA integrity_check;"])).trim();
    if (check !== "ok") throw new Error(`the online copy of ${f} failed SQLite's integrity check (${check.slice(0, 200)}): nothing was uploaded.`);
    log(`sqlite ${f}: online copy taken and checked in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
}

interface ResticSummary {
  message_type: "summary";
  data_added: number;
  total_bytes_processed: number;
  total_files_processed: number;
  files_new: number;
  files_changed: number;
  snapshot_id: string;
}

/**
 * Why an empty volume is not backed up, or undefined when it has content. restic refuses to save
 * an empty tree ("snapshot is empty"), and there is nothing to lose: the run is skipped, not failed.
 */
export function emptyVolumeReason(s: Settings): string | undefined {
  const volume = s.require("volumePath");
  if (!existsSync(volume)) throw new ConfigError(`${AGENT_ENV.volumePath}=${volume} does not exist: mount the protected volume there (read-only is enough).`);
  return readdirSync(volume).length === 0 ? `${volume} is empty: nothing to back up (restic cannot snapshot an empty tree); no backup was recorded` : undefined;
}

export async function backup(ctx: BackupContext, type: "full" | "incremental", repo: ActiveRepo): Promise<EngineResult> {
  const s = ctx.settings;
  const volume = s.require("volumePath");
  if (!existsSync(volume)) throw new ConfigError(`${AGENT_ENV.volumePath}=${volume} does not exist: mount the protected volume there (read-only is enough).`);
  const at = new Date();
  let summary: ResticSummary | undefined;
  let walkedAt = at;
  const dbs = sqliteFiles(s);
  const staging = join(s.stateDir, "sqlite-staging", ctx.backupId);
  let sqliteSnapshot: string | undefined;
  let companionRaw = 0;
  const nextcloud = s.get("maintenanceMode") === "nextcloud";
  let maintenance = false;
  let tsdb: { name: string; dir: string } | undefined;
  let failed = false;
  // What the repository holds before the run: the objects the run adds are what it stored (the
  // service's lock keeps prune out meanwhile). One listing of the repository each side: about one
  // request per thousand packs.
  const before = await ctx.storage.sizes(repo.prefix);
  try {
    // Maintenance mode first, so a pre hook (a dump of Nextcloud's database) runs inside it too.
    if (nextcloud) maintenance = enterMaintenance(volume);
    // Inside the try: a pre hook that failed half way (maintenance mode on, then an error) is
    // still undone by the post hook, which must be safe to run twice.
    await runHook(s, "hookPre");
    // Prometheus: the run stores its TSDB snapshot alone (a complete TSDB directory).
    if (s.get("tsdbSnapshotUrl")) tsdb = await takeTsdbSnapshot(s, volume);
    let lastPrint = 0;
    // --force on a full re-reads every file instead of trusting the parent snapshot's metadata.
    // The live SQLite files are left out; their online copies go in a companion snapshot.
    const excludes = dbs.flatMap((f) => sqliteSiblings(f).flatMap((x) => ["--exclude", join(volume, x)]));
    const args = ["backup", "--json", "--host", s.service, "--tag", "kdr", "--tag", ctx.backupId, ...(type === "full" ? ["--force"] : []), ...excludes, "."];
    if (dbs.length) {
      // Also what a killed run left: copies are never reused.
      rmSync(dirname(staging), { recursive: true, force: true });
      await copySqlite(volume, dbs, staging);
    }
    // A volume that holds nothing but its SQLite databases: restic refuses an empty snapshot, so
    // the run's snapshot is the one of the online copies alone.
    const left = new Set(dbs.flatMap(sqliteSiblings));
    const onlySqlite = dbs.length > 0 && readdirSync(volume).every((e) => left.has(e));
    if (!onlySqlite) await restic(s, repo, args, {
      cwd: tsdb?.dir ?? volume,
      onLine: (line) => {
        try {
          const m = JSON.parse(line) as { message_type: string; percent_done?: number; bytes_done?: number; total_bytes?: number; seconds_remaining?: number };
          if (m.message_type === "summary") summary = m as unknown as ResticSummary;
          else if (m.message_type === "status" && Date.now() - lastPrint > 2000) {
            lastPrint = Date.now();
            log(`restic ${s.service}: ${((m.percent_done ?? 0) * 100).toFixed(0)}% of ${m.total_bytes ?? "?"} bytes${m.seconds_remaining ? `, ETA ${m.seconds_remaining} s` : ""}`);
          }
        } catch {
          /* restic prints a few non-JSON lines; they are not progress */
        }
      },
    });
    walkedAt = new Date();
    if (dbs.length) {
      let companion: ResticSummary | undefined;
      await restic(s, repo, ["backup", "--json", "--host", s.service, "--tag", "kdr", "--tag", ctx.backupId, "--tag", SQLITE_TAG, "."], {
        cwd: staging,
        onLine: (line) => {
          if (line.includes('"summary"')) companion = JSON.parse(line) as ResticSummary;
        },
      });
      if (onlySqlite) summary = companion;
      else {
        sqliteSnapshot = companion?.snapshot_id;
        // What the run read includes the online copies, as what it stored includes their objects.
        companionRaw = companion?.total_bytes_processed ?? 0;
      }
      log(`sqlite: ${dbs.join(", ")} stored as snapshot ${companion?.snapshot_id.slice(0, 8) ?? "?"}${onlySqlite ? " (the volume holds nothing else)" : " beside the volume's"}`);
    }
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    rmSync(staging, { recursive: true, force: true });
    // Each undo runs even when one before it failed. Their first failure is the run's error,
    // unless the run had already failed (that error stands; theirs are logged).
    await undoAll(failed, [
      () => runHook(s, "hookPost"),
      () => leaveMaintenance(volume, maintenance),
      () => (tsdb ? removeTsdbSnapshot(s, volume, tsdb.name) : undefined),
    ]);
  }
  if (!summary) throw new Error("restic backup finished without a JSON summary: the tool's output format changed; check the restic version.");
  // restic 0.14's summary gives the short id; the full id is the SHA-256 of the snapshot object.
  const snaps = JSON.parse(await restic(s, repo, ["snapshots", "--json", "--tag", ctx.backupId])) as { id: string; short_id: string }[];
  const full = snaps.find((x) => x.id.startsWith(summary!.snapshot_id));
  if (!full) throw new Error(`restic snapshot ${summary.snapshot_id} of this run is not listed by 'restic snapshots': the repository changed under us.`);
  summary.snapshot_id = full.id;
  const stored = addedBytes(before, await ctx.storage.sizes(repo.prefix), repo.prefix);
  const raw = summary.total_bytes_processed + companionRaw;
  return {
    artifacts: [
      {
        bucket: ctx.storage.bucket,
        key: `${repo.prefix}snapshots/${summary.snapshot_id}`,
        name: "restic-snapshot",
        rawBytes: raw,
        rawSha256: summary.snapshot_id,
        storedBytes: stored,
        // A restic snapshot id is the SHA-256 of the snapshot object; restic checks it on read.
        sha256: summary.snapshot_id,
      },
    ],
    tool: "restic",
    toolVersion: toolVersion("restic", ["version"]),
    // restic reads the files one after another: a file changed during the walk may be in the
    // snapshot or not, so the point is the walk's span (start: all before it is in; end: nothing
    // after it is).
    recoveryPointStart: at,
    recoveryPointEnd: walkedAt,
    measured: { rawBytes: raw, storedBytes: stored },
    details: {
      snapshotId: summary.snapshot_id,
      ...(dbs.length ? { sqlite: { files: dbs, snapshotId: sqliteSnapshot ?? summary.snapshot_id, meaning: sqliteSnapshot ? "online copies (SQLite backup API), restored over the volume snapshot" : "online copies (SQLite backup API): the volume holds nothing else, so they are the run's snapshot" } } : {}),
      repository: { generation: repo.generation, prefix: repo.prefix, id: repo.repositoryId, keyId: repo.keyId },
      dataAdded: summary.data_added,
      totalBytesProcessed: summary.total_bytes_processed,
      filesNew: summary.files_new,
      filesChanged: summary.files_changed,
      ...(tsdb ? { tsdbSnapshot: { name: tsdb.name, meaning: "Prometheus TSDB snapshot (admin API), stored alone: restored, it is the data directory" } } : {}),
      ...(nextcloud ? { maintenanceMode: maintenance ? "on during the copy (turned on and off by this run)" : "on during the copy (set by someone else, left on)" } : {}),
      meaning: type === "incremental" ? "restic snapshot; only new chunks uploaded" : "restic snapshot with --force (every file re-read); dedup still applies",
      ratioMeaning: "stored/raw = the bytes of the objects this run added to the repository in the bucket (packs after dedup and restic's compression, index and snapshot files) / the bytes restic read (total_bytes_processed, with the SQLite online copies' snapshot when there is one); dataAdded is restic's count of the new chunks before compression",
    },
  };
}

/**
 * Bytes of the objects under `prefix` that are in `after` and not in `before`: what a run added
 * to the repository. Lock files come and go with every restic command and are not stored data.
 */
export function addedBytes(before: Map<string, number>, after: Map<string, number>, prefix: string): number {
  let n = 0;
  for (const [key, size] of after) if (!before.has(key) && !key.startsWith(`${prefix}locks/`)) n += size;
  return n;
}

async function undoAll(failed: boolean, steps: Array<() => unknown>): Promise<void> {
  let first: unknown;
  for (const step of steps) {
    try {
      await step();
    } catch (e) {
      log(`volume: ${(e as Error).message}`);
      first ??= e;
    }
  }
  if (first && !failed) throw first;
}

/** Opens the generation a snapshot is in, skipping any key that does not open it. */
async function openSnapshotRepo(s: Settings, storage: Storage, snapshotKey: string) {
  const ref = await repoOfSnapshot(storage, snapshotKey);
  const o = await openRepo(s, storage, ref);
  return { prefix: ref.prefix, keyId: o.keyId };
}

export async function restore(s: Settings, storage: Storage, snapshotKey: string, snapshotId: string, target: string, overwrite: boolean): Promise<void> {
  mkdirSync(target, { recursive: true });
  if (readdirSync(target).length > 0 && !overwrite) {
    throw new Error(`restore target ${target} is not empty: give an empty directory, or --force-overwrite-source --yes to restore over it.`);
  }
  const repo = await openSnapshotRepo(s, storage, snapshotKey);
  // restic verifies every blob's MAC and hash as it restores; a damaged pack fails the restore.
  // --no-lock: restore credentials are read-only (a restore must not be able to change the
  // repository), and a lock is an object write; reading a snapshot needs no lock.
  await restic(s, repo, ["--no-lock", "restore", snapshotId, "--target", target, "--verify"]);
  log(`volume restore: snapshot ${snapshotId.slice(0, 8)} restored into ${target} (from ${repo.prefix})`);
  // Nextcloud copied in the maintenance mode the backup turned on comes back out of it.
  recoverMaintenance(target, "was on in the copy (turned on by the backup)");
  // The online copies of the volume's SQLite databases, taken in the same run (same backup tag).
  const [main] = JSON.parse(await restic(s, repo, ["--no-lock", "snapshots", "--json", snapshotId])) as Array<{ tags?: string[] }>;
  const backupTag = main?.tags?.find((t) => t !== "kdr" && t !== SQLITE_TAG);
  if (!backupTag) return;
  const companions = JSON.parse(await restic(s, repo, ["--no-lock", "snapshots", "--json", "--tag", `${SQLITE_TAG},${backupTag}`])) as Array<{ id: string }>;
  for (const c of companions.filter((x) => x.id !== snapshotId)) {
    // Over a target that was not empty, a journal left beside a database would be replayed or
    // rolled back onto the restored copy: they go first.
    const files = (await restic(s, repo, ["--no-lock", "ls", "--json", c.id]))
      .split("\n")
      .map((l) => { try { return JSON.parse(l) as { type?: string; path?: string }; } catch { return {}; } })
      .filter((n) => n.type === "file" && n.path)
      .map((n) => n.path!);
    for (const f of files) for (const x of sqliteSiblings(f).slice(1)) rmSync(join(target, x), { force: true });
    await restic(s, repo, ["--no-lock", "restore", c.id, "--target", target, "--verify"]);
    log(`volume restore: SQLite online copies of snapshot ${c.id.slice(0, 8)} restored over it`);
  }
}

export async function verify(s: Settings, storage: Storage, snapshotKey: string, snapshotId: string): Promise<string[]> {
  const repo = await openSnapshotRepo(s, storage, snapshotKey);
  // --no-lock: verify runs with the read-only restore keys (the drill cron container), and a
  // restic lock is an object write; reading changes nothing.
  await restic(s, repo, ["--no-lock", "cat", "snapshot", snapshotId]);
  const out = await restic(s, repo, ["--no-lock", "check", "--read-data"]);
  return [`restic check --read-data of ${repo.prefix}: ${out.trim().split("\n").slice(-1)[0]}`];
}

/** Forgets snapshots, one repository generation at a time; a generation that no longer opens is left to the lifecycle. */
export async function forget(s: Settings, storage: Storage, snapshots: { key: string; id: string }[]): Promise<void> {
  const byPrefix = new Map<string, string[]>();
  for (const x of snapshots) {
    const p = x.key.slice(0, x.key.lastIndexOf("snapshots/"));
    byPrefix.set(p, [...(byPrefix.get(p) ?? []), x.id]);
  }
  for (const [prefix, ids] of byPrefix) {
    try {
      const repo = await openSnapshotRepo(s, storage, `${prefix}snapshots/${ids[0]}`);
      // A run's SQLite online copies (its companion snapshot, same backup tag) go with it.
      const all = JSON.parse(await restic(s, repo, ["--no-lock", "snapshots", "--json"])) as Array<{ id: string; tags?: string[] }>;
      // A run's own tag (its backup id), never the shared ones: a run whose only snapshot is its
      // SQLite copies carries the sqlite tag, which every other run's copies carry too.
      const runTags = new Set(all.filter((x) => ids.includes(x.id)).flatMap((x) => (x.tags ?? []).filter((t) => t !== "kdr" && t !== SQLITE_TAG)));
      const companions = all.filter((x) => x.tags?.includes(SQLITE_TAG) && x.tags.some((t) => runTags.has(t))).map((x) => x.id);
      await restic(s, repo, ["forget", "--prune", ...new Set([...ids, ...companions])]);
    } catch (e) {
      if (!(e instanceof ResticDamagedError)) throw e;
      log(`prune ${s.service}: ${e.message}; its ${ids.length} snapshot(s) are left to the bucket lifecycle`);
    }
  }
}
