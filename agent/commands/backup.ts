/** `kdr-agent backup`: one full or incremental run of a service, recorded in the catalog, with its manifest. */
import { createHash, randomUUID } from "node:crypto";
import type pg from "pg";
import { BACKUP_CLASSES, objectPrefix, type BackupClass } from "../../contract/index.js";
import * as cat from "../catalog.js";
import { ConfigError, type Settings } from "../config.js";
import * as pgEngine from "../engines/postgres.js";
import { backupIncremental, noBaseYet, type WalStreamer } from "../engines/postgres-wal.js";
import * as redisEngine from "../engines/redis.js";
import * as volumeEngine from "../engines/volume.js";
import { writableRepo, type ActiveRepo } from "../engines/restic-repo.js";
import type { BackupContext, EngineResult } from "../engines/types.js";
import { acquireServiceLock } from "../lock.js";
import { m } from "../metrics.js";
import { sendEvent } from "../notify.js";
import type { SealedArtifact } from "../storage/pipeline.js";
import { fmtBytes, fmtSeconds, log } from "../storage/progress.js";
import { Storage } from "../storage/s3.js";
import { rowFromManifest } from "./rebuild.js";
import { AGENT_VERSION, MANIFEST_FORMAT, diskFull, lockFor, outsideTheBackup, manifestArtifact, manifestKeyOf, openManifest, recipient, sealManifest, type Manifest, type ManifestCatalogRow } from "./shared.js";
import { startWalStreamer } from "./wal-streamer.js";

/** Runs in progress in this process, so a SIGTERM can record them as failed before exiting. */
const inflight = new Map<string, pg.Client>();

/** Marks every run of this process failed (Swarm stops containers with SIGTERM). */
export async function failInflight(reason: string): Promise<number> {
  const ids = [...inflight.entries()];
  for (const [id, c] of ids) await cat.failBackup(c, id, reason).catch(() => undefined);
  return ids.length;
}

export interface BackupSummary {
  backupId: string;
  service: string;
  engine: string;
  type: string;
  status: "completed";
  rawBytes: number;
  storedBytes: number;
  ratio: number | null;
  durationSeconds: number;
  location: string;
  recoveryPoint: { start: string; end: string };
  keyId: string;
  tool: string;
  toolVersion: string;
  artifacts: { name: string; sha256: string; storedBytes: number; rawBytes: number; key: string; versionId?: string }[];
  reconciled: string[];
  /** Runs a dead agent (or a lost catalog) left in flight whose manifest proves they completed. */
  completedFromManifests: string[];
  /** Multipart uploads a killed run left, aborted before this run wrote anything. */
  staleUploadsAborted: string[];
  details: Record<string, unknown>;
}

/** A run that found nothing to back up (an empty volume): nothing stored, nothing recorded. */
export interface SkippedBackup {
  status: "skipped";
  service: string;
  engine: string;
  type: string;
  reason: string;
}

export async function runBackup(
  s: Settings,
  c: pg.Client,
  requestedType: "full" | "incremental",
  opts: { waitSeconds?: number; streamer?: WalStreamer; logical?: boolean } = {},
): Promise<BackupSummary | SkippedBackup> {
  const service = s.service;
  const engine = s.engine;
  const tenantId = s.tenantId;
  const storage = Storage.fromSettings(s);
  const rcpt = engine === "volume" ? undefined : recipient(s);
  let type = requestedType;
  const held = await acquireServiceLock(c, s.stateDir, `backup:${service}`, opts.waitSeconds ?? 0);
  const t0 = Date.now();
  let id: string | undefined;
  let hb: NodeJS.Timeout | undefined;
  let manifestStored: string | undefined;
  try {
    // We hold the service lock, so every in-flight row of this service is a dead run's leftover:
    // completed from its manifest when the run got that far (the catalog was down, or the agent
    // died, before it was told), failed otherwise.
    const completedFromManifests = await completeFromManifests(s, c, storage);
    const reconciled = (await cat.reconcileStaleRuns(c, { service, tenantId, staleAfterSeconds: 0 })).map((r) => r.backupId);
    for (const r of reconciled) log(`reconciled stale run ${r} (its agent stopped) to failed`);
    const staleUploadsAborted = await abortStaleUploads(storage, service);
    const empty = engine === "volume" ? volumeEngine.emptyVolumeReason(s) : undefined;
    let emptyError: Error | undefined;
    if (empty) {
      // Empty before anything was ever backed up: nothing to lose. Empty after a backup that held
      // data: the volume is gone, unmounted, or this sidecar runs on a node without it. That is
      // a failed run (counted, alerted), never a quiet skip.
      const last = await cat.latestGoodBackup(c, service, { tenantId, type: ["full", "incremental"] });
      if (!last || !last.rawSize) {
        log(`backup of ${service} skipped: ${empty}`);
        return { status: "skipped", service, engine, type, reason: empty };
      }
      emptyError = new Error(
        `${s.require("volumePath")} is empty, but the last backup of ${service} (${last.backupId}, ${last.completedAt?.toISOString()}) held ${fmtBytes(last.rawSize)}: ` +
          `the volume is missing, not mounted, or this sidecar runs on a node without the data (check its placement constraint against the service's). Nothing was backed up.`,
      );
    }
    // The restic repository is chosen (or initialised: exactly once, as we hold the lock) first,
    // so the first backup into a new generation is recorded as the full it is.
    let repo: (ActiveRepo & { started: boolean }) | undefined;
    let repoError: unknown;
    if (engine === "volume" && !emptyError) {
      try {
        repo = await writableRepo(s, c, storage, lockFor(s, "full"));
        if (repo.started && type === "incremental") {
          log(`backup of ${service}: the first snapshot of generation ${repo.generation} is taken as a full`);
          type = "full";
        }
      } catch (e) {
        repoError = e;
      }
    }
    const backupId = randomUUID();
    id = backupId;
    const cls: BackupClass = engine === "volume" ? "restic" : type;
    const prefix = engine === "volume" ? (repo?.prefix ?? objectPrefix("restic", service)) : `${objectPrefix(cls, service)}${backupId}/`;
    let parent: cat.BackupRow | undefined;
    if (type === "incremental" && engine === "postgres") parent = (await cat.latestGoodBackup(c, service, { tenantId, type: "full" })) ?? undefined;
    await cat.createBackup(c, {
      backupId, tenantId, service, engine, type, bucket: storage.bucket, prefix, region: s.get("s3Region"),
      parentBackupId: parent?.backupId, encryptionKeyId: rcpt?.keyId,
      retentionUntil: new Date(Date.now() + s.retentionDays(type) * 86400_000),
    });
    await cat.markRunning(c, backupId);
    inflight.set(backupId, c);
    hb = setInterval(() => void cat.heartbeat(c, backupId).catch(() => undefined), 15_000);
    log(`backup ${backupId}: ${type} of ${service} (${engine}) started`);
    if (emptyError) throw emptyError;
    if (repoError) throw repoError;

    const ctx: BackupContext = { settings: s, storage, service, backupId, recipientFile: rcpt?.file ?? "", lock: (k) => lockFor(s, k), prefix };
    let res: EngineResult;
    let kid = rcpt?.keyId ?? "";
    if (engine === "postgres") {
      if (type === "full") res = await pgEngine.backupFull(ctx, { logical: opts.logical ?? (await logicalDue(s, c, backupId)) });
      else {
        let streamer = opts.streamer;
        let own: WalStreamer | undefined;
        let walLock: Awaited<ReturnType<typeof acquireServiceLock>> | undefined;
        if (!parent) throw noBaseYet(service);
        if (!streamer) {
          walLock = await acquireServiceLock(c, s.stateDir, `wal:${service}`, 0).catch((e: Error) => {
            throw new ConfigError(`${e.message} (WAL streaming runs in the serve sidecar; there the scheduled incremental uses it)`);
          });
          own = streamer = await startWalStreamer(s, storage, rcpt!);
        }
        try {
          res = await backupIncremental(ctx, streamer, parent ? { backupId: parent.backupId, at: parent.recoveryPointEnd! } : undefined);
          res.artifacts = await walSinceLastIncremental(c, tenantId, service, parent!, String(res.details.uptoSegment));
          res.details.segments = res.artifacts.length;
        } finally {
          await own?.stop();
          await walLock?.release();
        }
      }
    } else if (engine === "redis") {
      res = await redisEngine.backup(ctx, type);
    } else {
      res = await volumeEngine.backup(ctx, type, repo!);
      kid = `restic-${repo!.repositoryId.slice(0, 16)}`;
    }

    const rawBytes = res.measured?.rawBytes ?? res.artifacts.reduce((a, x) => a + x.rawBytes, 0);
    let storedBytes = res.measured?.storedBytes ?? res.artifacts.reduce((a, x) => a + x.storedBytes, 0);
    const details = res.details as { startLsn?: string; endLsn?: string; timeline?: number; baseBackupId?: string };
    const manifestKey = manifestKeyOf(engine, service, backupId, prefix);
    // What the catalog row holds, in the manifest too: a region's bucket alone can rebuild it.
    const row: ManifestCatalogRow = {
      tenantId,
      parentBackupId: parent?.backupId ?? null,
      bucket: storage.bucket,
      prefix,
      region: s.get("s3Region") ?? null,
      rawSize: rawBytes,
      storedSize: storedBytes,
      timeline: details.timeline ?? null,
      startLsn: details.startLsn ?? null,
      endLsn: details.endLsn ?? null,
      checksum: res.artifacts[0]?.sha256 && /^[0-9a-f]{64}$/.test(res.artifacts[0].sha256) ? res.artifacts[0].sha256 : null,
      retentionUntil: new Date(Date.now() + s.retentionDays(type) * 86400_000).toISOString(),
      metadata: { ...res.details, manifestKey, agentVersion: AGENT_VERSION, ...(engine === "postgres" && type === "incremental" ? { baseBackupId: parent?.backupId } : {}) },
      artifacts: res.artifacts.map((a) => ({
        role: artifactRole(engine, a),
        objectKey: a.key,
        versionId: a.versionId ?? null,
        sha256: a.sha256,
        sizeBytes: a.storedBytes,
        rawSize: a.rawBytes,
        metadata: { name: a.name, rawSha256: a.rawSha256 },
      })),
    };
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      backupId,
      service,
      engine,
      type,
      createdAt: new Date().toISOString(),
      recoveryPoint: { start: res.recoveryPointStart.toISOString(), end: res.recoveryPointEnd.toISOString() },
      keyId: kid,
      tool: res.tool,
      toolVersion: res.toolVersion,
      agentVersion: AGENT_VERSION,
      artifacts: res.artifacts.map((a) => ({ name: a.name, key: a.key, versionId: a.versionId, sha256: a.sha256, storedBytes: a.storedBytes, rawBytes: a.rawBytes, rawSha256: a.rawSha256 })),
      details: res.details,
      catalog: row,
    };
    // Written last: a set of artifacts without its manifest is never accepted by restore.
    const body = sealManifest(manifest);
    const mref = await storage.putSmall(manifestKey, body, lockFor(s, type === "full" ? "full" : "incremental"));
    manifestStored = `s3://${storage.bucket}/${manifestKey}`;
    storedBytes += engine === "volume" ? 0 : Buffer.byteLength(body);
    const manifestSha = createHash("sha256").update(body).digest("hex");
    await cat.completeBackup(c, backupId, {
      rawSize: rawBytes,
      storedSize: storedBytes,
      recoveryPointStart: res.recoveryPointStart,
      recoveryPointEnd: res.recoveryPointEnd,
      timeline: details.timeline,
      startLsn: details.startLsn,
      endLsn: details.endLsn,
      checksum: row.checksum ?? manifestSha,
      tool: res.tool,
      toolVersion: res.toolVersion,
      encryptionKeyId: kid,
      metadata: row.metadata,
      artifacts: [...row.artifacts, manifestArtifact(manifestKey, mref.versionId, body)],
    }).catch((e: Error) => {
      throw new Error(
        `backup ${backupId} of ${service} is stored, its manifest too (${manifestStored}), but the catalog could not record it (${e.message}). ` +
          `No restore finds it until then: the next run of ${service} completes it from its manifest once the catalog answers (or run 'kdr-agent catalog rebuild').`,
      );
    });
    const dur = (Date.now() - t0) / 1000;
    const ratio = rawBytes > 0 ? storedBytes / rawBytes : null;
    const labels = { service, type };
    m.duration.set(labels, dur);
    m.rawBytes.set(labels, rawBytes);
    m.storedBytes.set(labels, storedBytes);
    if (ratio !== null) m.ratio.set(labels, ratio);
    m.lastSuccess.set(labels, Date.now() / 1000);
    await tellTransition(s, c, backupId, type);
    return {
      backupId,
      service,
      engine,
      type,
      status: "completed",
      rawBytes,
      storedBytes,
      ratio,
      durationSeconds: dur,
      location: `s3://${storage.bucket}/${prefix}`,
      recoveryPoint: manifest.recoveryPoint,
      keyId: kid,
      tool: res.tool,
      toolVersion: res.toolVersion,
      artifacts: res.artifacts.map((a) => ({ name: a.name, sha256: a.sha256, storedBytes: a.storedBytes, rawBytes: a.rawBytes, key: a.key, versionId: a.versionId })),
      reconciled,
      completedFromManifests,
      staleUploadsAborted,
      details: res.details,
    };
  } catch (caught) {
    // A full disk (the staging of an online copy, a cache) is named, with what to do about it.
    const full = diskFull(caught, s.stateDir);
    const e = full ? new Error(`${full}: ${(caught as Error).message}`, { cause: caught }) : caught;
    m.failures.inc({ service, type });
    // A run whose manifest is stored is left in flight: the next run completes it from there.
    if (id && !manifestStored) await cat.failBackup(c, id, (e as Error).message).catch(() => undefined);
    if (id) await tellTransition(s, c, id, type, (e as Error).message);
    throw e;
  } finally {
    if (id) inflight.delete(id);
    if (hb) clearInterval(hb);
    await held.release();
  }
}

/** The scheduled choice (no --logical or --no-logical): are this full's logical dumps due? Logged either way. */
async function logicalDue(s: Settings, c: pg.Client, backupId: string): Promise<boolean> {
  if (s.get("pgLogicalDumps") === "none") return false;
  const d = pgEngine.logicalDumpDue(await cat.latestLogicalDump(c, s.service, { tenantId: s.tenantId }), s.int("pgLogicalEveryDays"), new Date());
  log(`backup ${backupId}: logical dumps ${d.due ? "taken" : "not due"}: ${d.why}`);
  return d.due;
}

/** How old an unfinished upload under wal/ must be to count as a dead run's. */
/**
 * A person hears of a change, not of every run: the first failure after a success (or of a
 * service's first run), and the first success after failures. The previous run of the same
 * service and type, in the catalog, decides; other agents' runs count too. Never throws.
 */
async function tellTransition(s: Settings, c: pg.Client, backupId: string, type: string, error?: string): Promise<void> {
  if (!s.get("notifyUrl")) return;
  try {
    const runs = await cat.listBackups(c, { service: s.service, tenantId: s.tenantId, type: type as cat.BackupType, status: ["completed", "failed"], limit: 5 });
    const prev = runs.find((r) => r.backupId !== backupId);
    if (error !== undefined && prev?.backupStatus !== "failed") {
      await sendEvent(s, { event: "backup-failed", service: s.service, type, detail: `backup ${backupId} failed: ${error}` });
    } else if (error === undefined && prev?.backupStatus === "failed") {
      await sendEvent(s, { event: "backup-recovered", service: s.service, type, detail: `backup ${backupId} completed; the previous ${type} backup (${prev.backupId}) had failed: ${prev.errorMessage ?? "no error recorded"}` });
    }
  } catch (e) {
    log(`notify: could not read ${s.service}'s previous run to decide on a notice (${(e as Error).message})`);
  }
}

/**
 * Completes each in-flight row of this service whose manifest is stored (kdr-manifest/2 carries
 * the row): the run got that far, and only the catalog never heard. Called with the service's
 * backup lock held. A row without a readable manifest is left for reconcileStaleRuns (failed).
 * A run reconciled to failed in the last days is completed too once its manifest and objects
 * turn up here (copied in from a region that came back after a restored catalog lost its end).
 */
/** What this process said of a reconciled run it could not complete yet (run and reason), so as not to repeat it every run. */
const saidOfLateRuns = new Set<string>();

async function completeFromManifests(s: Settings, c: pg.Client, storage: Storage): Promise<string[]> {
  const done: string[] = [];
  const inFlight = await cat.listBackups(c, { service: s.service, tenantId: s.tenantId, status: ["pending", "running"], limit: 20 });
  // Runs reconciled to failed whose manifest arrived later: copied in from a region that came back.
  const reconciled = (await cat.listBackups(c, { service: s.service, tenantId: s.tenantId, status: "failed", limit: 50 })).filter(
    (r) => r.errorMessage?.startsWith("reconciled by ") && r.failedAt && Date.now() - r.failedAt.getTime() < 7 * 86400_000,
  );
  for (const r of [...inFlight, ...reconciled]) {
    const late = r.backupStatus === "failed";
    const key = manifestKeyOf(s.engine, s.service, r.backupId, r.storagePrefix);
    try {
      let version: { versionId?: string } | undefined;
      for await (const v of storage.listVersions(key)) if (v.key === key && v.isLatest) version = v;
      if (!version) continue;
      const body = await storage.getText(key, version.versionId);
      const m = openManifest(body, `s3://${storage.bucket}/${key}`);
      if (m.backupId !== r.backupId || m.service !== s.service || !m.catalog) throw new Error(`it is not the manifest of backup ${r.backupId} of ${s.service} in kdr-manifest/2 form`);
      // A run's own manifest names the versions it wrote here. One that arrived after the run was
      // reconciled is a copy: this bucket's versions count, and each object must be here already.
      const here = new Map(m.catalog.artifacts.map((a) => [a.objectKey, a.versionId]));
      if (late) {
        for (const a of m.catalog.artifacts) {
          let v: string | undefined;
          for await (const o of storage.listVersions(a.objectKey)) if (o.key === a.objectKey && o.isLatest) v = o.versionId;
          if (!v) throw new Error(`its manifest is here, ${a.objectKey} not yet (still being copied?); the next run looks again`);
          here.set(a.objectKey, v);
        }
      }
      const input = rowFromManifest(m as Parameters<typeof rowFromManifest>[0], key, body, { bucket: storage.bucket, region: late ? storage.region : (r.storageRegion ?? storage.region) }, (k) => here.get(k), version.versionId, {
        completedFromManifest: { at: new Date().toISOString(), was: r.backupStatus },
      });
      if (await cat.completeRebuiltBackup(c, input)) {
        done.push(r.backupId);
        const was = late ? `reconciled to failed (${r.errorMessage})` : r.backupStatus;
        log(`backup ${r.backupId} of ${s.service} was ${was} in the catalog, but its manifest ${key} is stored: completed from it (verify judges it like any new backup)`);
      }
    } catch (e) {
      // Not knowing whether the manifest is there is not knowing the run failed: with the store
      // away (a region coming back, a restored catalog) such a run is left as it is, and this run,
      // which could not upload anyway, stops before it reconciles anything.
      const away = outsideTheBackup(e, s.stateDir);
      if (late) {
        // Already failed: nothing to hold back for; the next run looks again, and says so again
        // only when the reason changes (a sidecar runs every few minutes for days).
        const said = `${r.backupId}\n${(e as Error).message}`;
        if (saidOfLateRuns.size > 1000) saidOfLateRuns.clear();
        if (!saidOfLateRuns.has(said)) log(`backup ${r.backupId} of ${s.service}: reconciled to failed, its manifest ${key} could not be read now (${(e as Error).message}); each run looks again (said once)`);
        saidOfLateRuns.add(said);
        continue;
      }
      if (away) {
        throw new Error(`${away} while looking for the manifest of run ${r.backupId} of ${s.service}, left in flight (${key}): no run was reconciled, and this one stops (${(e as Error).message})`, { cause: e });
      }
      log(`backup ${r.backupId} of ${s.service}: its manifest ${key} could not complete it (${(e as Error).message}); it is reconciled to failed`);
    }
  }
  return done;
}

export const STALE_WAL_UPLOAD_MS = 3600_000;

/**
 * Aborts the multipart uploads a killed run left under this service's prefixes (their parts are
 * stored and billed, yet no lifecycle rule of the provider removes them). Called with the
 * service's backup lock held, so no other backup or prune of the service is writing: everything
 * unfinished there is a dead run's, except under wal/, where the WAL streamer uploads beside us;
 * there only uploads begun over an hour ago count (a segment takes seconds). A cleanup failure
 * never fails the backup: it is logged, with the permission to check.
 */
export async function abortStaleUploads(storage: Storage, service: string, now = new Date()): Promise<string[]> {
  const aborted: string[] = [];
  try {
    for (const cls of BACKUP_CLASSES) {
      for await (const u of storage.listUploads(objectPrefix(cls, service))) {
        if (cls === "wal" && (!u.initiated || now.getTime() - u.initiated.getTime() < STALE_WAL_UPLOAD_MS)) continue;
        await storage.abortUpload(u.key, u.uploadId);
        aborted.push(u.key);
        log(`aborted the unfinished upload of ${u.key} (begun ${u.initiated?.toISOString() ?? "at an unknown time"} by a run that did not finish)`);
      }
    }
  } catch (e) {
    log(`warning: could not clean up unfinished uploads of ${service} (${(e as Error).name}: ${(e as Error).message}); the backup goes on. ` +
      `The sidecar's S3 user needs s3:ListBucketMultipartUploads on the bucket and s3:AbortMultipartUpload on its prefixes.`);
  }
  return aborted;
}

/**
 * The WAL an incremental covers: the archived segments after the previous incremental of the
 * same base (or after the base), up to the segment this run flushed. They become the row's
 * artifacts, so its size is what was really uploaded for it and verify re-reads exactly them.
 */
async function walSinceLastIncremental(c: pg.Client, tenantId: string, service: string, base: cat.BackupRow, upto: string): Promise<SealedArtifact[]> {
  const prev = (await cat.listBackups(c, { service, tenantId, status: "completed", type: "incremental", limit: 50 })).find(
    (b) => b.parentBackupId === base.backupId && typeof b.metadata.uptoSegment === "string",
  );
  const after = prev ? String(prev.metadata.uptoSegment) : undefined;
  const from = base.endLsn && base.timeline ? cat.walFileName(base.timeline, cat.lsnToSegmentNumber(base.endLsn)) : "";
  const segs = (await cat.listWalSegments(c, service, { tenantId })).filter(
    (w) => /^[0-9A-F]{24}$/.test(w.segmentName) && w.segmentName >= from && (!after || w.segmentName > after) && w.segmentName <= upto,
  );
  return segs.map((w) => ({
    bucket: "",
    key: w.objectKey,
    versionId: w.versionId ?? undefined,
    name: w.segmentName,
    rawBytes: w.rawSize ?? 0,
    rawSha256: "",
    storedBytes: w.sizeBytes,
    sha256: w.sha256,
  }));
}

function artifactRole(engine: string, a: SealedArtifact): string {
  if (engine === "volume") return "restic";
  if (a.name === "base.tar") return "base";
  if (a.name.startsWith("logical/")) return "dump";
  if (a.name === "dump.rdb") return "rdb";
  return "wal";
}

export function printSummary(b: BackupSummary | SkippedBackup): string {
  if (b.status === "skipped") return `backup of ${b.service} (${b.engine}, ${b.type}) skipped: ${b.reason}`;
  const lines = [
    `backup ${b.backupId} completed: ${b.type} of ${b.service} (${b.engine})`,
    `  read ${fmtBytes(b.rawBytes)}, stored ${fmtBytes(b.storedBytes)}${b.ratio !== null ? `, measured ratio stored/raw ${b.ratio.toFixed(3)}` : ""}, in ${fmtSeconds(b.durationSeconds)}`,
    `  location ${b.location}`,
    `  recovery point ${b.recoveryPoint.start} .. ${b.recoveryPoint.end}`,
    `  tool ${b.toolVersion}; key id ${b.keyId}`,
    ...b.artifacts.map((a) => `  ${a.name}: ${fmtBytes(a.storedBytes)} stored, sha256 ${a.sha256}`),
    ...(b.completedFromManifests.length ? [`  completed ${b.completedFromManifests.length} earlier run(s) the catalog had not heard the end of, from their manifests: ${b.completedFromManifests.join(", ")}`] : []),
    ...(b.reconciled.length ? [`  reconciled ${b.reconciled.length} stale run(s) to failed: ${b.reconciled.join(", ")}`] : []),
    ...(b.staleUploadsAborted.length ? [`  aborted ${b.staleUploadsAborted.length} unfinished upload(s) of killed runs`] : []),
  ];
  return lines.join("\n");
}
