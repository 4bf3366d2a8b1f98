/** Internal helpers of the query files: column lists, row mapping and input checks. */
import { isUuid } from "../contract/index.js";
import type { ArtifactInput } from "./runs.js";
import { CatalogError } from "./types.js";

// ---------------------------------------------------------------------------------------------
// Column lists: casts make pg hand back JS numbers and strings instead of numeric strings and
// interval objects, so rows map by renaming only.

export const BACKUP_COLS = `backup_id, tenant_id, service_name, engine, backup_type, backup_status,
  storage_bucket, storage_prefix, storage_region, backup_location,
  raw_size::float8 AS raw_size, backup_size::float8 AS backup_size, compression_ratio::float8 AS compression_ratio,
  started_at, completed_at, failed_at, extract(epoch FROM duration)::float8 AS duration_seconds,
  recovery_point_start, recovery_point_end, timeline, start_lsn::text AS start_lsn, end_lsn::text AS end_lsn,
  checksum, tool, tool_version, encryption_key_id, parent_backup_id,
  run_host, run_pid, run_token, heartbeat_at, error_message,
  verified_at, verify_status, verify_details, retention_until, expired_at, metadata, created_at, updated_at`;

export const ARTIFACT_COLS = `artifact_id, backup_id, role, object_key, version_id, sha256,
  size_bytes::float8 AS size_bytes, raw_size::float8 AS raw_size, metadata, created_at`;

export const WAL_COLS = `segment_id, tenant_id, service_name, timeline, segment_name,
  start_lsn::text AS start_lsn, end_lsn::text AS end_lsn, object_key, version_id, sha256,
  size_bytes::float8 AS size_bytes, raw_size::float8 AS raw_size, raw_sha256, covers_until, encryption_key_id,
  uploaded_at, expired_at`;

export const RECOVERY_COLS = `recovery_id, tenant_id, incident_type, affected_services, recovery_procedure,
  recovery_status, recovery_target, recovery_point, source_backup_ids,
  extract(epoch FROM rto_target)::float8 AS rto_target_seconds,
  extract(epoch FROM rpo_target)::float8 AS rpo_target_seconds,
  extract(epoch FROM actual_recovery_time)::float8 AS actual_recovery_seconds,
  data_loss_seconds::float8 AS data_loss_seconds, data_loss_minutes, rto_met, rpo_met, phase_timings,
  initiated_by, initiated_at, completed_at, recovery_notes, error_message, lessons_learned, metadata,
  created_at, updated_at`;

export function camel<T>(row: Record<string, unknown>): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) out[k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())] = v;
  return out as T;
}

// ---------------------------------------------------------------------------------------------
// Input validation: errors say what is wrong and how to fix it, before the database sees it.

const SHA256_RE = /^[0-9a-f]{64}$/;
const SERVICE_RE = /^[a-z0-9][a-z0-9_.-]*$/;

export function checkSha256(what: string, v: string): void {
  if (!SHA256_RE.test(v)) {
    throw new CatalogError(`${what} must be a SHA-256 digest as 64 lowercase hex characters; got '${v}'. Pass digest('hex') of the stored bytes.`);
  }
}
export function checkUuid(what: string, v: string): void {
  if (!isUuid(v)) throw new CatalogError(`${what} must be a UUID; got '${v}'.`);
}
export function checkService(v: string): void {
  if (!SERVICE_RE.test(v) || v.length > 100) {
    throw new CatalogError(`service name '${v}' is invalid: use lowercase letters, digits, '.', '_' or '-' (at most 100 characters), starting with a letter or digit.`);
  }
}
export function checkBytes(what: string, v: number | undefined | null): void {
  if (v === undefined || v === null) return;
  if (!Number.isSafeInteger(v) || v < 0) throw new CatalogError(`${what} must be a whole number of bytes >= 0; got ${v}.`);
}
export function checkDate(what: string, v: Date | undefined | null): void {
  if (v === undefined || v === null) return;
  if (!(v instanceof Date) || Number.isNaN(v.getTime())) throw new CatalogError(`${what} must be a valid Date; got ${String(v)}.`);
}

/** The artifacts a backup row records: each checked, as JSON for INSERT_ARTIFACTS. */
export function checkArtifacts(artifacts: ArtifactInput[]): void {
  const keys = new Set<string>();
  for (const a of artifacts) {
    if (!/^[a-z][a-z0-9_-]*$/.test(a.role)) {
      throw new CatalogError(`artifact role '${a.role}' is invalid: use a lowercase word such as base, manifest, wal, dump or rdb.`);
    }
    if (!a.objectKey) throw new CatalogError(`artifact (${a.role}) has no objectKey: give the S3 key it was stored under.`);
    if (keys.has(a.objectKey)) throw new CatalogError(`artifact key '${a.objectKey}' is listed twice: each stored object is recorded once.`);
    keys.add(a.objectKey);
    checkSha256(`sha256 of artifact '${a.objectKey}'`, a.sha256);
    checkBytes(`sizeBytes of artifact '${a.objectKey}'`, a.sizeBytes);
    checkBytes(`rawSize of artifact '${a.objectKey}'`, a.rawSize);
  }
}

export function artifactsJson(artifacts: ArtifactInput[]): string {
  return JSON.stringify(
    artifacts.map((a) => ({
      role: a.role, object_key: a.objectKey, version_id: a.versionId ?? null, sha256: a.sha256,
      size_bytes: a.sizeBytes, raw_size: a.rawSize ?? null, metadata: a.metadata ?? {},
    })),
  );
}

/** INSERT of the artifacts in JSON parameter `param` for the backup id that `from` yields as `b.backup_id`. */
export const INSERT_ARTIFACTS = (from: string, param: string) => `
  INSERT INTO backup_artifact (backup_id, role, object_key, version_id, sha256, size_bytes, raw_size, metadata)
  SELECT b.backup_id, x.role, x.object_key, x.version_id, x.sha256, x.size_bytes, x.raw_size, coalesce(x.metadata, '{}'::jsonb)
  FROM ${from}, jsonb_to_recordset(${param}::jsonb)
       AS x(role text, object_key text, version_id text, sha256 text, size_bytes bigint, raw_size bigint, metadata jsonb)`;
