/**
 * The runner: what every command does around the engines. Catalog rows, locks, manifest,
 * integrity checks before restore, retention, health.
 */
import { randomUUID } from "node:crypto";
import { existsSync, readdirSync, mkdirSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import { objectPrefix, type BackupClass } from "../contract.js";
import * as cat from "./catalog.js";
import { ConfigError, type Settings } from "./config.js";
import * as pgEngine from "./engines/postgres.js";
import * as redisEngine from "./engines/redis.js";
import * as volumeEngine from "./engines/volume.js";
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
  details: Record<string, unknown>;
}

export async function runBackup(
  s: Settings,
  c: pg.Client,
  type: "full" | "incremental",
  opts: { waitSeconds?: number; streamer?: pgEngine.WalStreamer; logical?: boolean } = {},
): Promise<BackupSummary> {
  const service = s.service;
  const engine = s.engine;
  const tenantId = s.tenantId;
  const storage = Storage.fromSettings(s);
  const rcpt = engine === "volume" ? undefined : recipient(s);
  const held = await acquireServiceLock(c, s.stateDir, `backup:${service}`, opts.waitSeconds ?? 0);
  const t0 = Date.now();
  let id: string | undefined;
  let hb: NodeJS.Timeout | undefined;
  try {
    const reconciled = await cat.reconcileStaleRuns(c, tenantId, service);
    for (const r of reconciled) log(`reconciled stale run ${r} (its agent stopped) to failed`);
    const backupId = randomUUID();
    id = backupId;
    const cls: BackupClass = engine === "volume" ? "restic" : type;
    const prefix = engine === "volume" ? objectPrefix("restic", service) : `${objectPrefix(cls, service)}${backupId}/`;
    let parent: cat.BackupRow | undefined;
    if (type === "incremental") parent = await cat.latestGoodBackup(c, tenantId, service, ["full"]);
    await cat.createBackup(c, { backupId, tenantId, service, engine, type, bucket: storage.bucket, prefix, region: s.get("s3Region"), runToken: randomUUID(), parentBackupId: parent?.backup_id });
    await cat.markRunning(c, backupId);
    hb = setInterval(() => void cat.heartbeat(c, backupId).catch(() => undefined), 15_000);
    log(`backup ${backupId}: ${type} of ${service} (${engine}) started`);

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
          res = await pgEngine.backupIncremental(ctx, streamer, parent ? { backupId: parent.backup_id, at: parent.recovery_point_end! } : undefined);
        } finally {
          await own?.stop();
          await walLock?.release();
        }
      }
    } else if (engine === "redis") {
      if (type === "incremental") throw new ConfigError(`redis has no incremental backup (an RDB snapshot is always whole): schedule --type full for ${service}.`);
      res = await redisEngine.backup(ctx);
    } else {
      const r = await volumeEngine.backup(ctx, type);
      kid = `restic-${r.repoId.slice(0, 16)}`;
      res = r;
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
    const { createHash } = await import("node:crypto");
    const manifestSha = createHash("sha256").update(body).digest("hex");
    const artifacts = [
      ...res.artifacts.map((a) => ({
        role: artifactRole(engine, a),
        key: a.key,
        versionId: a.versionId,
        sha256: a.sha256,
        sizeBytes: a.storedBytes,
        rawSize: a.rawBytes,
        metadata: { name: a.name, rawSha256: a.rawSha256 },
      })),
      { role: "manifest", key: manifestKey, versionId: mref.versionId, sha256: manifestSha, sizeBytes: Buffer.byteLength(body), rawSize: Buffer.byteLength(body), metadata: { name: "manifest.json" } },
    ];
    const details = res.details as { startLsn?: string; endLsn?: string; timeline?: number; baseBackupId?: string };
    await cat.completeBackup(c, backupId, {
      rawSize: rawBytes,
      backupSize: storedBytes,
      recoveryPointStart: res.recoveryPointStart,
      recoveryPointEnd: res.recoveryPointEnd,
      timeline: details.timeline,
      startLsn: details.startLsn,
      endLsn: details.endLsn,
      checksum: res.artifacts[0]?.sha256 && /^[0-9a-f]{64}$/.test(res.artifacts[0].sha256) ? res.artifacts[0].sha256 : manifestSha,
      tool: res.tool,
      toolVersion: res.toolVersion,
      keyId: kid,
      retentionUntil: new Date(Date.now() + s.retentionDays(type) * 86400_000),
      metadata: { ...res.details, manifestKey, agentVersion: AGENT_VERSION, ...(engine === "postgres" && type === "incremental" ? { baseBackupId: parent?.backup_id } : {}) },
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
      details: res.details,
    };
  } catch (e) {
    m.failures.inc({ service, type });
    if (id) await cat.failBackup(c, id, (e as Error).message).catch(() => undefined);
    throw e;
  } finally {
    if (hb) clearInterval(hb);
    await held.release();
  }
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
          segment: seg.segment,
          key: seg.key,
          versionId: seg.versionId,
          sha256: seg.sha256,
          sizeBytes: seg.storedBytes,
          rawSize: seg.rawBytes,
          coversUntil: seg.completedAt,
          keyId: rcpt.keyId,
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

export function printSummary(b: BackupSummary): string {
  const lines = [
    `backup ${b.backupId} completed: ${b.type} of ${b.service} (${b.engine})`,
    `  read ${fmtBytes(b.rawBytes)}, stored ${fmtBytes(b.storedBytes)}${b.ratio !== null ? `, measured ratio stored/raw ${b.ratio.toFixed(3)}` : ""}, in ${fmtSeconds(b.durationSeconds)}`,
    `  location ${b.location}`,
    `  recovery point ${b.recoveryPoint.start} .. ${b.recoveryPoint.end}`,
    `  tool ${b.toolVersion}; key id ${b.keyId}`,
    ...b.artifacts.map((a) => `  ${a.name}: ${fmtBytes(a.storedBytes)} stored, sha256 ${a.sha256}`),
    ...(b.reconciled.length ? [`  reconciled ${b.reconciled.length} stale run(s) to failed: ${b.reconciled.join(", ")}`] : []),
  ];
  return lines.join("\n");
}

async function loadManifest(storage: Storage, row: cat.BackupRow, arts: cat.ArtifactRow[]): Promise<Manifest> {
  const ma = arts.find((a) => a.role === "manifest");
  if (!ma) throw new IntegrityError(`backup ${row.backup_id} has no manifest in the catalog: it is not a complete backup and will not be used.`);
  await checkStoredSha(storage, { key: ma.object_key, versionId: ma.version_id, sha256: ma.sha256 }, "manifest.json").catch((e: Error) => {
    throw new IntegrityError(`backup ${row.backup_id}: manifest ${ma.object_key} cannot be read or does not match the catalog (${e.message}); the backup will not be used.`);
  });
  const mf = JSON.parse(await storage.getText(ma.object_key, ma.version_id ?? undefined)) as Manifest;
  for (const a of arts.filter((x) => x.role !== "manifest")) {
    const inMf = mf.artifacts.find((x) => x.key === a.object_key);
    if (!inMf || inMf.sha256 !== a.sha256) throw new IntegrityError(`backup ${row.backup_id}: artifact ${a.object_key} is not in the manifest with the same SHA-256; the backup will not be used.`);
  }
  return mf;
}

const toRef = (a: cat.ArtifactRow): pgEngine.StoredRef => ({
  key: a.object_key,
  versionId: a.version_id,
  sha256: a.sha256,
  storedBytes: Number(a.size_bytes),
  rawBytes: a.raw_size === null ? undefined : Number(a.raw_size),
  rawSha256: a.metadata.rawSha256,
  name: a.metadata.name ?? path.basename(a.object_key),
});

const walRef = (w: cat.WalRow): pgEngine.StoredRef => ({
  key: w.object_key,
  versionId: w.version_id,
  sha256: w.sha256,
  storedBytes: Number(w.size_bytes),
  rawBytes: w.raw_size === null ? undefined : Number(w.raw_size),
  name: w.segment_name,
});

export interface RestoreOptions {
  target: string;
  backupId?: string;
  time?: Date;
  walDir?: string;
  forceOverwriteSource?: boolean;
  yes?: boolean;
}

export interface RestoreSummary {
  service: string;
  engine: string;
  backupId: string;
  target: string;
  recoveryTarget: string;
  reaches: string;
  artifactsChecked: number;
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
  const nonEmpty = existsSync(target) && readdirSync(target).length > 0;
  if (nonEmpty && !(o.forceOverwriteSource && o.yes)) {
    throw new ConfigError(`restore target ${target} is not empty: give an empty or new directory (or --force-overwrite-source --yes to replace what is there).`);
  }
  const storage = Storage.fromSettings(s);
  const t0 = Date.now();
  const scratch = path.join(s.stateDir, "scratch");
  mkdirSync(scratch, { recursive: true });

  let row: cat.BackupRow;
  let wal: cat.WalRow[] = [];
  let reaches: Date;
  if (o.backupId) {
    const r = await cat.getBackup(c, o.backupId);
    if (!r || r.service_name !== service) throw new ConfigError(`backup ${o.backupId} of '${service}' is not in the catalog: run 'kdr-agent list' to see ids.`);
    if (r.backup_status !== "completed") throw new ConfigError(`backup ${o.backupId} is ${r.backup_status}, not completed: only completed backups are restored.`);
    row = r;
    reaches = r.recovery_point_end!;
  } else if (engine === "postgres") {
    const plan = await cat.recoveryPlan(c, tenantId, service, o.time);
    row = plan.base;
    wal = plan.walSegments;
    reaches = plan.reaches;
    if (plan.gap) log(`warning: ${plan.gap}`);
    if (o.time && plan.reaches < o.time) {
      throw new ConfigError(`the archive reaches ${plan.reaches.toISOString()}, before the requested point ${o.time.toISOString()}: choose an earlier --time, or wait for the WAL to be uploaded.`);
    }
  } else {
    const r = await cat.latestGoodBackup(c, tenantId, service, ["full", "incremental"], o.time);
    if (!r) throw new ConfigError(`no completed backup of '${service}'${o.time ? ` at or before ${o.time.toISOString()}` : ""} in the catalog.`);
    row = r;
    reaches = r.recovery_point_end!;
  }
  log(`restore ${service}: using backup ${row.backup_id} (${row.backup_type}, recovery point ${row.recovery_point_end?.toISOString()})${wal.length ? ` + ${wal.length} WAL segment(s)` : ""}`);
  const arts = await cat.artifactsOf(c, row.backup_id);
  await loadManifest(storage, row, arts);

  let checked = 0;
  let next = "";
  if (engine === "volume") {
    const snap = arts.find((a) => a.role === "restic");
    if (!snap) throw new IntegrityError(`backup ${row.backup_id} has no restic snapshot artifact.`);
    await volumeEngine.restore(s, snap.sha256, target, !!(o.forceOverwriteSource && o.yes));
    checked = 1;
    next = `files are in ${target}`;
  } else {
    const identity = identityFor(s, row.encryption_key_id);
    // Every artifact's SHA-256 is checked before anything is written to the target.
    const refs = arts.filter((a) => a.role === "base" || a.role === "rdb").map(toRef);
    const walRefs = wal.map(walRef);
    for (const r of [...refs, ...walRefs]) {
      await checkStoredSha(storage, r, r.name);
      checked++;
    }
    log(`restore ${service}: SHA-256 of ${checked} artifact(s) verified before applying`);
    if (engine === "postgres") {
      const base = refs.find((r) => r.name === "base.tar");
      if (!base) throw new IntegrityError(`backup ${row.backup_id} has no base.tar artifact.`);
      await pgEngine.restore({ storage, identityFile: identity, base, wal: walRefs, target, walDir: o.walDir ?? `${target}.kdr-wal`, targetTime: o.time });
      next = `start PostgreSQL 15 on ${target} (owned by the postgres user, mode 0700); it replays the WAL and promotes`;
    } else {
      const rdb = refs.find((r) => r.name === "dump.rdb")!;
      await redisEngine.restore({ storage, identityFile: identity, rdb, target, overwrite: !!(o.forceOverwriteSource && o.yes) });
      next = `start redis-server with 'dir ${target}' and 'dbfilename dump.rdb'`;
    }
  }
  return {
    service,
    engine,
    backupId: row.backup_id,
    target,
    recoveryTarget: o.time ? o.time.toISOString() : o.backupId ? `backup ${o.backupId}` : "latest",
    reaches: (o.time && o.time < reaches ? o.time : reaches).toISOString(),
    artifactsChecked: checked,
    durationSeconds: (Date.now() - t0) / 1000,
    next,
  };
}

export interface VerifySummary {
  backupId: string;
  service: string;
  passed: boolean;
  checks: string[];
  error?: string;
}

export async function runVerify(s: Settings, c: pg.Client, backupId?: string): Promise<VerifySummary> {
  const service = s.service;
  const engine = s.engine;
  const row = backupId ? await cat.getBackup(c, backupId) : await cat.latestGoodBackup(c, s.tenantId, service, ["full", "incremental"]);
  if (!row) throw new ConfigError(backupId ? `backup ${backupId} is not in the catalog.` : `no completed backup of '${service}' to verify: run a backup first.`);
  if (row.backup_status !== "completed") throw new ConfigError(`backup ${row.backup_id} is ${row.backup_status}; only completed backups can be verified.`);
  const storage = Storage.fromSettings(s);
  const scratch = path.join(s.stateDir, "scratch");
  mkdirSync(scratch, { recursive: true });
  const checks: string[] = [];
  try {
    const arts = await cat.artifactsOf(c, row.backup_id);
    await loadManifest(storage, row, arts);
    checks.push("manifest: present, matches the catalog");
    if (engine === "volume") {
      const snap = arts.find((a) => a.role === "restic")!;
      checks.push(...(await volumeEngine.verify(s, snap.sha256)));
    } else {
      const identity = identityFor(s, row.encryption_key_id);
      const refs = arts.filter((a) => a.role !== "manifest").map(toRef);
      if (engine === "postgres") {
        checks.push(...(await pgEngine.verifyArtifacts({ storage, identityFile: identity, artifacts: refs, scratch })));
        if (row.backup_type === "incremental") {
          const baseId = (row.metadata as { baseBackupId?: string }).baseBackupId ?? row.parent_backup_id;
          const upto = (row.metadata as { uptoSegment?: string }).uptoSegment;
          const base = baseId ? await cat.getBackup(c, baseId) : undefined;
          const plan = await cat.recoveryPlan(c, s.tenantId, service);
          if (base && plan.base.backup_id === base.backup_id) {
            const segs = plan.walSegments.filter((w) => !upto || w.segment_name <= upto).map(walRef);
            checks.push(...(await pgEngine.verifyArtifacts({ storage, identityFile: identity, artifacts: segs, scratch })).slice(-1));
            checks.push(`WAL: ${segs.length} segment(s) from the base to ${upto} present, SHA-256 and decryption ok`);
          }
        }
      } else {
        checks.push(...(await redisEngine.verify({ storage, identityFile: identity, rdb: refs.find((r) => r.name === "dump.rdb")!, scratch })));
      }
    }
    await cat.recordVerification(c, row.backup_id, true, { checks, at: new Date().toISOString() });
    if (row.recovery_point_end) m.lastVerified.set({ service }, row.recovery_point_end.getTime() / 1000);
    return { backupId: row.backup_id, service, passed: true, checks };
  } catch (e) {
    if (e instanceof ConfigError) throw e; // a missing or wrong key says nothing about the backup
    await cat.recordVerification(c, row.backup_id, false, { checks, error: (e as Error).message, at: new Date().toISOString() });
    return { backupId: row.backup_id, service, passed: false, checks, error: (e as Error).message };
  }
}

export interface HealthSummary {
  service: string;
  healthy: boolean;
  rpoSeconds: number;
  verifiedRecoveryPoint: string | null;
  ageSeconds: number | null;
  lastVerifiedBackup: string | null;
  message: string;
}

export async function runHealth(s: Settings, c: pg.Client): Promise<HealthSummary> {
  const service = s.service;
  const rpo = s.rpoSeconds;
  const { point, verifiedBackup } = await cat.verifiedRecoveryPoint(c, s.tenantId, service, s.engine);
  const age = point ? (Date.now() - point.getTime()) / 1000 : null;
  m.rpoTarget.set({ service }, rpo);
  if (age !== null) m.rpo.set({ service }, age);
  const healthy = age !== null && age <= rpo;
  return {
    service,
    healthy,
    rpoSeconds: rpo,
    verifiedRecoveryPoint: point?.toISOString() ?? null,
    ageSeconds: age === null ? null : Math.round(age),
    lastVerifiedBackup: verifiedBackup?.backup_id ?? null,
    message:
      age === null
        ? `STALE: '${service}' has no verified backup; run 'kdr-agent backup --type full' then 'kdr-agent verify'.`
        : healthy
          ? `ok: newest verified recovery point of '${service}' is ${fmtSeconds(age)} old (RPO ${fmtSeconds(rpo)})`
          : `STALE: newest verified recovery point of '${service}' is ${fmtSeconds(age)} old, over the RPO of ${fmtSeconds(rpo)}: check the schedule and the last runs ('kdr-agent list'), then verify.`,
  };
}

export interface PruneSummary {
  service: string;
  expired: string[];
  kept: string[];
  objectsDeleted: number;
  objectsLeftToLifecycle: number;
  walSegmentsDeleted: number;
}

/**
 * Retention: a row whose retention_until has passed is expired and its objects deleted (an
 * object lock that still holds them is fine: the bucket lifecycle, with the same day counts,
 * removes them later). The newest good full backup, and every backup and WAL segment a restore
 * from it needs, are never touched.
 */
export async function runPrune(s: Settings, c: pg.Client, now = new Date()): Promise<PruneSummary> {
  const service = s.service;
  const tenantId = s.tenantId;
  const storage = Storage.fromSettings(s);
  const held = await acquireServiceLock(c, s.stateDir, `backup:${service}`, 600);
  try {
    const keepFull = await cat.latestGoodBackup(c, tenantId, service, ["full"]);
    const rows = (
      await c.query<cat.BackupRow>(
        `SELECT * FROM backup_management WHERE tenant_id = $1 AND service_name = $2 AND backup_status IN ('completed','failed')
           AND retention_until IS NOT NULL AND retention_until < $3 ORDER BY created_at`,
        [tenantId, service, now],
      )
    ).rows;
    const sum: PruneSummary = { service, expired: [], kept: [], objectsDeleted: 0, objectsLeftToLifecycle: 0, walSegmentsDeleted: 0 };
    const snapshots: string[] = [];
    for (const r of rows) {
      if (keepFull && (r.backup_id === keepFull.backup_id || r.parent_backup_id === keepFull.backup_id)) {
        sum.kept.push(r.backup_id);
        continue;
      }
      for (const a of await cat.artifactsOf(c, r.backup_id)) {
        if (a.role === "restic") {
          snapshots.push(a.sha256);
          continue;
        }
        try {
          await storage.deleteVersion(a.object_key, a.version_id ?? undefined);
          sum.objectsDeleted++;
        } catch {
          sum.objectsLeftToLifecycle++;
        }
      }
      await cat.expireBackup(c, r.backup_id);
      sum.expired.push(r.backup_id);
    }
    if (s.engine === "volume" && snapshots.length) await volumeEngine.forget(s, snapshots);
    if (s.engine === "postgres" && keepFull?.start_lsn && keepFull.timeline) {
      // WAL older than the oldest base still kept is useless to any restore.
      const oldestKept = (
        await c.query<{ start_lsn: string; timeline: number }>(
          `SELECT start_lsn::text, timeline FROM backup_management WHERE tenant_id = $1 AND service_name = $2 AND backup_type = 'full'
             AND backup_status = 'completed' AND start_lsn IS NOT NULL ORDER BY start_lsn LIMIT 1`,
          [tenantId, service],
        )
      ).rows[0]!;
      const first = cat.walFileName(oldestKept.timeline, oldestKept.start_lsn);
      const cutoff = new Date(now.getTime() - s.retentionDays("wal") * 86400_000);
      const old = (
        await c.query<cat.WalRow>(
          `SELECT * FROM wal_segment WHERE tenant_id = $1 AND service_name = $2 AND segment_name < $3 AND covers_until < $4 AND segment_name NOT LIKE '%.history'`,
          [tenantId, service, first, cutoff],
        )
      ).rows;
      for (const w of old) {
        try {
          await storage.deleteVersion(w.object_key, w.version_id ?? undefined);
          sum.walSegmentsDeleted++;
        } catch {
          sum.objectsLeftToLifecycle++;
        }
      }
    }
    return sum;
  } finally {
    await held.release();
  }
}
