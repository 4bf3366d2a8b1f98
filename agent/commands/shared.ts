/** What the agent's commands share: the manifest format, the age key halves, object-lock settings, why an error is not the backup's. */
import { existsSync } from "node:fs";
import { createHash } from "node:crypto";
import { objectPrefix } from "../../contract/index.js";
import * as cat from "../catalog.js";
import { ConfigError, type Settings } from "../config.js";
import { checkRecipient, checkStoredSha, diskFull, keyId, recipientsOfIdentity, IntegrityError } from "../storage/pipeline.js";
import { Storage, type Lock } from "../storage/s3.js";

/** Also used by the commands; defined beside IntegrityError, where the engines reach it. */
export { diskFull };

export const AGENT_VERSION = "0.1.0";
/**
 * kdr-manifest/2 adds `catalog` (everything the backup's catalog row and artifacts hold) and
 * `selfSha256`, so a region's bucket alone rebuilds the catalog; /1 manifests still restore.
 */
export const MANIFEST_FORMAT = "kdr-manifest/2";

/** The catalog row of a backup as its manifest carries it (version ids: the region it was written to). */
export interface ManifestCatalogRow {
  tenantId: string;
  parentBackupId: string | null;
  bucket: string;
  prefix: string;
  region: string | null;
  rawSize: number;
  /** Stored bytes of the artifacts, the manifest itself not included. */
  storedSize: number;
  timeline: number | null;
  startLsn: string | null;
  endLsn: string | null;
  /** SHA-256 of the primary artifact; null: the manifest's own (a restic snapshot has no single object). */
  checksum: string | null;
  retentionUntil: string;
  metadata: Record<string, unknown>;
  /** Every artifact but the manifest. */
  artifacts: cat.ArtifactInput[];
}

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
  artifacts: { name: string; key: string; versionId?: string; sha256: string; storedBytes: number; rawBytes: number; rawSha256?: string }[];
  details: Record<string, unknown>;
  /** kdr-manifest/2 and later. */
  catalog?: ManifestCatalogRow;
  /** SHA-256 of this manifest's JSON without this field (kdr-manifest/2 and later). */
  selfSha256?: string;
}

/**
 * A sealed JSON document (a manifest, a WAL descriptor): its JSON, closed by `selfSha256`, the
 * SHA-256 of the same JSON without that field. `indent` is part of the format of each document.
 */
function sealJson<T extends { selfSha256?: string }>(doc: T, indent?: number): string {
  const { selfSha256: _old, ...rest } = doc;
  return JSON.stringify({ ...rest, selfSha256: createHash("sha256").update(JSON.stringify(rest, null, indent)).digest("hex") }, null, indent);
}

/** Parses a sealed document; one cut short is an IntegrityError naming `where` and `what` it is. */
function parseSealed<T>(body: string, where: string, what: string): T {
  try {
    return JSON.parse(body) as T;
  } catch (e) {
    throw new IntegrityError(`${where} is not a whole ${what} (${(e as Error).message}): it was cut short or damaged.`);
  }
}

/**
 * Checks a sealed document's own SHA-256 (and `valid`, its format); an altered one is an
 * IntegrityError naming `where`.
 */
function checkSeal(doc: { selfSha256?: string }, where: string, indent?: number, valid = true): void {
  const { selfSha256, ...rest } = doc;
  const want = createHash("sha256").update(JSON.stringify(rest, null, indent)).digest("hex");
  if (!valid || selfSha256 !== want) throw new IntegrityError(`${where} does not match its own SHA-256 (${selfSha256 ?? "none"}, computed ${want}): it was altered or damaged.`);
}

/** The manifest's body: its JSON (indented 2), closed by the SHA-256 of everything before it. */
export function sealManifest(m: Manifest): string {
  return sealJson(m, 2);
}

/**
 * Parses a manifest body and checks its own SHA-256: a truncated or altered manifest is an
 * IntegrityError naming the object. Manifests from before kdr-manifest/2 carry no checksum.
 */
export function openManifest(body: string, where: string): Manifest {
  const m = parseSealed<Manifest>(body, where, "manifest");
  if (m.format !== "kdr-manifest/1") checkSeal(m, where, 2);
  return m;
}

/** A WAL segment's descriptor, stored beside it (`<segment key>.kdr.json`): its catalog row. */
export interface WalDescriptor {
  format: "kdr-wal/1";
  tenantId: string;
  service: string;
  timeline: number;
  segmentName: string;
  objectKey: string;
  sha256: string;
  sizeBytes: number;
  rawSize: number | null;
  coversUntil: string;
  encryptionKeyId: string | null;
  selfSha256?: string;
}

export const WAL_DESCRIPTOR_SUFFIX = ".kdr.json";

/** A WAL descriptor's body (compact JSON), closed by its own SHA-256 like a manifest. */
export function sealWalDescriptor(d: WalDescriptor): string {
  return sealJson(d);
}

export function openWalDescriptor(body: string, where: string): WalDescriptor {
  const d = parseSealed<WalDescriptor>(body, where, "WAL descriptor");
  checkSeal(d, where, undefined, d.format === "kdr-wal/1");
  return d;
}

/** The catalog artifact of a manifest body stored at `key`. */
/** Where a backup's manifest is stored: beside its artifacts, or (restic) beside the repository. */
export function manifestKeyOf(engine: string, service: string, backupId: string, prefix: string): string {
  return engine === "volume" ? `${objectPrefix("restic", service)}kdr-manifests/${backupId}.json` : `${prefix}manifest.json`;
}

export function manifestArtifact(key: string, versionId: string | null | undefined, body: string): cat.ArtifactInput {
  const bytes = Buffer.byteLength(body);
  return { role: "manifest", objectKey: key, versionId: versionId ?? null, sha256: createHash("sha256").update(body).digest("hex"), sizeBytes: bytes, rawSize: bytes, metadata: { name: "manifest.json" } };
}

export function lockFor(s: Settings, cls: "full" | "incremental" | "wal" | "logical"): Lock | undefined {
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
  if (!existsSync(file) && existsSync(s.secretPath("encryptionRecipient"))) {
    // A backup sidecar: it holds only the public key, by design.
    throw new ConfigError(
      `this container holds only the age public key (a backup sidecar cannot read backups, by design), so it cannot decrypt. ` +
        `Run decrypting commands (verify, restore) in the stack's drill cron container, which holds the identity: ` +
        `docker exec -it $(docker ps -qf name=<prefix>-drill) kdr-agent verify --service ${s.get("service") ?? "<service>"} --engine ${s.get("engine") ?? "<engine>"} --tier ${s.get("tier") ?? "<tier>"} --s3-bucket ${s.get("s3Bucket") ?? "<bucket>"}`,
    );
  }
  s.secret("encryptionIdentity");
  // age tries every key of the file; during a rotation it holds the new key and the old ones.
  const have = recipientsOfIdentity(file).map(keyId);
  if (expectedKeyId && !have.includes(expectedKeyId)) {
    throw new ConfigError(
      `wrong decryption key: the backup was encrypted for key id ${expectedKeyId}, but the age identity in ${file} has key id ${have.join(", ")}. ` +
        `Mount the kdr-age-identity secret that holds the private key whose public key (age-keygen -y) was the kdr-age-recipient of this backup (after a key rotation: the new key and the old one, one per line).`,
    );
  }
  return file;
}

export async function loadManifest(storage: Storage, row: cat.BackupRow, arts: cat.ArtifactRow[]): Promise<Manifest> {
  const ma = arts.find((a) => a.role === "manifest");
  if (!ma) throw new IntegrityError(`backup ${row.backupId} has no manifest in the catalog: it is not a complete backup and will not be used.`);
  await checkStoredSha(storage, { key: ma.objectKey, versionId: ma.versionId, sha256: ma.sha256 }, "manifest.json").catch((e: Error) => {
    if (outsideTheBackup(e)) throw e; // unreachable storage says nothing about the backup
    throw new IntegrityError(`backup ${row.backupId}: manifest ${ma.objectKey} cannot be read or does not match the catalog (${e.message}); the backup will not be used.`);
  });
  const mf = openManifest(await storage.getText(ma.objectKey, ma.versionId ?? undefined), `backup ${row.backupId}: manifest ${ma.objectKey}`);
  for (const a of arts.filter((x) => x.role !== "manifest")) {
    const inMf = mf.artifacts.find((x) => x.key === a.objectKey);
    if (!inMf || inMf.sha256 !== a.sha256) throw new IntegrityError(`backup ${row.backupId}: artifact ${a.objectKey} is not in the manifest with the same SHA-256; the backup will not be used.`);
  }
  return mf;
}
/**
 * Why a verify error says nothing about the backup, or undefined when it does: a tool missing
 * from the image, storage that could not be reached, or a full local disk. A checksum, decryption, decompression
 * or tool-check failure is about the backup, and is recorded as a failed verify.
 */
export function outsideTheBackup(e: unknown, stateDir = "its state directory"): string | undefined {
  if (e instanceof IntegrityError) return undefined;
  const err = e as { message?: string; name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const msg = err.message ?? "";
  if (/is not installed \(not found on PATH\)|is needed by \S+ but was not found/.test(msg)) return "a tool is missing in this container";
  // A full local disk (the scratch copy a verify unpacks, a restore's staging) says nothing about the backup.
  const full = diskFull(e, stateDir);
  if (full) return full;
  const status = err.$metadata?.httpStatusCode;
  if ((status !== undefined && status >= 500) || ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH"].includes(err.code ?? "") ||
    ["TimeoutError", "NetworkingError"].includes(err.name ?? "") || /ECONNREFUSED|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|socket hang up/.test(msg)) {
    return "the object store could not be reached";
  }
  return undefined;
}

/**
 * The catalog records each object's version id in the region it was written to. Read from another
 * region (a restore with sourceRegion dr), the copies there have their own ids, which the
 * replicator recorded (object_copy): rows with a recorded copy in `storage`'s bucket get its id;
 * the rest keep theirs (their own region, or a native replication that keeps version ids).
 */
export async function inRegionOf<T extends { objectKey: string; versionId: string | null }>(c: cat.Db, storage: Storage, rows: T[]): Promise<T[]> {
  const refs = rows.flatMap((r) => (r.versionId ? [{ key: r.objectKey, versionId: r.versionId }] : []));
  const copies = await cat.copyVersions(c, storage.endpoint, storage.bucket, refs);
  if (copies.size === 0) return rows;
  return rows.map((r) => {
    const id = r.versionId ? copies.get(`${r.objectKey}\n${r.versionId}`) : undefined;
    return id === undefined ? r : { ...r, versionId: id };
  });
}

/**
 * The leading run of `rows` (WAL, in order) this region holds now: each copied here (a copy is
 * recorded) or written here (its own version is in this bucket: after a failover and back, one
 * service's WAL was written in both regions). Stops at the first that is neither: not copied yet.
 */
export async function heldHere<T extends { objectKey: string; versionId: string | null }>(c: cat.Db, storage: Storage, rows: T[]): Promise<T[]> {
  const copies = await cat.copyVersions(c, storage.endpoint, storage.bucket, rows.flatMap((r) => (r.versionId ? [{ key: r.objectKey, versionId: r.versionId }] : [])));
  const out: T[] = [];
  for (const r of rows) {
    if (r.versionId && !copies.has(`${r.objectKey}\n${r.versionId}`) && !(await storage.holdsVersion(r.objectKey, r.versionId))) break;
    out.push(r);
  }
  return out;
}

/** The port of the primary a standby stands in for: its own setting, else the standby's port. */
export function primaryPort(s: Settings): number {
  return s.int("primaryPort", s.int("targetPort", s.engine === "redis" ? 6379 : 5432));
}

/** A standby's promotion (a failover, a failback) as a completed disaster_recovery_log row; returns its id. */
export async function recordPromotion(
  c: cat.Db,
  s: Settings,
  r: { incidentType: string; procedure: string; initiatedAt: Date; metadata: Record<string, unknown>; totalSeconds: number; phaseTimings: Record<string, number>; notes: string[]; recoveryPoint?: Date; dataLossSeconds?: number },
): Promise<string> {
  const row = await cat.startRecovery(c, {
    tenantId: s.tenantId,
    incidentType: r.incidentType,
    affectedServices: [s.service],
    procedure: r.procedure,
    target: "latest",
    rtoTargetSeconds: s.int("rtoSeconds"),
    rpoTargetSeconds: s.get("rpoSeconds") ? s.int("rpoSeconds") : undefined,
    initiatedAt: r.initiatedAt,
    metadata: r.metadata,
  });
  const done = await cat.finishRecovery(c, row.recoveryId, {
    status: "completed",
    recoveryPoint: r.recoveryPoint,
    actualRecoverySeconds: r.totalSeconds,
    dataLossSeconds: r.dataLossSeconds,
    phaseTimings: r.phaseTimings,
    notes: r.notes.join("; ") || undefined,
  });
  return done.recoveryId;
}
