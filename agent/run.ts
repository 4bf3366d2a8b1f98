/**
 * The runner: what every command does around the engines. Catalog rows, locks, manifest,
 * integrity checks before restore, retention, health.
 */
import { spawnSync } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { existsSync, readdirSync, mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import { BACKUP_CLASSES, objectPrefix, type BackupClass } from "../contract/index.js";
import * as cat from "./catalog.js";
import { ConfigError, type Settings } from "./config.js";
import * as pgEngine from "./engines/postgres.js";
import * as redisEngine from "./engines/redis.js";
import * as volumeEngine from "./engines/volume.js";
import { writableRepo, type ActiveRepo } from "./engines/restic-repo.js";
import type { BackupContext, EngineResult } from "./engines/types.js";
import { acquireServiceLock } from "./lock.js";
import { m } from "./metrics.js";
import { checkRecipient, checkStoredSha, keyId, recipientOfIdentity, IntegrityError, type SealedArtifact } from "./storage/pipeline.js";
import { fmtBytes, fmtSeconds, log } from "./storage/progress.js";
import { Storage, type Lock } from "./storage/s3.js";

export const AGENT_VERSION = "0.1.0";
export const MANIFEST_FORMAT = "kdr-manifest/1";

export interface Manifest {
  format: string;
  backupId: string;
  service: string;
  engine: string;
  type: string;
  createdAt: string;
  recoveryPoint: { start: string; end: string };
  keyId: string;
  tool: string;
  toolVersion: string;
  agentVersion: string;
  artifacts: { name: string; key: string; versionId?: string; sha256: string; storedBytes: number; rawBytes: number; rawSha256: string }[];
  details: Record<string, unknown>;
}

function lockFor(s: Settings, cls: "full" | "incremental" | "wal" | "logical"): Lock | undefined {
  const mode = s.lockMode;
  if (!mode) return undefined;
  const days = s.retentionDays(cls === "logical" ? "full" : cls);
  return { mode, retainUntil: new Date(Date.now() + days * 86400_000) };
}

/** The recipient file (public key) and its key id; sidecars only ever hold this half. */
export function recipient(s: Settings): { file: string; keyId: string } {
  const file = s.secretPath("encryptionRecipient");
  const r = s.secret("encryptionRecipient");
  checkRecipient(r, file);
  return { file, keyId: keyId(r) };
}

/** The identity file, after checking it is the key the backup was encrypted for. */
export function identityFor(s: Settings, expectedKeyId: string | null): string {
  const file = s.secretPath("encryptionIdentity");
  s.secret("encryptionIdentity");
  const have = keyId(recipientOfIdentity(file));
  if (expectedKeyId && have !== expectedKeyId) {
    throw new ConfigError(
      `wrong decryption key: the backup was encrypted for key id ${expectedKeyId}, but the age identity in ${file} has key id ${have}. Mount the kdr-age-identity secret whose public key (age-keygen -y) matches the kdr-age-recipient used for this backup.`,
    );
  }
  return file;
}

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
  opts: { waitSeconds?: number; streamer?: pgEngine.WalStreamer; logical?: boolean } = {},
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
  try {
    // We hold the service lock, so every in-flight row of this service is a dead run's leftover.
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
      if (type === "full") res = await pgEngine.backupFull(ctx, { logical: opts.logical });
      else {
        let streamer = opts.streamer;
        let own: pgEngine.WalStreamer | undefined;
        let walLock: Awaited<ReturnType<typeof acquireServiceLock>> | undefined;
        if (!streamer) {
          walLock = await acquireServiceLock(c, s.stateDir, `wal:${service}`, 0).catch((e: Error) => {
            throw new ConfigError(`${e.message} (WAL streaming runs in the serve sidecar; there the scheduled incremental uses it)`);
          });
          own = streamer = await startWalStreamer(s, storage, rcpt!);
        }
        try {
          res = await pgEngine.backupIncremental(ctx, streamer, parent ? { backupId: parent.backupId, at: parent.recoveryPointEnd! } : undefined);
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
    };
    // Written last: a set of artifacts without its manifest is never accepted by restore.
    const manifestKey = engine === "volume" ? `${objectPrefix("restic", service)}kdr-manifests/${backupId}.json` : `${prefix}manifest.json`;
    const body = JSON.stringify(manifest, null, 2);
    const mref = await storage.putSmall(manifestKey, body, lockFor(s, type === "full" ? "full" : "incremental"));
    storedBytes += engine === "volume" ? 0 : Buffer.byteLength(body);
    const manifestSha = createHash("sha256").update(body).digest("hex");
    const artifacts = [
      ...res.artifacts.map((a) => ({
        role: artifactRole(engine, a),
        objectKey: a.key,
        versionId: a.versionId,
        sha256: a.sha256,
        sizeBytes: a.storedBytes,
        rawSize: a.rawBytes,
        metadata: { name: a.name, rawSha256: a.rawSha256 },
      })),
      { role: "manifest", objectKey: manifestKey, versionId: mref.versionId, sha256: manifestSha, sizeBytes: Buffer.byteLength(body), rawSize: Buffer.byteLength(body), metadata: { name: "manifest.json" } },
    ];
    const details = res.details as { startLsn?: string; endLsn?: string; timeline?: number; baseBackupId?: string };
    await cat.completeBackup(c, backupId, {
      rawSize: rawBytes,
      storedSize: storedBytes,
      recoveryPointStart: res.recoveryPointStart,
      recoveryPointEnd: res.recoveryPointEnd,
      timeline: details.timeline,
      startLsn: details.startLsn,
      endLsn: details.endLsn,
      checksum: res.artifacts[0]?.sha256 && /^[0-9a-f]{64}$/.test(res.artifacts[0].sha256) ? res.artifacts[0].sha256 : manifestSha,
      tool: res.tool,
      toolVersion: res.toolVersion,
      encryptionKeyId: kid,
      metadata: { ...res.details, manifestKey, agentVersion: AGENT_VERSION, ...(engine === "postgres" && type === "incremental" ? { baseBackupId: parent?.backupId } : {}) },
      artifacts,
    });
    const dur = (Date.now() - t0) / 1000;
    const ratio = rawBytes > 0 ? storedBytes / rawBytes : null;
    const labels = { service, type };
    m.duration.set(labels, dur);
    m.rawBytes.set(labels, rawBytes);
    m.storedBytes.set(labels, storedBytes);
    if (ratio !== null) m.ratio.set(labels, ratio);
    m.lastSuccess.set(labels, Date.now() / 1000);
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
      staleUploadsAborted,
      details: res.details,
    };
  } catch (e) {
    m.failures.inc({ service, type });
    if (id) await cat.failBackup(c, id, (e as Error).message).catch(() => undefined);
    throw e;
  } finally {
    if (id) inflight.delete(id);
    if (hb) clearInterval(hb);
    await held.release();
  }
}

/** How old an unfinished upload under wal/ must be to count as a dead run's. */
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

export async function startWalStreamer(s: Settings, storage: Storage, rcpt: { file: string; keyId: string }): Promise<pgEngine.WalStreamer> {
  const wc = await cat.connectCatalog(s);
  const tenantId = s.tenantId;
  const service = s.service;
  const streamer = new pgEngine.WalStreamer(
    s,
    storage,
    rcpt.file,
    {
      record: async (seg) => {
        await cat.recordWalSegment(wc, {
          tenantId,
          service,
          timeline: seg.timeline,
          segmentName: seg.segment,
          objectKey: seg.key,
          versionId: seg.versionId,
          sha256: seg.sha256,
          sizeBytes: seg.storedBytes,
          rawSize: seg.rawBytes,
          coversUntil: seg.completedAt,
          encryptionKeyId: rcpt.keyId,
        });
        m.walSegments.inc({ service });
      },
    },
    () => lockFor(s, "wal"),
  );
  const stop = streamer.stop.bind(streamer);
  streamer.stop = async () => {
    await stop();
    await wc.end().catch(() => undefined);
  };
  await streamer.start();
  return streamer;
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
    ...(b.reconciled.length ? [`  reconciled ${b.reconciled.length} stale run(s) to failed: ${b.reconciled.join(", ")}`] : []),
    ...(b.staleUploadsAborted.length ? [`  aborted ${b.staleUploadsAborted.length} unfinished upload(s) of killed runs`] : []),
  ];
  return lines.join("\n");
}

async function loadManifest(storage: Storage, row: cat.BackupRow, arts: cat.ArtifactRow[]): Promise<Manifest> {
  const ma = arts.find((a) => a.role === "manifest");
  if (!ma) throw new IntegrityError(`backup ${row.backupId} has no manifest in the catalog: it is not a complete backup and will not be used.`);
  await checkStoredSha(storage, { key: ma.objectKey, versionId: ma.versionId, sha256: ma.sha256 }, "manifest.json").catch((e: Error) => {
    if (outsideTheBackup(e)) throw e; // unreachable storage says nothing about the backup
    throw new IntegrityError(`backup ${row.backupId}: manifest ${ma.objectKey} cannot be read or does not match the catalog (${e.message}); the backup will not be used.`);
  });
  const mf = JSON.parse(await storage.getText(ma.objectKey, ma.versionId ?? undefined)) as Manifest;
  for (const a of arts.filter((x) => x.role !== "manifest")) {
    const inMf = mf.artifacts.find((x) => x.key === a.objectKey);
    if (!inMf || inMf.sha256 !== a.sha256) throw new IntegrityError(`backup ${row.backupId}: artifact ${a.objectKey} is not in the manifest with the same SHA-256; the backup will not be used.`);
  }
  return mf;
}

const toRef = (a: cat.ArtifactRow): pgEngine.StoredRef => ({
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
}

export async function runRestore(s: Settings, c: pg.Client, o: RestoreOptions): Promise<RestoreSummary> {
  const service = s.service;
  const engine = s.engine;
  const tenantId = s.tenantId;
  if (!o.target) throw new ConfigError("restore needs an explicit target: pass --target <empty directory> (it never restores over the source by default).");
  const target = path.resolve(o.target);
  const source = s.get("volumePath");
  const overSource = (source !== undefined && path.resolve(source) === target) || existsSync(path.join(target, "postmaster.pid"));
  if (overSource && !(o.forceOverwriteSource && o.yes)) {
    throw new ConfigError(`${target} is the source (or a running PostgreSQL data directory): restoring over it needs both --force-overwrite-source and --yes.`);
  }
  if (o.cleanTarget && existsSync(target)) {
    if (overSource) throw new ConfigError(`--clean-target refuses ${target}: it is the source. Use --force-overwrite-source --yes if you really mean to replace it.`);
    for (const f of readdirSync(target)) rmSync(path.join(target, f), { recursive: true, force: true });
    if (o.walDir) rmSync(o.walDir, { recursive: true, force: true });
  }
  const nonEmpty = existsSync(target) && readdirSync(target).length > 0;
  if (nonEmpty && !(o.forceOverwriteSource && o.yes)) {
    throw new ConfigError(`restore target ${target} is not empty: give an empty or new directory (or --force-overwrite-source --yes to replace what is there).`);
  }
  const storage = Storage.fromSettings(s);
  const t0 = Date.now();

  let row: cat.BackupRow;
  let arts: cat.ArtifactRow[];
  let wal: cat.WalSegmentRow[] = [];
  let reaches: Date;
  if (o.backupId) {
    const r = await cat.getBackup(c, o.backupId);
    if (!r || r.serviceName !== service) throw new ConfigError(`backup ${o.backupId} of '${service}' is not in the catalog: run 'kdr-agent list' to see ids.`);
    if (r.backupStatus !== "completed") throw new ConfigError(`backup ${o.backupId} is ${r.backupStatus}, not completed: only completed backups are restored.`);
    row = r;
    arts = await cat.listArtifacts(c, r.backupId);
    reaches = r.recoveryPointEnd!;
  } else {
    // PostgreSQL restores start from a base; its "incremental" rows are WAL bookkeeping.
    const plan = await cat.recoveryPlan(c, service, o.time ?? "latest", { tenantId, baseTypes: engine === "postgres" ? ["full"] : ["full", "incremental"] });
    row = plan.base;
    arts = plan.artifacts.filter((a) => a.backupId === row.backupId);
    wal = engine === "postgres" ? [...plan.history, ...(await contiguousWal(c, tenantId, service, plan.wal))] : [];
    reaches = plan.recoveryPoint;
  }
  log(`restore ${service}: using backup ${row.backupId} (${row.backupType}, recovery point ${row.recoveryPointEnd?.toISOString()})${wal.length ? ` + ${wal.length} WAL file(s)` : ""}, reaching ${reaches.toISOString()}`);
  await loadManifest(storage, row, arts);

  let checked = 1;
  let next = "";
  if (engine === "volume") {
    const snap = arts.find((a) => a.role === "restic");
    if (!snap) throw new IntegrityError(`backup ${row.backupId} has no restic snapshot artifact.`);
    await volumeEngine.restore(s, storage, snap.objectKey, snap.sha256, target, !!(o.forceOverwriteSource && o.yes));
    checked++;
    next = `files are in ${target}`;
  } else {
    const identity = identityFor(s, row.encryptionKeyId);
    // Every artifact's SHA-256 is checked before anything is written to the target.
    const refs = arts.filter((a) => a.role === "base" || a.role === "rdb").map(toRef);
    const walRefs = wal.map(walRef);
    for (const r of [...refs, ...walRefs]) {
      await checkStoredSha(storage, r, r.name);
      checked++;
    }
    log(`restore ${service}: SHA-256 of ${checked} object(s) (manifest included) verified before applying`);
    if (engine === "postgres") {
      const base = refs.find((r) => r.name === "base.tar");
      if (!base) throw new IntegrityError(`backup ${row.backupId} has no base.tar artifact.`);
      await pgEngine.restore({ storage, identityFile: identity, base, wal: walRefs, target, walDir: o.walDir, targetTime: o.time });
      next = `start PostgreSQL 15 on ${target} (owned by the postgres user, mode 0700); it replays the WAL and promotes`;
    } else {
      const rdb = refs.find((r) => r.name === "dump.rdb");
      if (!rdb) throw new IntegrityError(`backup ${row.backupId} has no dump.rdb artifact.`);
      await redisEngine.restore({ storage, identityFile: identity, rdb, target, overwrite: !!(o.forceOverwriteSource && o.yes) });
      next = `start redis-server with 'dir ${target}' and 'dbfilename dump.rdb'`;
    }
  }
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
  };
}

export interface VerifySummary {
  backupId: string;
  service: string;
  /** Recovery point of the verified backup. */
  recoveryPoint: string | null;
  passed: boolean;
  checks: string[];
  error?: string;
}

export async function runVerify(s: Settings, c: pg.Client, backupId?: string): Promise<VerifySummary> {
  const service = s.service;
  const engine = s.engine;
  const tenantId = s.tenantId;
  const row = backupId ? await cat.getBackup(c, backupId) : await cat.latestGoodBackup(c, service, { tenantId, type: ["full", "incremental"] });
  if (!row) throw new ConfigError(backupId ? `backup ${backupId} is not in the catalog.` : `no completed backup of '${service}' to verify: run a backup first.`);
  if (row.backupStatus !== "completed") throw new ConfigError(`backup ${row.backupId} is ${row.backupStatus}; only completed backups can be verified.`);
  const storage = Storage.fromSettings(s);
  const scratch = path.join(s.stateDir, "scratch");
  mkdirSync(scratch, { recursive: true });
  const checks: string[] = [];
  // A missing or wrong key says nothing about the backup: it is a configuration error, not a verify result.
  const identity = engine === "volume" ? "" : identityFor(s, row.encryptionKeyId);
  try {
    const arts = await cat.listArtifacts(c, row.backupId);
    await loadManifest(storage, row, arts);
    checks.push("manifest: present, SHA-256 matches, lists every artifact");
    if (engine === "volume") {
      const snap = arts.find((a) => a.role === "restic")!;
      checks.push(...(await volumeEngine.verify(s, storage, snap.objectKey, snap.sha256)));
    } else {
      const refs = arts.filter((a) => a.role !== "manifest").map(toRef);
      if (engine === "postgres") {
        checks.push(...(await pgEngine.verifyArtifacts({ storage, identityFile: identity, artifacts: refs, scratch })));
      } else {
        const rdb = refs.find((r) => r.name === "dump.rdb");
        if (!rdb) throw new IntegrityError(`backup ${row.backupId} has no dump.rdb artifact.`);
        checks.push(...(await redisEngine.verify({ storage, identityFile: identity, rdb, scratch })));
      }
    }
    await cat.recordVerification(c, row.backupId, { status: "passed", details: { checks } });
    if (row.recoveryPointEnd) m.lastVerified.set({ service }, row.recoveryPointEnd.getTime() / 1000);
    return { backupId: row.backupId, service, recoveryPoint: row.recoveryPointEnd?.toISOString() ?? null, passed: true, checks };
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const outside = outsideTheBackup(e);
    if (outside) {
      // Nothing was learned about the backup: recording it failed would make recovery skip a
      // good backup (a verify in an image without pg_waldump once did exactly that).
      throw new Error(`verify of ${row.backupId} could not run, so the backup was not judged (its verify status is unchanged): ${outside}: ${(e as Error).message}`);
    }
    await cat.recordVerification(c, row.backupId, { status: "failed", details: { checks, error: (e as Error).message } });
    return { backupId: row.backupId, service, recoveryPoint: row.recoveryPointEnd?.toISOString() ?? null, passed: false, checks, error: (e as Error).message };
  }
}

/**
 * Why a verify error says nothing about the backup, or undefined when it does: a tool missing
 * from the image, or storage that could not be reached. A checksum, decryption, decompression
 * or tool-check failure is about the backup, and is recorded as a failed verify.
 */
export function outsideTheBackup(e: unknown): string | undefined {
  if (e instanceof IntegrityError) return undefined;
  const err = e as { message?: string; name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const msg = err.message ?? "";
  if (/is not installed \(not found on PATH\)|is needed by \S+ but was not found/.test(msg)) return "a tool is missing in this container";
  const status = err.$metadata?.httpStatusCode;
  if ((status !== undefined && status >= 500) || ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH"].includes(err.code ?? "") ||
    ["TimeoutError", "NetworkingError"].includes(err.name ?? "") || /ECONNREFUSED|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|socket hang up/.test(msg)) {
    return "the object store could not be reached";
  }
  return undefined;
}

export interface HealthSummary {
  service: string;
  healthy: boolean;
  rpoTargetSeconds: number;
  /** Seconds since the newest verified recovery point (verified base + contiguous WAL), or null. */
  ageSeconds: number | null;
  message: string;
}

export async function runHealth(s: Settings, c: pg.Client): Promise<HealthSummary> {
  const service = s.service;
  const rpo = s.rpoSeconds;
  const age = await cat.rpoSeconds(c, service, { tenantId: s.tenantId });
  m.rpoTarget.set({ service }, rpo);
  if (age !== null) m.rpo.set({ service }, age);
  const healthy = age !== null && age <= rpo;
  return {
    service,
    healthy,
    rpoTargetSeconds: rpo,
    ageSeconds: age === null ? null : Math.round(age),
    message:
      age === null
        ? `STALE: '${service}' has no verified backup; run 'kdr-agent backup --type full' then 'kdr-agent verify'.`
        : healthy
          ? `ok: the newest verified recovery point of '${service}' is ${fmtSeconds(age)} old (RPO ${fmtSeconds(rpo)})`
          : `STALE: the newest verified recovery point of '${service}' is ${fmtSeconds(age)} old, over the RPO of ${fmtSeconds(rpo)}: check the schedule and the last runs ('kdr-agent list'), then verify.`,
  };
}

export interface PruneSummary {
  service: string;
  expired: string[];
  kept: string[];
  objectsDeleted: number;
  objectsLeftToLifecycle: number;
  walSegmentsExpired: number;
}

/**
 * Retention: a row whose retention_until has passed is expired and its objects deleted (an
 * object lock that still holds them is fine: the bucket lifecycle, with the same day counts,
 * removes them later). The newest good full backup, the rows that depend on it, and the WAL a
 * restore from the oldest kept base needs are never touched.
 */
export async function runPrune(s: Settings, c: pg.Client, now = new Date()): Promise<PruneSummary> {
  const service = s.service;
  const tenantId = s.tenantId;
  const storage = Storage.fromSettings(s);
  const held = await acquireServiceLock(c, s.stateDir, `backup:${service}`, 600);
  try {
    const keepFull = await cat.latestGoodBackup(c, service, { tenantId, type: "full" });
    const rows = (await cat.listBackups(c, { service, tenantId, status: ["completed", "failed"], limit: 100000 })).filter(
      (r) => r.retentionUntil && r.retentionUntil < now,
    );
    const sum: PruneSummary = { service, expired: [], kept: [], objectsDeleted: 0, objectsLeftToLifecycle: 0, walSegmentsExpired: 0 };
    const snapshots: { key: string; id: string }[] = [];
    for (const r of rows.reverse()) {
      if (keepFull && (r.backupId === keepFull.backupId || r.parentBackupId === keepFull.backupId)) {
        sum.kept.push(r.backupId);
        continue;
      }
      for (const a of await cat.listArtifacts(c, r.backupId)) {
        if (a.role === "restic") {
          snapshots.push({ key: a.objectKey, id: a.sha256 });
          continue;
        }
        try {
          // A delete marker, never a version delete: the lifecycle's noncurrent rule (same day
          // counts as the object lock) removes the data, so prune needs no bypass rights.
          await storage.deleteVersion(a.objectKey);
          sum.objectsDeleted++;
        } catch {
          sum.objectsLeftToLifecycle++;
        }
      }
      await cat.expireBackup(c, r.backupId);
      sum.expired.push(r.backupId);
    }
    if (s.engine === "volume" && snapshots.length) await volumeEngine.forget(s, storage, snapshots);
    if (s.engine === "postgres" && keepFull) {
      // WAL before the oldest base still kept (and older than the WAL retention) serves no restore.
      const bases = (await cat.listBackups(c, { service, tenantId, status: "completed", type: "full", limit: 100000 })).filter((b) => b.endLsn && b.timeline);
      const oldest = bases.sort((a, b) => Number(cat.lsnToSegmentNumber(a.startLsn ?? a.endLsn!) - cat.lsnToSegmentNumber(b.startLsn ?? b.endLsn!)))[0];
      if (oldest) {
        const first = cat.lsnToSegmentNumber(oldest.startLsn ?? oldest.endLsn!);
        const cutoff = new Date(now.getTime() - s.retentionDays("wal") * 86400_000);
        const old = (await cat.listWalSegments(c, service, { tenantId })).filter(
          (w) => !w.segmentName.endsWith(".history") && (w.timeline < oldest.timeline! || cat.walSegmentNumber(w.segmentName) < first) && w.coversUntil < cutoff,
        );
        const gone: string[] = [];
        for (const w of old) {
          try {
            await storage.deleteVersion(w.objectKey);
            gone.push(w.segmentId);
          } catch {
            sum.objectsLeftToLifecycle++;
            gone.push(w.segmentId); // lifecycle removes it; a plan must not count on it either way
          }
        }
        sum.walSegmentsExpired = gone.length ? await cat.expireWalSegments(c, tenantId, service, gone) : 0;
      }
    }
    return sum;
  } finally {
    await held.release();
  }
}
