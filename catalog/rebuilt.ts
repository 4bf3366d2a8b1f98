/**
 * Catalog rows made from manifests (kdr-manifest/2 carries the row): `catalog rebuild` inserts the
 * backups a catalog lacks, and a run or a rebuild completes a row the catalog still holds in flight,
 * or reconciled to failed, once its manifest proves the backup completed.
 */
import type { Engine } from "../contract/index.js";
import type { ArtifactInput } from "./runs.js";
import { artifactsJson, checkArtifacts, checkService, checkUuid, INSERT_ARTIFACTS } from "./sql.js";
import type { BackupType, Db } from "./types.js";

/** A completed backup as its manifest describes it, for `catalog rebuild`. */
export interface RebuiltBackupInput {
  backupId: string;
  tenantId: string;
  service: string;
  engine: Engine;
  type: BackupType;
  bucket: string;
  prefix: string;
  region: string | null;
  rawSize: number;
  storedSize: number;
  recoveryPointStart: Date;
  recoveryPointEnd: Date;
  timeline: number | null;
  startLsn: string | null;
  endLsn: string | null;
  checksum: string;
  tool: string;
  toolVersion: string;
  encryptionKeyId: string;
  parentBackupId: string | null;
  retentionUntil: Date;
  /** When the backup finished (its manifest's time). */
  completedAt: Date;
  metadata: Record<string, unknown>;
  artifacts: ArtifactInput[];
}

/**
 * A backup the catalog still shows pending or running although its manifest (written last, after
 * every artifact) proves it completed: the run ended after the catalog's last word on it (a
 * catalog restored to a point while the backup was uploading). Completes the row from the
 * manifest, as insertRebuiltBackup would have made it, artifacts included (those it recorded while
 * running are set to what the manifest and this bucket say; the writer role deletes nothing). Returns the status it
 * had, or null when it was in none (nothing changed). A run reconciled to failed (its agent
 * stopped reporting) is completed too, its reconciliation kept in metadata.reconciledAs: the
 * manifest turned up after the reconciling run looked (copied in from a region that came back;
 * migration 013). Any other failed row stays failed.
 */
export async function completeRebuiltBackup(db: Db, b: RebuiltBackupInput): Promise<string | null> {
  checkUuid("backupId", b.backupId);
  checkArtifacts(b.artifacts);
  // pending -> running first: the status flow allows nothing else (running -> completed below).
  const pending = await db.query("UPDATE backup_management SET backup_status = 'running', started_at = coalesce(started_at, now()) WHERE backup_id = $1 AND backup_status = 'pending'", [b.backupId]);
  const { rows } = await db.query(
    `WITH old AS (
       SELECT backup_id, backup_status, error_message FROM backup_management
       WHERE backup_id = $1 AND (backup_status = 'running'
         OR (backup_status = 'failed' AND error_message LIKE 'reconciled by %' AND $17::jsonb ? 'completedFromManifest')) FOR UPDATE),
     u AS (
       UPDATE backup_management m SET
         backup_status = 'completed', failed_at = NULL, error_message = NULL,
         storage_bucket = $2, storage_prefix = $3, storage_region = $4, raw_size = $5, backup_size = $6,
         recovery_point_start = $7, recovery_point_end = $8, timeline = $9, start_lsn = $10::pg_lsn, end_lsn = $11::pg_lsn,
         checksum = $12, tool = $13, tool_version = $14, encryption_key_id = $15, retention_until = $16,
         metadata = m.metadata || $17::jsonb || CASE WHEN old.backup_status = 'failed' THEN jsonb_build_object('reconciledAs', old.error_message) ELSE '{}' END,
         started_at = coalesce(m.started_at, $18), completed_at = $18
       FROM old WHERE m.backup_id = old.backup_id
       RETURNING m.backup_id),
     put AS (
       ${INSERT_ARTIFACTS("u b", "$19")}
       ON CONFLICT (backup_id, object_key) DO UPDATE SET role = EXCLUDED.role, version_id = EXCLUDED.version_id, sha256 = EXCLUDED.sha256,
         size_bytes = EXCLUDED.size_bytes, raw_size = EXCLUDED.raw_size, metadata = EXCLUDED.metadata
       RETURNING 1)
     SELECT (SELECT backup_status FROM old) AS was, (SELECT count(*) FROM put)::int AS artifacts`,
    [
      b.backupId, b.bucket, b.prefix, b.region, b.rawSize, b.storedSize, b.recoveryPointStart, b.recoveryPointEnd, b.timeline,
      b.startLsn, b.endLsn, b.checksum, b.tool, b.toolVersion, b.encryptionKeyId, b.retentionUntil, JSON.stringify(b.metadata),
      b.completedAt, artifactsJson(b.artifacts),
    ],
  );
  const was = (rows[0]?.was as string | null | undefined) ?? null;
  return was && (pending.rowCount ?? 0) > 0 ? "pending" : was;
}

/**
 * Inserts a completed backup and its artifacts from a manifest, in one statement. A backup whose
 * id the catalog already holds is left exactly as it is: returns false.
 */
export async function insertRebuiltBackup(db: Db, b: RebuiltBackupInput): Promise<boolean> {
  checkUuid("backupId", b.backupId);
  checkUuid("tenantId", b.tenantId);
  checkService(b.service);
  if (b.parentBackupId) checkUuid("parentBackupId", b.parentBackupId);
  checkArtifacts(b.artifacts);
  const { rows } = await db.query(
    `WITH b AS (
       INSERT INTO backup_management (
         backup_id, tenant_id, service_name, engine, backup_type, backup_status, storage_bucket, storage_prefix, storage_region,
         raw_size, backup_size, recovery_point_start, recovery_point_end, timeline, start_lsn, end_lsn, checksum, tool, tool_version,
         encryption_key_id, parent_backup_id, retention_until, metadata, started_at, completed_at, created_at)
       VALUES ($1, $2, $3, $4, $5, 'completed', $6, $7, $8, $9, $10, $11, $12, $13, $14::pg_lsn, $15::pg_lsn, $16, $17, $18, $19, $20, $21, $22, $23, $23, $23)
       ON CONFLICT (backup_id) DO NOTHING
       RETURNING backup_id),
     a AS (${INSERT_ARTIFACTS("b", "$24")} RETURNING 1)
     SELECT (SELECT count(*) FROM b)::int AS inserted`,
    [
      b.backupId, b.tenantId, b.service, b.engine, b.type, b.bucket, b.prefix, b.region, b.rawSize, b.storedSize,
      b.recoveryPointStart, b.recoveryPointEnd, b.timeline, b.startLsn, b.endLsn, b.checksum, b.tool, b.toolVersion,
      b.encryptionKeyId, b.parentBackupId, b.retentionUntil, JSON.stringify(b.metadata), b.completedAt, artifactsJson(b.artifacts),
    ],
  );
  return rows[0]!.inserted === 1;
}
