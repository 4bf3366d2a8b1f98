/** What the agent's commands share: the manifest format, the age key halves, object-lock settings, why an error is not the backup's. */
import * as cat from "../catalog.js";
import { ConfigError, type Settings } from "../config.js";
import { checkRecipient, checkStoredSha, keyId, recipientOfIdentity, IntegrityError } from "../storage/pipeline.js";
import { Storage, type Lock } from "../storage/s3.js";

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
  s.secret("encryptionIdentity");
  const have = keyId(recipientOfIdentity(file));
  if (expectedKeyId && have !== expectedKeyId) {
    throw new ConfigError(
      `wrong decryption key: the backup was encrypted for key id ${expectedKeyId}, but the age identity in ${file} has key id ${have}. Mount the kdr-age-identity secret whose public key (age-keygen -y) matches the kdr-age-recipient used for this backup.`,
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
  const mf = JSON.parse(await storage.getText(ma.objectKey, ma.versionId ?? undefined)) as Manifest;
  for (const a of arts.filter((x) => x.role !== "manifest")) {
    const inMf = mf.artifacts.find((x) => x.key === a.objectKey);
    if (!inMf || inMf.sha256 !== a.sha256) throw new IntegrityError(`backup ${row.backupId}: artifact ${a.objectKey} is not in the manifest with the same SHA-256; the backup will not be used.`);
  }
  return mf;
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
