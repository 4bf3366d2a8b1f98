/** Backup runs: create, progress, complete, fail, reconcile, verify, expire, list. */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Engine } from "../contract/index.js";
import { ARTIFACT_COLS, artifactsJson, BACKUP_COLS, camel, checkArtifacts, checkBytes, checkDate, checkService, checkSha256, checkUuid, INSERT_ARTIFACTS } from "./sql.js";
import { BACKUP_TYPES, CatalogError } from "./types.js";
import type { ArtifactRow, BackupRow, BackupStatus, BackupType, Db, VerifyStatus } from "./types.js";

// ---------------------------------------------------------------------------------------------
// Backup runs

export interface CreateBackupInput {
  tenantId: string;
  service: string;
  type: BackupType;
  engine?: Engine;
  /** Where the artifacts go: bucket, key prefix (e.g. `full/<service>/<backupId>/`), region. */
  bucket: string;
  prefix: string;
  region?: string;
  tool?: string;
  toolVersion?: string;
  encryptionKeyId?: string;
  parentBackupId?: string;
  retentionUntil?: Date;
  /** Identify the run; default: this host, this pid and a fresh token. */
  runHost?: string;
  runPid?: number;
  runToken?: string;
  /** Fix the id (e.g. to use it in the key prefix before the row exists). */
  backupId?: string;
  metadata?: Record<string, unknown>;
}

/** Records a new run as `pending`. */
export async function createBackup(db: Db, input: CreateBackupInput): Promise<BackupRow> {
  checkUuid("tenantId", input.tenantId);
  checkService(input.service);
  if (!BACKUP_TYPES.includes(input.type)) {
    throw new CatalogError(`backup type '${input.type}' is unknown: use one of ${BACKUP_TYPES.join(", ")}.`);
  }
  if (!input.bucket) throw new CatalogError("bucket is required: the S3 bucket the artifacts are written to.");
  if (input.backupId) checkUuid("backupId", input.backupId);
  if (input.parentBackupId) checkUuid("parentBackupId", input.parentBackupId);
  checkDate("retentionUntil", input.retentionUntil);
  const { rows } = await db.query(
    `INSERT INTO backup_management (
       backup_id, tenant_id, service_name, engine, backup_type, backup_status,
       storage_bucket, storage_prefix, storage_region, tool, tool_version, encryption_key_id,
       parent_backup_id, retention_until, run_host, run_pid, run_token, metadata, started_at)
     VALUES (coalesce($1::uuid, gen_random_uuid()), $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, NULL)
     RETURNING ${BACKUP_COLS}`,
    [
      input.backupId ?? null, input.tenantId, input.service, input.engine ?? null, input.type,
      input.bucket, input.prefix, input.region ?? null, input.tool ?? null, input.toolVersion ?? null,
      input.encryptionKeyId ?? null, input.parentBackupId ?? null, input.retentionUntil ?? null,
      input.runHost ?? hostname(), input.runPid ?? process.pid, input.runToken ?? randomUUID(),
      JSON.stringify(input.metadata ?? {}),
    ],
  );
  return camel<BackupRow>(rows[0]!);
}

export async function statusOf(db: Db, backupId: string): Promise<BackupRow | null> {
  const { rows } = await db.query(`SELECT ${BACKUP_COLS} FROM backup_management WHERE backup_id = $1`, [backupId]);
  return rows[0] ? camel<BackupRow>(rows[0]) : null;
}

async function notInState(db: Db, backupId: string, wanted: string, action: string): Promise<never> {
  const row = await statusOf(db, backupId);
  if (!row) throw new CatalogError(`backup ${backupId} does not exist in the catalog: create it with createBackup first.`);
  const why = row.backupStatus === "failed" && row.errorMessage ? ` (${row.errorMessage})` : "";
  throw new CatalogError(
    `cannot ${action} backup ${backupId}: it is ${row.backupStatus}${why}, not ${wanted}. ` +
      `A finished or reconciled run is never reused: start a new backup.`,
  );
}

/** pending -> running; stamps started_at and the first heartbeat. */
export async function markRunning(db: Db, backupId: string): Promise<BackupRow> {
  checkUuid("backupId", backupId);
  const { rows } = await db.query(
    `UPDATE backup_management SET backup_status = 'running', started_at = now(), heartbeat_at = now()
     WHERE backup_id = $1 AND backup_status = 'pending' RETURNING ${BACKUP_COLS}`,
    [backupId],
  );
  return rows[0] ? camel<BackupRow>(rows[0]) : notInState(db, backupId, "pending", "start");
}

/**
 * Tells the catalog this run is alive. Returns false when the row is no longer running (for
 * example reconciled as dead): the caller should stop, its result would be refused anyway.
 */
export async function heartbeat(db: Db, backupId: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE backup_management SET heartbeat_at = now() WHERE backup_id = $1 AND backup_status = 'running'`,
    [backupId],
  );
  return rowCount === 1;
}

export interface ArtifactInput {
  /** base, manifest, wal, dump, rdb, restic, ... */
  role: string;
  objectKey: string;
  versionId?: string | null;
  /** SHA-256 of the stored object (what verify and restore re-check). */
  sha256: string;
  /** Stored bytes. */
  sizeBytes: number;
  /** Bytes before compression and encryption, when known. */
  rawSize?: number | null;
  metadata?: Record<string, unknown>;
}

/** Records objects stored so far by a running backup (completeBackup can add the rest). */
export async function addArtifacts(db: Db, backupId: string, artifacts: ArtifactInput[]): Promise<void> {
  checkUuid("backupId", backupId);
  checkArtifacts(artifacts);
  const { rows } = await db.query(
    `WITH b AS (SELECT backup_id FROM backup_management WHERE backup_id = $1 AND backup_status = 'running' FOR UPDATE),
          a AS (${INSERT_ARTIFACTS("b", "$2")} RETURNING 1)
     SELECT (SELECT count(*) FROM b)::int AS found`,
    [backupId, artifactsJson(artifacts)],
  );
  if (rows[0]!.found !== 1) await notInState(db, backupId, "running", "add artifacts to");
}

export interface CompleteBackupInput {
  /** Bytes the tool read (before compression and encryption). */
  rawSize?: number | null;
  /** Bytes stored. The compression ratio is derived from these two. */
  storedSize: number;
  artifacts: ArtifactInput[];
  recoveryPointStart?: Date;
  /** The newest point in time this backup restores to. */
  recoveryPointEnd: Date;
  timeline?: number;
  startLsn?: string;
  endLsn?: string;
  /** SHA-256 of the primary artifact; default: the only artifact's, when there is one. */
  checksum?: string;
  tool?: string;
  toolVersion?: string;
  encryptionKeyId?: string;
  location?: { bucket?: string; prefix?: string; region?: string };
  retentionUntil?: Date;
  /** Merged into the row's metadata. */
  metadata?: Record<string, unknown>;
}

export const LSN_RE = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i;

/**
 * running -> completed, with the measured facts and every stored object, in one statement: either
 * the row is completed with all its artifacts, or nothing changed.
 */
export async function completeBackup(db: Db, backupId: string, r: CompleteBackupInput): Promise<BackupRow> {
  checkUuid("backupId", backupId);
  checkBytes("storedSize", r.storedSize);
  if (r.storedSize === undefined || r.storedSize === null) throw new CatalogError("storedSize is required: the bytes written to the object store.");
  checkBytes("rawSize", r.rawSize);
  checkDate("recoveryPointStart", r.recoveryPointStart);
  checkDate("recoveryPointEnd", r.recoveryPointEnd);
  if (!r.recoveryPointEnd) throw new CatalogError("recoveryPointEnd is required: the newest point in time this backup restores to.");
  checkArtifacts(r.artifacts);
  for (const [k, v] of [["startLsn", r.startLsn], ["endLsn", r.endLsn]] as const) {
    if (v !== undefined && !LSN_RE.test(v)) throw new CatalogError(`${k} '${v}' is not a PostgreSQL LSN: expected the X/Y hex form, e.g. 0/3000028.`);
  }
  const checksum = r.checksum ?? (r.artifacts.length === 1 ? r.artifacts[0]!.sha256 : undefined);
  if (checksum !== undefined) checkSha256("checksum", checksum);
  const { rows } = await db.query(
    `WITH b AS (
       UPDATE backup_management SET
         backup_status = 'completed', completed_at = now(), heartbeat_at = now(),
         raw_size = $2, backup_size = $3,
         recovery_point_start = coalesce($4, recovery_point_start), recovery_point_end = $5,
         timeline = coalesce($6, timeline), start_lsn = coalesce($7::pg_lsn, start_lsn), end_lsn = coalesce($8::pg_lsn, end_lsn),
         checksum = coalesce($9, checksum), tool = coalesce($10, tool), tool_version = coalesce($11, tool_version),
         encryption_key_id = coalesce($12, encryption_key_id),
         storage_bucket = coalesce($13, storage_bucket), storage_prefix = coalesce($14, storage_prefix),
         storage_region = coalesce($15, storage_region), retention_until = coalesce($16, retention_until),
         metadata = metadata || $17::jsonb
       WHERE backup_id = $1 AND backup_status = 'running'
       RETURNING *),
     a AS (${INSERT_ARTIFACTS("b", "$18")} RETURNING 1)
     SELECT ${BACKUP_COLS}, (SELECT count(*) FROM a)::int AS n_artifacts FROM b`,
    [
      backupId, r.rawSize ?? null, r.storedSize, r.recoveryPointStart ?? null, r.recoveryPointEnd,
      r.timeline ?? null, r.startLsn ?? null, r.endLsn ?? null, checksum ?? null, r.tool ?? null,
      r.toolVersion ?? null, r.encryptionKeyId ?? null, r.location?.bucket ?? null, r.location?.prefix ?? null,
      r.location?.region ?? null, r.retentionUntil ?? null, JSON.stringify(r.metadata ?? {}), artifactsJson(r.artifacts),
    ],
  );
  if (!rows[0]) return notInState(db, backupId, "running", "complete");
  const { nArtifacts: _n, ...row } = camel<BackupRow & { nArtifacts: number }>(rows[0]);
  return row;
}

/**
 * pending|running -> failed with the reason. Idempotent for a row already failed (e.g. a
 * reconciled one): the first recorded reason is kept.
 */
export async function failBackup(db: Db, backupId: string, error: string | Error): Promise<BackupRow> {
  checkUuid("backupId", backupId);
  const message = (typeof error === "string" ? error : error.message || String(error)).slice(0, 8000) || "unknown error";
  const { rows } = await db.query(
    `UPDATE backup_management SET backup_status = 'failed', failed_at = now(), error_message = $2
     WHERE backup_id = $1 AND backup_status IN ('pending', 'running') RETURNING ${BACKUP_COLS}`,
    [backupId, message],
  );
  if (rows[0]) return camel<BackupRow>(rows[0]);
  const row = await statusOf(db, backupId);
  if (row?.backupStatus === "failed") return row;
  return notInState(db, backupId, "pending or running", "fail");
}

export interface ReconcileOptions {
  /** A run counts as dead when its last heartbeat (or start) is older than this. @default 900 */
  staleAfterSeconds?: number;
  service?: string;
  tenantId?: string;
  /** Never reconcile the caller's own run. */
  exceptRunToken?: string;
  /** Who is reconciling (goes into the reason). @default this host and pid */
  by?: string;
}

/**
 * Turns rows left `pending`/`running` by an agent that died into `failed`, with a reason naming
 * the dead run. An agent holding its service's lock can pass `staleAfterSeconds: 0` for its
 * service: no other live run can exist, so every in-flight row is a leftover.
 */
export async function reconcileStaleRuns(db: Db, opts: ReconcileOptions = {}): Promise<BackupRow[]> {
  const stale = opts.staleAfterSeconds ?? 900;
  if (!Number.isFinite(stale) || stale < 0) throw new CatalogError(`staleAfterSeconds must be >= 0; got ${stale}.`);
  if (opts.service) checkService(opts.service);
  if (opts.tenantId) checkUuid("tenantId", opts.tenantId);
  const by = opts.by ?? `${hostname()} pid ${process.pid}`;
  const { rows } = await db.query(
    `UPDATE backup_management SET
       backup_status = 'failed', failed_at = now(),
       error_message = format('reconciled by %s: the agent running it (host %s, pid %s, run %s) stopped reporting; last sign of life %s',
                              $5::text, coalesce(run_host, '?'), coalesce(run_pid::text, '?'), coalesce(run_token, '?'),
                              coalesce(heartbeat_at, started_at, created_at))
     WHERE backup_status IN ('pending', 'running')
       AND coalesce(heartbeat_at, started_at, created_at) <= now() - make_interval(secs => $1)
       AND ($2::text IS NULL OR service_name = $2)
       AND ($3::uuid IS NULL OR tenant_id = $3)
       AND ($4::text IS NULL OR run_token IS DISTINCT FROM $4)
     RETURNING ${BACKUP_COLS}`,
    [stale, opts.service ?? null, opts.tenantId ?? null, opts.exceptRunToken ?? null, by],
  );
  return rows.map((r) => camel<BackupRow>(r));
}

export interface VerificationInput {
  status: VerifyStatus;
  /** What was checked (SHA-256 per artifact, the tool's own check, restore test...). */
  details?: Record<string, unknown>;
  verifiedAt?: Date;
}

/** Records a verify of a completed backup; the health trigger updates last_verified_backup. */
export async function recordVerification(db: Db, backupId: string, v: VerificationInput): Promise<BackupRow> {
  checkUuid("backupId", backupId);
  if (v.status !== "passed" && v.status !== "failed") throw new CatalogError(`verify status must be 'passed' or 'failed'; got '${String(v.status)}'.`);
  checkDate("verifiedAt", v.verifiedAt);
  const { rows } = await db.query(
    `UPDATE backup_management SET verify_status = $2, verified_at = coalesce($3, now()), verify_details = $4::jsonb
     WHERE backup_id = $1 AND backup_status = 'completed' RETURNING ${BACKUP_COLS}`,
    [backupId, v.status, v.verifiedAt ?? null, JSON.stringify(v.details ?? {})],
  );
  return rows[0] ? camel<BackupRow>(rows[0]) : notInState(db, backupId, "completed", "record a verification of");
}

/** completed|failed -> expired, once prune has removed its objects. */
export async function expireBackup(db: Db, backupId: string): Promise<BackupRow> {
  checkUuid("backupId", backupId);
  const { rows } = await db.query(
    `UPDATE backup_management SET backup_status = 'expired', expired_at = now()
     WHERE backup_id = $1 AND backup_status IN ('completed', 'failed') RETURNING ${BACKUP_COLS}`,
    [backupId],
  );
  return rows[0] ? camel<BackupRow>(rows[0]) : notInState(db, backupId, "completed or failed", "expire");
}

export async function getBackup(db: Db, backupId: string): Promise<BackupRow | null> {
  checkUuid("backupId", backupId);
  return statusOf(db, backupId);
}

export async function listArtifacts(db: Db, backupId: string): Promise<ArtifactRow[]> {
  checkUuid("backupId", backupId);
  const { rows } = await db.query(`SELECT ${ARTIFACT_COLS} FROM backup_artifact WHERE backup_id = $1 ORDER BY created_at, object_key`, [backupId]);
  return rows.map((r) => camel<ArtifactRow>(r));
}

export interface ListBackupsOptions {
  service?: string;
  tenantId?: string;
  status?: BackupStatus | BackupStatus[];
  type?: BackupType | BackupType[];
  /** Only rows created before this time. */
  before?: Date;
  /** @default 100 */
  limit?: number;
}

/** Newest first. */
export async function listBackups(db: Db, opts: ListBackupsOptions = {}): Promise<BackupRow[]> {
  const status = opts.status === undefined ? null : ([] as string[]).concat(opts.status);
  const type = opts.type === undefined ? null : ([] as string[]).concat(opts.type);
  checkDate("before", opts.before);
  const { rows } = await db.query(
    `SELECT ${BACKUP_COLS} FROM backup_management
     WHERE ($1::text IS NULL OR service_name = $1) AND ($2::uuid IS NULL OR tenant_id = $2)
       AND ($3::text[] IS NULL OR backup_status = ANY($3)) AND ($4::text[] IS NULL OR backup_type = ANY($4))
       AND ($5::timestamptz IS NULL OR created_at < $5)
     ORDER BY created_at DESC, backup_id LIMIT $6`,
    [opts.service ?? null, opts.tenantId ?? null, status, type, opts.before ?? null, opts.limit ?? 100],
  );
  return rows.map((r) => camel<BackupRow>(r));
}

export interface LatestGoodOptions {
  tenantId?: string;
  /** @default any type except wal */
  type?: BackupType | BackupType[];
  /** Only backups whose recovery point is at or before this time. */
  before?: Date;
  /** Only backups a verify has passed. */
  verifiedOnly?: boolean;
}

/** The completed backup with the newest recovery point (not failed by a verify), or null. */
export async function latestGoodBackup(db: Db, service: string, opts: LatestGoodOptions = {}): Promise<BackupRow | null> {
  checkService(service);
  checkDate("before", opts.before);
  const types = opts.type === undefined ? BACKUP_TYPES.filter((t) => t !== "wal") : ([] as BackupType[]).concat(opts.type);
  const { rows } = await db.query(
    `SELECT ${BACKUP_COLS} FROM backup_management
     WHERE service_name = $1 AND backup_status = 'completed' AND backup_type = ANY($2)
       AND verify_status IS DISTINCT FROM 'failed' AND (NOT $3 OR verify_status = 'passed')
       AND ($4::timestamptz IS NULL OR recovery_point_end <= $4)
       AND ($5::uuid IS NULL OR tenant_id = $5)
     ORDER BY recovery_point_end DESC, completed_at DESC LIMIT 1`,
    [service, types, opts.verifiedOnly ?? false, opts.before ?? null, opts.tenantId ?? null],
  );
  return rows[0] ? camel<BackupRow>(rows[0]) : null;
}

/** The newest completed backup of a service that carries logical dumps (artifacts with role 'dump') and no verify failed, or null. */
export async function latestLogicalDump(db: Db, service: string, opts: { tenantId?: string } = {}): Promise<{ backupId: string; createdAt: Date } | null> {
  checkService(service);
  const { rows } = await db.query<{ backup_id: string; created_at: Date }>(
    `SELECT b.backup_id, b.created_at FROM backup_management b
     WHERE b.service_name = $1 AND b.backup_status = 'completed' AND ($2::uuid IS NULL OR b.tenant_id = $2)
       AND b.verify_status IS DISTINCT FROM 'failed'
       AND EXISTS (SELECT 1 FROM backup_artifact a WHERE a.backup_id = b.backup_id AND a.role = 'dump')
     ORDER BY b.created_at DESC LIMIT 1`,
    [service, opts.tenantId ?? null],
  );
  return rows[0] ? { backupId: rows[0].backup_id, createdAt: rows[0].created_at } : null;
}

/** Completed backups (not WAL) no verify has judged yet, newest recovery point first. */
export async function unverifiedBackups(db: Db, service: string, opts: { tenantId?: string; limit?: number } = {}): Promise<BackupRow[]> {
  checkService(service);
  const { rows } = await db.query(
    `SELECT ${BACKUP_COLS} FROM backup_management
     WHERE service_name = $1 AND backup_status = 'completed' AND backup_type <> 'wal' AND verify_status IS NULL
       AND ($2::uuid IS NULL OR tenant_id = $2)
     ORDER BY recovery_point_end DESC, completed_at DESC LIMIT $3`,
    [service, opts.tenantId ?? null, opts.limit ?? 5],
  );
  return rows.map((r) => camel<BackupRow>(r));
}
