/** `kdr-agent restore`: the catalog's recovery plan for a target, checked object by object, then the engine's restore. */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import * as cat from "../catalog.js";
import { ConfigError, type Settings } from "../config.js";
import * as pgEngine from "../engines/postgres.js";
import * as redisEngine from "../engines/redis.js";
import * as volumeEngine from "../engines/volume.js";
import { checkStoredSha, IntegrityError } from "../storage/pipeline.js";
import { fmtBytes, fmtSeconds, log } from "../storage/progress.js";
import { Storage } from "../storage/s3.js";
import { diskFull, heldHere, identityFor, inRegionOf, loadManifest, outsideTheBackup } from "./shared.js";

export const toRef = (a: cat.ArtifactRow): pgEngine.StoredRef => ({
  key: a.objectKey,
  versionId: a.versionId,
  sha256: a.sha256,
  storedBytes: a.sizeBytes,
  rawBytes: a.rawSize ?? undefined,
  rawSha256: typeof a.metadata.rawSha256 === "string" ? a.metadata.rawSha256 : undefined,
  name: typeof a.metadata.name === "string" ? a.metadata.name : path.basename(a.objectKey),
});

/** A .partial segment is staged under its full name: recovery replays it up to where it ends. */
const walRef = (w: cat.WalSegmentRow): pgEngine.StoredRef => ({
  key: w.objectKey,
  versionId: w.versionId,
  sha256: w.sha256,
  storedBytes: w.sizeBytes,
  rawBytes: w.rawSize ?? undefined,
  name: w.segmentName.replace(/\.partial$/, ""),
});

/** When a verify of this backup passed (its engine's own check ran on the bytes), or null. */
const verifiedAt = (r: cat.BackupRow) => (r.verifyStatus === "passed" ? r.verifiedAt : null);

/**
 * The plan's WAL, extended by every contiguous archived segment after it. A segment's
 * covers_until is when the agent saw it complete, which after a catch-up (sidecar restart,
 * one-shot incremental) is later than the commits inside it; replaying more WAL than needed is
 * harmless because recovery stops at recovery_target_time, while too little would stop short.
 */
async function contiguousWal(c: pg.Client, tenantId: string, service: string, planned: cat.WalSegmentRow[]): Promise<cat.WalSegmentRow[]> {
  const last = planned[planned.length - 1];
  if (!last || last.segmentName.endsWith(".partial")) return planned;
  const byNo = new Map<bigint, cat.WalSegmentRow>();
  for (const w of await cat.listWalSegments(c, service, { tenantId, timeline: last.timeline })) {
    if (w.segmentName.endsWith(".history")) continue;
    const no = cat.walSegmentNumber(w.segmentName);
    const prev = byNo.get(no);
    if (!prev || prev.segmentName.endsWith(".partial")) byNo.set(no, w);
  }
  const out = [...planned];
  for (let no = cat.walSegmentNumber(last.segmentName) + 1n; ; no++) {
    const w = byNo.get(no);
    if (!w) break;
    out.push(w);
    if (w.segmentName.endsWith(".partial")) break;
  }
  return out;
}

export interface RestoreOptions {
  target: string;
  backupId?: string;
  time?: Date;
  walDir?: string;
  forceOverwriteSource?: boolean;
  yes?: boolean;
  /** Empty the target first (for scratch targets such as drills); never allowed on the source. */
  cleanTarget?: boolean;
  /** uid:gid to own the restored files (the server's user in the image that will serve them). */
  owner?: string;
  /** PostgreSQL: restore as a warm standby (standby seed): the newest base, whole WAL segments only, standby.signal. */
  standby?: boolean;
}

export interface RestoreSummary {
  service: string;
  engine: string;
  backupId: string;
  target: string;
  recoveryTarget: string;
  reaches: string;
  artifactsChecked: number;
  walSegments: number;
  durationSeconds: number;
  next: string;
  /** What was damaged and skipped: the restore reached the newest good point instead (empty: none). */
  fellBack: string[];
}

/** `a` is `b` or holds it. */
const holds = (a: string, b: string) => a === b || b.startsWith(a.endsWith("/") ? a : `${a}/`);

/**
 * The paths a restore writes and may empty, judged before anything is read or removed: the target
 * is needed; and what --clean-target empties (the target's contents and the --wal-dir) is never
 * the root, never holds the source, and the WAL directory never holds the target.
 */
export function checkRestorePaths(s: Settings, o: Pick<RestoreOptions, "target" | "walDir" | "cleanTarget">): void {
  if (!o.target) throw new ConfigError("restore needs an explicit target: pass --target <empty directory> (it never restores over the source by default).");
  if (o.walDir !== undefined && !path.isAbsolute(o.walDir)) throw new ConfigError(`--wal-dir '${o.walDir}' must be an absolute path (the directory the restored WAL is staged in, outside the data directory).`);
  if (!o.cleanTarget) return;
  const target = path.resolve(o.target);
  const source = s.get("volumePath") === undefined ? undefined : path.resolve(s.get("volumePath")!);
  const emptied = [["--target", target], ...(o.walDir ? [["--wal-dir", path.resolve(o.walDir)]] : [])] as const;
  for (const [flag, dir] of emptied) {
    if (dir === "/") throw new ConfigError(`--clean-target refuses ${flag} /: it would empty the whole filesystem. Give the directory the restore writes to.`);
    if (source && holds(dir, source) && dir !== source) throw new ConfigError(`--clean-target refuses ${flag} ${dir}: it holds the source ${source}. Give a directory of its own.`);
  }
  if (o.walDir && holds(path.resolve(o.walDir), target)) {
    throw new ConfigError(`--clean-target refuses --wal-dir ${path.resolve(o.walDir)}: it holds the target ${target}. Give the WAL its own directory beside the data directory.`);
  }
}

export async function runRestore(s: Settings, c: pg.Client, o: RestoreOptions): Promise<RestoreSummary> {
  const service = s.service;
  const engine = s.engine;
  const tenantId = s.tenantId;
  checkRestorePaths(s, o);
  const target = path.resolve(o.target);
  const source = s.get("volumePath");
  const overSource = (source !== undefined && path.resolve(source) === target) || existsSync(path.join(target, "postmaster.pid"));
  if (overSource && !(o.forceOverwriteSource && o.yes)) {
    throw new ConfigError(`${target} is the source (or a running PostgreSQL data directory): restoring over it needs both --force-overwrite-source and --yes.`);
  }
  if (o.cleanTarget && existsSync(target)) {
    if (overSource) throw new ConfigError(`--clean-target refuses ${target}: it is the source. Use --force-overwrite-source --yes if you really mean to replace it.`);
    if (o.walDir && source !== undefined && path.resolve(o.walDir) === path.resolve(source)) throw new ConfigError(`--clean-target refuses --wal-dir ${o.walDir}: it is the source.`);
    for (const f of readdirSync(target)) rmSync(path.join(target, f), { recursive: true, force: true });
    if (o.walDir && existsSync(o.walDir)) for (const f of readdirSync(o.walDir)) rmSync(path.join(o.walDir, f), { recursive: true, force: true });
  }
  const nonEmpty = existsSync(target) && readdirSync(target).length > 0;
  if (nonEmpty && !(o.forceOverwriteSource && o.yes)) {
    throw new ConfigError(`restore target ${target} is not empty: give an empty or new directory (or --force-overwrite-source --yes to replace what is there).`);
  }
  if (o.standby && (engine !== "postgres" || o.backupId || o.time)) throw new ConfigError("a standby is seeded from the newest PostgreSQL base only: no --time or --backup-id.");
  const storage = Storage.fromSettings(s);
  const t0 = Date.now();

  let row: cat.BackupRow;
  let arts: cat.ArtifactRow[];
  let wal: cat.WalSegmentRow[] = [];
  let reaches: Date;
  let targetTime = o.time;
  /** A snapshot engine's plan looks before this point once a newer backup was not here. */
  let before: Date | undefined;
  const fellBack: string[] = [];
  /**
   * A missing or mismatching object is damage only where the backup was written: in another
   * region it may just not be copied (or its copy not recorded) yet, which says nothing of the
   * backup. An unreachable store says nothing either. Only damage is fallen back from.
   */
  const damaged = (e: unknown, r: cat.BackupRow) =>
    r.storageRegion === storage.region && r.storageBucket === storage.bucket && !outsideTheBackup(e) &&
    (e instanceof IntegrityError || /NoSuch(Key|Version)|HTTP 404/.test((e as Error).message));
  const identityOf = (r: cat.BackupRow) => (engine === "volume" ? "" : identityFor(s, r.encryptionKeyId));
  let checked = 1;
  /** Restoring over what is there (--force-overwrite-source): the base is checked before it is written. */
  const overwrite = nonEmpty;
  /** Set once this restore writes into the target, which was empty: a failure empties it again. */
  let applied = false;
  const emptyTarget = () => {
    if (overwrite || !existsSync(target)) return;
    for (const f of readdirSync(target)) rmSync(path.join(target, f), { recursive: true, force: true });
    if (o.walDir) for (const w of wal) rmSync(path.join(o.walDir, walRef(w).name), { force: true });
    applied = false;
    log(`restore ${service}: removed what this restore had written to ${target}`);
  };
  const noRoom = (e: unknown, a: cat.ArtifactRow[]) => {
    const raw = a.filter((x) => x.role === "base" || x.role === "rdb").reduce((n, x) => n + (x.rawSize ?? 0), 0);
    return new Error(`the disk holding ${target} is full: free space there, or restore to a larger volume${raw ? ` (this backup is ${fmtBytes(raw)} unpacked${engine === "postgres" ? ", plus its WAL" : ""})` : ""}: ${(e as Error).message}`, { cause: e });
  };
  /** A standby's base on the service's newest timeline, when a newer one lies on an older timeline. */
  let pinned: string | undefined;
  for (;;) {
    const chosen = o.backupId ?? pinned;
    if (chosen) {
      const r = await cat.getBackup(c, chosen);
      if (!r || r.serviceName !== service) throw new ConfigError(`backup ${chosen} of '${service}' is not in the catalog: run 'kdr-agent list' to see ids.`);
      if (r.backupStatus !== "completed") throw new ConfigError(`backup ${chosen} is ${r.backupStatus}, not completed: only completed backups are restored.`);
      row = r;
      arts = await cat.listArtifacts(c, r.backupId);
      // A standby's pinned base: its WAL is staged by its follower and streamed (none planned here).
      wal = [];
      reaches = r.recoveryPointEnd!;
    } else {
      // PostgreSQL restores start from a base; its "incremental" rows are WAL bookkeeping.
      const plan = await cat.recoveryPlan(c, service, before ?? o.time ?? "latest", { tenantId, baseTypes: engine === "postgres" ? ["full"] : ["full", "incremental"] });
      row = plan.base;
      arts = plan.artifacts.filter((a) => a.backupId === row.backupId);
      wal = engine === "postgres" ? [...plan.history, ...(await contiguousWal(c, tenantId, service, plan.wal))] : [];
      reaches = plan.recoveryPoint;
    }
    if (o.standby) {
      // A base on an older timeline than the service's newest (a promotion since) is followed by
      // WAL the promoted side left behind (its old primary's last moments): a standby replaying
      // it could never follow the promoted timeline.
      const newest = await cat.newestTimeline(c, service, tenantId);
      if (row.timeline && newest && row.timeline < newest && !pinned) {
        // The newest base by time can be the old side's, taken after the hand-over (its sidecar
        // runs until its stack goes back to standbys): the base on the newest timeline is the one.
        pinned = await cat.newestBaseOnTimeline(c, service, tenantId, newest);
        if (pinned) {
          log(`restore ${service}: the newest base (${row.backupId}) is on timeline ${row.timeline}, the service runs on timeline ${newest}: seeding from ${pinned}, the newest base on it`);
          continue;
        }
      }
      if (row.timeline && newest && row.timeline < newest) {
        throw new ConfigError(
          `the newest base of ${service} (backup ${row.backupId}) is on timeline ${row.timeline}, and ${service} runs on timeline ${newest} since a promotion: ` +
            `a standby cannot be seeded from it. Take a base of the promoted service first ('kdr-agent backup --type full' in its sidecar), let it reach region ${storage.region}, then seed again.`,
        );
      }
      // A standby replays segment after segment: a .partial would stand in for a whole one it is
      // not. And it takes only what this region holds already, in order: its follower stages the
      // rest as the replicator copies it.
      wal = await heldHere(c, storage, wal.filter((w) => /^[0-9A-F]{24}$/.test(w.segmentName)));
    }
    const written = new Map(arts.map((a) => [a.objectKey, a.versionId]));
    arts = await inRegionOf(c, storage, arts);
    wal = await inRegionOf(c, storage, wal);
    // Written in another region and no copy recorded here: read with the other region's version id.
    const elsewhere = row.storageRegion && row.storageRegion !== storage.region ? row.storageRegion : undefined;
    const uncopied = elsewhere ? arts.filter((a) => a.versionId && written.get(a.objectKey) === a.versionId).map((a) => a.objectKey) : [];
    log(`restore ${service}: using backup ${row.backupId} (${row.backupType}, recovery point ${row.recoveryPointEnd?.toISOString()})${wal.length ? ` + ${wal.length} WAL file(s)` : ""}, reaching ${reaches.toISOString()}, from ${storage.bucket} in region ${storage.region}`);
    try {
      await loadManifest(storage, row, arts);
      const identity = identityOf(row);
      for (const r of arts.filter((a) => a.role === "base" || a.role === "rdb").map(toRef)) {
        if (overwrite) {
          // Over what is there, nothing is written before the base's SHA-256 is checked.
          await checkStoredSha(storage, r, r.name);
        } else {
          // Into an empty target the base is checked as it is written, in one download.
          const t = Date.now();
          applied = true;
          if (engine === "postgres") await pgEngine.unpackBase({ storage, identityFile: identity, base: r, target });
          else await redisEngine.restore({ storage, identityFile: identity, rdb: r, target, overwrite: false, verifiedAt: verifiedAt(row) });
          log(`restore ${service}: ${r.name} (${fmtBytes(r.rawBytes ?? 0)}) written to ${target} and its SHA-256 checked, in ${fmtSeconds((Date.now() - t) / 1000)}`);
        }
        checked++;
      }
      break;
    } catch (e) {
      // What this restore wrote into the empty target goes before anything else is tried.
      if (applied) emptyTarget();
      if (diskFull(e)) throw noRoom(e, arts);
      // A damaged backup (not an unreachable store, not a missing key) is recorded as such, and
      // the plan is made again without it: the newest good point, said, not a failed restore.
      if (uncopied.length && !outsideTheBackup(e) && /NoSuch(Key|Version)|HTTP 404/.test((e as Error).message)) {
        // A region lost while it copied a backup: the newest one may not be here whole. A snapshot
        // is whole in itself, so the newest one this region holds is the point to restore (said;
        // not a failed verify: the backup is intact where it was written). A PostgreSQL base is
        // followed by WAL, which must be here too: that stops, saying so (a standby too: an older
        // base may lie on a timeline the newest one left, whose later WAL it must not replay).
        if (engine !== "postgres" && !o.backupId && !o.standby && fellBack.length < 5 && row.recoveryPointEnd) {
          fellBack.push(`backup ${row.backupId} (point ${row.recoveryPointEnd.toISOString()}) is not in region ${storage.region} whole (no copy recorded of ${uncopied.join(", ")}; written in region ${elsewhere})`);
          log(`restore ${service}: backup ${row.backupId} was written in region ${elsewhere} and is not here whole (no copy of ${uncopied.join(", ")} recorded in region ${storage.region}): falling back to the newest earlier backup this region holds`);
          before = new Date(row.recoveryPointEnd.getTime() - 1);
          checked = 1;
          continue;
        }
        throw new Error(
          `${(e as Error).message} [backup ${row.backupId} was written in region ${elsewhere}; the catalog records no copy in region ${storage.region} of ${uncopied.join(", ")}: ` +
            `it was not copied before that region was lost, or its copy was recorded after the catalog's restore point. 'kdr-agent catalog rebuild' in this region records the copies this bucket holds; restore to a point before ${row.recoveryPointEnd?.toISOString()} otherwise]`,
          { cause: e },
        );
      }
      if (o.backupId || o.standby || !damaged(e, row) || fellBack.length >= 5) throw e;
      const why = (e as Error).message;
      await cat.recordVerification(c, row.backupId, { status: "failed", details: { error: why, by: "restore" } });
      fellBack.push(`backup ${row.backupId} (point ${row.recoveryPointEnd?.toISOString()}) is damaged: ${why}`);
      log(`restore ${service}: backup ${row.backupId} is damaged (${why}); recorded as a failed verify, so no plan uses it again. Falling back to the newest good backup for the same target`);
      checked = 1;
    }
  }

  let next = "";
  try {
    if (engine === "volume") {
      const snap = arts.find((a) => a.role === "restic");
      if (!snap) throw new IntegrityError(`backup ${row.backupId} has no restic snapshot artifact.`);
      await volumeEngine.restore(s, storage, snap.objectKey, snap.sha256, target, !!(o.forceOverwriteSource && o.yes));
      checked++;
      next = `files are in ${target}`;
    } else if (engine === "postgres") {
      const identity = identityOf(row);
      const base = arts.filter((a) => a.role === "base").map(toRef).find((r) => r.name === "base.tar");
      if (!base) throw new IntegrityError(`backup ${row.backupId} has no base.tar artifact.`);
      // WAL after a damaged or missing segment cannot be replayed: the replay stops before it (said).
      const stopAt = (i: number, e: unknown) => {
        const kept = wal.slice(0, i).filter((x) => !x.segmentName.endsWith(".history"));
        const until = kept.at(-1)?.coversUntil ?? row.recoveryPointEnd!;
        const why = (e as Error).message;
        fellBack.push(`WAL ${wal[i]!.segmentName} is damaged or missing (${why}): the restore stops before it, at ${until.toISOString()}`);
        log(`restore ${service}: WAL ${wal[i]!.segmentName} is damaged or missing (${why}); replaying only the ${i} file(s) before it, reaching ${until.toISOString()} instead of ${reaches.toISOString()}`);
        wal = wal.slice(0, i);
        if (targetTime && targetTime.getTime() > until.getTime()) targetTime = undefined;
        reaches = until;
      };
      if (overwrite) {
        // Over what is there, every WAL segment is checked too before the base is written.
        for (const [i, w] of wal.entries()) {
          try {
            await checkStoredSha(storage, walRef(w), w.segmentName);
          } catch (e) {
            if (o.standby || !damaged(e, row)) throw e;
            stopAt(i, e);
            break;
          }
          checked++;
        }
        applied = true;
        await pgEngine.unpackBase({ storage, identityFile: identity, base, target });
      }
      // The WAL, each segment checked as it is staged, a few at a time.
      const walDir = pgEngine.walStagingDir(target, o);
      const t = Date.now();
      applied = true;
      const staged = await pgEngine.stageWal({ storage, identityFile: identity, wal: wal.map(walRef), dir: walDir, isDamage: (e) => !o.standby && damaged(e, row) });
      if (!overwrite) checked += staged.staged;
      if (staged.damaged) stopAt(staged.damaged.index, staged.damaged.error);
      if (wal.length) log(`restore ${service}: ${wal.length} WAL file(s) staged in ${walDir} and their SHA-256 checked, in ${fmtSeconds((Date.now() - t) / 1000)}`);
      if (o.standby) {
        pgEngine.writeStandbyConfig(target);
        log(`postgres standby: base + ${wal.length} WAL file(s) in ${target}; it starts as a standby and replays WAL staged in ${pgEngine.STANDBY_WAL_DIR} by 'kdr-agent standby follow'`);
      } else {
        pgEngine.writeRecoveryConfig(target, { walDir: o.walDir, targetTime });
        log(`postgres restore: base + ${wal.length} WAL file(s) in ${target}; recovery ${targetTime ? `to ${targetTime.toISOString()}` : "to the end of the WAL"} happens when PostgreSQL starts on it`);
      }
      next = `start PostgreSQL 15 on ${target} (owned by the postgres user, mode 0700); it replays the WAL and promotes`;
    } else {
      const rdb = arts.filter((a) => a.role === "rdb").map(toRef).find((r) => r.name === "dump.rdb");
      if (!rdb) throw new IntegrityError(`backup ${row.backupId} has no dump.rdb artifact.`);
      // Written aside and renamed over the old one only whole and checked.
      if (overwrite) await redisEngine.restore({ storage, identityFile: identityOf(row), rdb, target, overwrite: true, verifiedAt: verifiedAt(row) });
      next = `start redis-server with 'dir ${target}' and 'dbfilename dump.rdb'`;
    }
  } catch (e) {
    if (applied) emptyTarget();
    throw diskFull(e) ? noRoom(e, arts) : e;
  }
  log(`restore ${service}: SHA-256 of ${checked} object(s) (manifest included) checked`);
  if (o.owner) {
    if (!/^\d+:\d+$/.test(o.owner)) throw new ConfigError(`--owner '${o.owner}' is not uid:gid: give numbers, e.g. 999:999 for the official postgres image.`);
    for (const p of [target, ...(o.walDir ? [o.walDir] : [])]) {
      const r = spawnSync("chown", ["-R", o.owner, p], { encoding: "utf8" });
      if (r.status !== 0) throw new Error(`chown -R ${o.owner} ${p} failed: ${r.stderr.trim()}`);
    }
  }
  return {
    service,
    engine,
    backupId: row.backupId,
    target,
    recoveryTarget: o.time ? o.time.toISOString() : o.backupId ? `backup ${o.backupId}` : "latest",
    reaches: reaches.toISOString(),
    artifactsChecked: checked,
    walSegments: wal.length,
    durationSeconds: (Date.now() - t0) / 1000,
    next,
    fellBack,
  };
}
