/**
 * Typed access to the backup catalog, shared by the agent, the drill and the CLI. Plain SQL over
 * `pg` (no ORM); every function takes a `pg.Pool` or a connected `pg.Client`.
 *
 * This file runs inside the agent image: it must never import @pulumi.
 *
 * Multi-row changes are single SQL statements (data-modifying CTEs), so they are atomic without
 * the caller managing a transaction, and safe to call inside one.
 *
 * Conventions:
 * - Sizes are bytes (JS numbers; exact up to 8 PiB). Times are Dates. Durations are seconds.
 * - "Good" backup: completed and not failed by a verify. "Verified": verify_status = 'passed'.
 * - parent_backup_id means "a restore of this backup also needs the parent" (a delta chain).
 *   Self-contained incrementals (restic snapshots) leave it NULL and keep the tool's parent
 *   snapshot id in metadata.
 * - A physical PostgreSQL base whose WAL is inside the base (pg_basebackup -X fetch/stream) needs
 *   archived WAL from the segment holding its end LSN on; set metadata.walIncluded = false for a
 *   base taken with -X none, whose plan then starts at the segment holding its start LSN.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type pg from "pg";
import type { Engine } from "../contract/index.js";

/** A pg.Pool or a connected pg.Client / PoolClient. */
export interface Db {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

export const BACKUP_TYPES = ["full", "incremental", "differential", "logical", "wal"] as const;
export type BackupType = (typeof BACKUP_TYPES)[number];
export const BACKUP_STATUSES = ["pending", "running", "completed", "failed", "expired"] as const;
export type BackupStatus = (typeof BACKUP_STATUSES)[number];
export type VerifyStatus = "passed" | "failed";
export type RecoveryStatus = "initiated" | "running" | "completed" | "failed";
/** Backup types a restore can start from (a logical dump restores one database, not a service). */
export const RESTORABLE_BASE_TYPES: readonly BackupType[] = ["full", "incremental", "differential"];

/** The default PostgreSQL WAL segment size (initdb --wal-segsize); plans assume it unless told. */
export const DEFAULT_WAL_SEGMENT_SIZE = 16 * 1024 * 1024;

export class CatalogError extends Error {
  override name = "CatalogError";
}

// ---------------------------------------------------------------------------------------------
// Row types

export interface BackupRow {
  backupId: string;
  tenantId: string;
  serviceName: string;
  engine: Engine | null;
  backupType: BackupType;
  backupStatus: BackupStatus;
  storageBucket: string;
  storagePrefix: string;
  storageRegion: string | null;
  /** s3://bucket/prefix (derived). */
  backupLocation: string;
  rawSize: number | null;
  backupSize: number | null;
  /** backupSize / rawSize, measured; null when either is unknown. */
  compressionRatio: number | null;
  startedAt: Date | null;
  completedAt: Date | null;
  failedAt: Date | null;
  durationSeconds: number | null;
  recoveryPointStart: Date | null;
  recoveryPointEnd: Date | null;
  timeline: number | null;
  startLsn: string | null;
  endLsn: string | null;
  checksum: string | null;
  tool: string | null;
  toolVersion: string | null;
  encryptionKeyId: string | null;
  parentBackupId: string | null;
  runHost: string | null;
  runPid: number | null;
  runToken: string | null;
  heartbeatAt: Date | null;
  errorMessage: string | null;
  verifiedAt: Date | null;
  verifyStatus: VerifyStatus | null;
  verifyDetails: unknown;
  retentionUntil: Date | null;
  expiredAt: Date | null;
  metadata: Record<string, unknown>;
  createdAt: Date;
  updatedAt: Date;
}

export interface ArtifactRow {
  artifactId: string;
  backupId: string;
  role: string;
  objectKey: string;
  versionId: string | null;
  sha256: string;
  sizeBytes: number;
  rawSize: number | null;
  metadata: Record<string, unknown>;
  createdAt: Date;
}

export interface WalSegmentRow {
  segmentId: string;
  tenantId: string;
  serviceName: string;
  timeline: number;
  segmentName: string;
  startLsn: string | null;
  endLsn: string | null;
  objectKey: string;
  versionId: string | null;
  sha256: string;
  sizeBytes: number;
  rawSize: number | null;
  coversUntil: Date;
  encryptionKeyId: string | null;
  uploadedAt: Date;
  expiredAt: Date | null;
}

export interface RecoveryLogRow {
  recoveryId: string;
  tenantId: string;
  incidentType: string;
  affectedServices: string[] | null;
  recoveryProcedure: string;
  recoveryStatus: RecoveryStatus;
  recoveryTarget: string | null;
  recoveryPoint: Date | null;
  sourceBackupIds: string[] | null;
  rtoTargetSeconds: number | null;
  rpoTargetSeconds: number | null;
  actualRecoverySeconds: number | null;
  dataLossSeconds: number | null;
  dataLossMinutes: number | null;
  rtoMet: boolean | null;
  rpoMet: boolean | null;
  phaseTimings: Record<string, number>;
  initiatedBy: string | null;
  initiatedAt: Date;
  completedAt: Date | null;
  recoveryNotes: string | null;
  errorMessage: string | null;
  lessonsLearned: string | null;
  metadata: Record<string, unknown>;
  createdAt: Date;
  updatedAt: Date;
}

export interface BackupMetricsRow {
  serviceName: string;
  totalBackups: number;
  successfulBackups: number;
  failedBackups: number;
  /** Percent of finished runs that succeeded; null when none finished. */
  successRate: number | null;
  avgBackupSizeGb: number | null;
  lastBackupAgeSeconds: number | null;
  storageUsageGb: number;
  runningBackups: number;
  avgBackupSizeBytes: number | null;
  storageUsageBytes: number;
  lastVerifiedBackupAgeSeconds: number | null;
}

export type EffectiveHealth = "healthy" | "degraded" | "unverified" | "stale" | "warning" | "critical";

export interface HealthRow {
  tenantId: string;
  serviceName: string;
  backupFrequencySeconds: number;
  lastSuccessfulBackup: Date | null;
  lastFailedBackup: Date | null;
  lastVerifiedBackup: Date | null;
  backupStreak: number;
  failureCount: number;
  verifyFailureCount: number;
  /** The seed's completion-based status. */
  healthStatus: "healthy" | "degraded" | "warning" | "critical";
  /** What to alert on: also considers verification and staleness (see migration 002). */
  effectiveStatus: EffectiveHealth;
  storageUsageGb: number | null;
  storageQuotaGb: number | null;
  lastVerifiedAgeSeconds: number | null;
  /** When a recovery (drill or real) of this service last completed. */
  lastRecoveryTest: Date | null;
  /** That recovery's measured duration. */
  estimatedFullRecoverySeconds: number | null;
  alertsEnabled: boolean;
  /** As the service's sidecar last reported them when it started (null before it has). */
  rpoTargetSeconds: number | null;
  rtoTargetSeconds: number | null;
  scheduleFull: string | null;
  scheduleIncremental: string | null;
  settingsReportedAt: Date | null;
  updatedAt: Date;
}

// ---------------------------------------------------------------------------------------------
// Column lists: casts make pg hand back JS numbers and strings instead of numeric strings and
// interval objects, so rows map by renaming only.

const BACKUP_COLS = `backup_id, tenant_id, service_name, engine, backup_type, backup_status,
  storage_bucket, storage_prefix, storage_region, backup_location,
  raw_size::float8 AS raw_size, backup_size::float8 AS backup_size, compression_ratio::float8 AS compression_ratio,
  started_at, completed_at, failed_at, extract(epoch FROM duration)::float8 AS duration_seconds,
  recovery_point_start, recovery_point_end, timeline, start_lsn::text AS start_lsn, end_lsn::text AS end_lsn,
  checksum, tool, tool_version, encryption_key_id, parent_backup_id,
  run_host, run_pid, run_token, heartbeat_at, error_message,
  verified_at, verify_status, verify_details, retention_until, expired_at, metadata, created_at, updated_at`;

const ARTIFACT_COLS = `artifact_id, backup_id, role, object_key, version_id, sha256,
  size_bytes::float8 AS size_bytes, raw_size::float8 AS raw_size, metadata, created_at`;

const WAL_COLS = `segment_id, tenant_id, service_name, timeline, segment_name,
  start_lsn::text AS start_lsn, end_lsn::text AS end_lsn, object_key, version_id, sha256,
  size_bytes::float8 AS size_bytes, raw_size::float8 AS raw_size, covers_until, encryption_key_id,
  uploaded_at, expired_at`;

const RECOVERY_COLS = `recovery_id, tenant_id, incident_type, affected_services, recovery_procedure,
  recovery_status, recovery_target, recovery_point, source_backup_ids,
  extract(epoch FROM rto_target)::float8 AS rto_target_seconds,
  extract(epoch FROM rpo_target)::float8 AS rpo_target_seconds,
  extract(epoch FROM actual_recovery_time)::float8 AS actual_recovery_seconds,
  data_loss_seconds::float8 AS data_loss_seconds, data_loss_minutes, rto_met, rpo_met, phase_timings,
  initiated_by, initiated_at, completed_at, recovery_notes, error_message, lessons_learned, metadata,
  created_at, updated_at`;

function camel<T>(row: Record<string, unknown>): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) out[k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())] = v;
  return out as T;
}

// ---------------------------------------------------------------------------------------------
// Input validation: errors say what is wrong and how to fix it, before the database sees it.

const SHA256_RE = /^[0-9a-f]{64}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SERVICE_RE = /^[a-z0-9][a-z0-9_.-]*$/;

function checkSha256(what: string, v: string): void {
  if (!SHA256_RE.test(v)) {
    throw new CatalogError(`${what} must be a SHA-256 digest as 64 lowercase hex characters; got '${v}'. Pass digest('hex') of the stored bytes.`);
  }
}
function checkUuid(what: string, v: string): void {
  if (!UUID_RE.test(v)) throw new CatalogError(`${what} must be a UUID; got '${v}'.`);
}
function checkService(v: string): void {
  if (!SERVICE_RE.test(v) || v.length > 100) {
    throw new CatalogError(`service name '${v}' is invalid: use lowercase letters, digits, '.', '_' or '-' (at most 100 characters), starting with a letter or digit.`);
  }
}
function checkBytes(what: string, v: number | undefined | null): void {
  if (v === undefined || v === null) return;
  if (!Number.isSafeInteger(v) || v < 0) throw new CatalogError(`${what} must be a whole number of bytes >= 0; got ${v}.`);
}
function checkDate(what: string, v: Date | undefined | null): void {
  if (v === undefined || v === null) return;
  if (!(v instanceof Date) || Number.isNaN(v.getTime())) throw new CatalogError(`${what} must be a valid Date; got ${String(v)}.`);
}

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

async function statusOf(db: Db, backupId: string): Promise<BackupRow | null> {
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

function checkArtifacts(artifacts: ArtifactInput[]): void {
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

function artifactsJson(artifacts: ArtifactInput[]): string {
  return JSON.stringify(
    artifacts.map((a) => ({
      role: a.role, object_key: a.objectKey, version_id: a.versionId ?? null, sha256: a.sha256,
      size_bytes: a.sizeBytes, raw_size: a.rawSize ?? null, metadata: a.metadata ?? {},
    })),
  );
}

/** INSERT of the artifacts in JSON parameter `param` for the backup id that `from` yields as `b.backup_id`. */
const INSERT_ARTIFACTS = (from: string, param: string) => `
  INSERT INTO backup_artifact (backup_id, role, object_key, version_id, sha256, size_bytes, raw_size, metadata)
  SELECT b.backup_id, x.role, x.object_key, x.version_id, x.sha256, x.size_bytes, x.raw_size, coalesce(x.metadata, '{}'::jsonb)
  FROM ${from}, jsonb_to_recordset(${param}::jsonb)
       AS x(role text, object_key text, version_id text, sha256 text, size_bytes bigint, raw_size bigint, metadata jsonb)`;

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

const LSN_RE = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i;

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

// ---------------------------------------------------------------------------------------------
// WAL archive

export interface WalSegmentInput {
  tenantId: string;
  service: string;
  timeline: number;
  /** File name as PostgreSQL writes it: 24 hex digits (optionally .partial) or TTTTTTTT.history. */
  segmentName: string;
  objectKey: string;
  versionId?: string | null;
  sha256: string;
  /** Stored bytes. */
  sizeBytes: number;
  rawSize?: number | null;
  /** Newest point in time replaying this segment reaches. */
  coversUntil: Date;
  startLsn?: string;
  endLsn?: string;
  encryptionKeyId?: string;
}

/**
 * Records an uploaded WAL segment. Uploading the same segment again with the same content is a
 * no-op (inserted: false). A `.partial` segment is re-recorded as it grows. A completed segment
 * that arrives with different content is refused: two writers or a forked timeline, which must be
 * looked at, not papered over.
 */
export async function recordWalSegment(db: Db, s: WalSegmentInput): Promise<{ segment: WalSegmentRow; inserted: boolean }> {
  checkUuid("tenantId", s.tenantId);
  checkService(s.service);
  if (!/^([0-9A-F]{24}(\.partial)?|[0-9A-F]{8}\.history)$/.test(s.segmentName)) {
    throw new CatalogError(`WAL file name '${s.segmentName}' is invalid: expected 24 uppercase hex digits (optionally .partial) or TTTTTTTT.history, as in pg_wal.`);
  }
  if (!Number.isInteger(s.timeline) || s.timeline < 1) throw new CatalogError(`timeline must be an integer >= 1; got ${s.timeline}.`);
  checkSha256(`sha256 of WAL segment ${s.segmentName}`, s.sha256);
  checkBytes("sizeBytes", s.sizeBytes);
  checkBytes("rawSize", s.rawSize);
  checkDate("coversUntil", s.coversUntil);
  if (!s.coversUntil) throw new CatalogError("coversUntil is required: the newest point in time this segment lets a restore reach.");
  const { rows } = await db.query(
    `INSERT INTO wal_segment AS w (tenant_id, service_name, timeline, segment_name, object_key, version_id, sha256,
                                   size_bytes, raw_size, covers_until, start_lsn, end_lsn, encryption_key_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::pg_lsn, $12::pg_lsn, $13)
     ON CONFLICT ON CONSTRAINT wal_segment_once DO UPDATE SET
       object_key = EXCLUDED.object_key, version_id = EXCLUDED.version_id, sha256 = EXCLUDED.sha256,
       size_bytes = EXCLUDED.size_bytes, raw_size = EXCLUDED.raw_size,
       covers_until = greatest(w.covers_until, EXCLUDED.covers_until),
       start_lsn = coalesce(EXCLUDED.start_lsn, w.start_lsn), end_lsn = coalesce(EXCLUDED.end_lsn, w.end_lsn),
       encryption_key_id = coalesce(EXCLUDED.encryption_key_id, w.encryption_key_id),
       uploaded_at = CASE WHEN w.sha256 = EXCLUDED.sha256 THEN w.uploaded_at ELSE now() END,
       expired_at = NULL
     WHERE w.sha256 = EXCLUDED.sha256 OR w.segment_name LIKE '%.partial'
     RETURNING ${WAL_COLS}, (xmax = 0) AS inserted`,
    [
      s.tenantId, s.service, s.timeline, s.segmentName, s.objectKey, s.versionId ?? null, s.sha256, s.sizeBytes,
      s.rawSize ?? null, s.coversUntil, s.startLsn ?? null, s.endLsn ?? null, s.encryptionKeyId ?? null,
    ],
  );
  if (!rows[0]) {
    const { rows: prev } = await db.query(
      `SELECT sha256, object_key FROM wal_segment WHERE tenant_id = $1 AND service_name = $2 AND timeline = $3 AND segment_name = $4`,
      [s.tenantId, s.service, s.timeline, s.segmentName],
    );
    throw new CatalogError(
      `WAL segment ${s.segmentName} (timeline ${s.timeline}) of ${s.service} is already archived at '${prev[0]?.object_key}' with SHA-256 ${prev[0]?.sha256}, ` +
        `and this upload has ${s.sha256}. Refusing to replace archived WAL: check for a second agent streaming this service or a promoted replica on the same timeline.`,
    );
  }
  const { inserted, ...seg } = camel<WalSegmentRow & { inserted: boolean }>(rows[0]);
  return { segment: seg, inserted };
}

/** Marks archived WAL as deleted by prune, so plans never count on it. */
export async function expireWalSegments(db: Db, tenantId: string, service: string, segmentIds: string[]): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE wal_segment SET expired_at = now() WHERE tenant_id = $1 AND service_name = $2 AND segment_id = ANY($3::uuid[]) AND expired_at IS NULL`,
    [tenantId, service, segmentIds],
  );
  return rowCount ?? 0;
}

export async function listWalSegments(
  db: Db,
  service: string,
  opts: { tenantId?: string; timeline?: number; includeExpired?: boolean } = {},
): Promise<WalSegmentRow[]> {
  checkService(service);
  const { rows } = await db.query(
    `SELECT ${WAL_COLS} FROM wal_segment
     WHERE service_name = $1 AND ($2::uuid IS NULL OR tenant_id = $2) AND ($3::int IS NULL OR timeline = $3)
       AND ($4 OR expired_at IS NULL)
     ORDER BY timeline, segment_name`,
    [service, opts.tenantId ?? null, opts.timeline ?? null, opts.includeExpired ?? false],
  );
  return rows.map((r) => camel<WalSegmentRow>(r));
}

/** Segment number of an LSN ('X/Y'). */
export function lsnToSegmentNumber(lsn: string, segmentSize = DEFAULT_WAL_SEGMENT_SIZE): bigint {
  if (!LSN_RE.test(lsn)) throw new CatalogError(`'${lsn}' is not a PostgreSQL LSN (X/Y hex).`);
  const [hi, lo] = lsn.split("/") as [string, string];
  return ((BigInt("0x" + hi) << 32n) | BigInt("0x" + lo)) / BigInt(segmentSize);
}

/** WAL file name (as in pg_wal) of a timeline and segment number. */
export function walFileName(timeline: number, segno: bigint, segmentSize = DEFAULT_WAL_SEGMENT_SIZE): string {
  const perId = 0x100000000n / BigInt(segmentSize);
  const h = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, "0");
  return h(timeline) + h(segno / perId) + h(segno % perId);
}

/** Segment number of a WAL file name (the .partial suffix ignored). */
export function walSegmentNumber(name: string, segmentSize = DEFAULT_WAL_SEGMENT_SIZE): bigint {
  const perId = 0x100000000n / BigInt(segmentSize);
  return BigInt("0x" + name.slice(8, 16)) * perId + BigInt("0x" + name.slice(16, 24));
}

// ---------------------------------------------------------------------------------------------
// Recovery plans and RPO

export interface RecoveryPlan {
  service: string;
  /** What was asked for. */
  target: Date | "latest";
  /** The backup to restore first (a full, or the newest member of a delta chain). */
  base: BackupRow;
  /** Full backup first, then each delta up to `base` (just [base] without a chain). */
  chain: BackupRow[];
  /** Stored objects of every backup in the chain, in chain order. */
  artifacts: ArtifactRow[];
  /** Archived WAL to replay after the base, in order (empty for engines without WAL). */
  wal: WalSegmentRow[];
  /** Timeline history files the restore needs for its timeline. */
  history: WalSegmentRow[];
  /**
   * The point the restore will reach: the target time itself, or (for latest) the newest point
   * covered by the base and the contiguous WAL after it.
   */
  recoveryPoint: Date;
  /** For PostgreSQL: recovery_target_time to set (undefined means replay all of `wal`). */
  recoveryTargetTime?: Date;
}

export interface RecoveryPlanOptions {
  tenantId?: string;
  /** Only start from verified bases. */
  verifiedOnly?: boolean;
  /** @default full, incremental, differential */
  baseTypes?: BackupType[];
  walSegmentSize?: number;
}

/**
 * The base backup (with its delta chain) and the WAL needed to reach `target` (or the newest
 * recoverable point). Engines without WAL restore the newest snapshot at or before the target.
 * Throws a CatalogError saying what is covered when the target is in the future, before the oldest
 * good backup, or (with WAL) beyond the newest covered point or behind a gap in the WAL archive.
 */
export async function recoveryPlan(
  db: Db,
  service: string,
  target: Date | "latest" = "latest",
  opts: RecoveryPlanOptions = {},
): Promise<RecoveryPlan> {
  checkService(service);
  if (target !== "latest") checkDate("target", target);
  const at = target === "latest" ? undefined : target;
  const baseTypes = opts.baseTypes ?? [...RESTORABLE_BASE_TYPES];
  const segSize = opts.walSegmentSize ?? DEFAULT_WAL_SEGMENT_SIZE;
  const which = opts.verifiedOnly ? "verified " : "";

  if (at) {
    // The catalog's clock, not this host's: the two may differ, and the catalog stamps the backups.
    const now = (await db.query<{ now: Date }>("SELECT now() AS now")).rows[0]!.now;
    if (at.getTime() > now.getTime()) {
      throw new CatalogError(
        `target ${at.toISOString()} is in the future (the catalog's clock reads ${now.toISOString()}): nothing can be restored to a moment that has not happened. ` +
          `Choose a time at or before now, or 'latest'.`,
      );
    }
  }
  const base = await latestGoodBackup(db, service, { tenantId: opts.tenantId, type: baseTypes, before: at, verifiedOnly: opts.verifiedOnly });
  if (!base) {
    const oldest = await db.query<{ rp: Date; n: string }>(
      `SELECT min(recovery_point_end) AS rp, count(*) AS n FROM backup_management
       WHERE service_name = $1 AND backup_status = 'completed' AND backup_type = ANY($2)
         AND verify_status IS DISTINCT FROM 'failed' AND (NOT $3 OR verify_status = 'passed')
         AND ($4::uuid IS NULL OR tenant_id = $4)`,
      [service, baseTypes, opts.verifiedOnly ?? false, opts.tenantId ?? null],
    );
    const o = oldest.rows[0]!;
    if (Number(o.n) === 0) {
      throw new CatalogError(`no ${which}completed ${baseTypes.join("/")} backup of '${service}' in the catalog: nothing to restore from. Run a full backup${opts.verifiedOnly ? " and verify it" : ""} first.`);
    }
    throw new CatalogError(
      `target ${at!.toISOString()} is before the oldest good ${which}backup of '${service}' (its recovery point is ${o.rp.toISOString()}): ` +
        `choose a time at or after ${o.rp.toISOString()}, or 'latest'.`,
    );
  }

  // The delta chain back to a full backup.
  const chain: BackupRow[] = [base];
  for (let cur = base; cur.parentBackupId; ) {
    const parent = await statusOf(db, cur.parentBackupId);
    if (!parent || parent.backupStatus !== "completed" || parent.verifyStatus === "failed") {
      throw new CatalogError(
        `backup ${cur.backupId} of '${service}' needs its parent ${cur.parentBackupId}, which is ${parent ? `${parent.backupStatus}${parent.verifyStatus === "failed" ? " and failed verification" : ""}` : "missing"}: ` +
          `the chain is broken. Restore from an earlier full backup (pass an earlier target) or take a new full backup.`,
      );
    }
    if (chain.some((b) => b.backupId === parent.backupId)) throw new CatalogError(`backup chain of ${base.backupId} loops at ${parent.backupId}: the catalog is inconsistent.`);
    chain.unshift(parent);
    cur = parent;
  }
  const artRes = await db.query(
    `SELECT ${ARTIFACT_COLS} FROM backup_artifact WHERE backup_id = ANY($1::uuid[]) ORDER BY created_at, object_key`,
    [chain.map((b) => b.backupId)],
  );
  const arts = artRes.rows.map((r) => camel<ArtifactRow>(r));
  const artifacts = chain.flatMap((b) => arts.filter((a) => a.backupId === b.backupId));
  const baseEnd = base.recoveryPointEnd!;

  // Engines without WAL: the backup's own recovery point is all there is.
  const walStartLsn = base.metadata?.walIncluded === false ? base.startLsn : (base.endLsn ?? base.startLsn);
  const timeline = base.timeline ?? 1;
  const hasWal = walStartLsn
    ? (await db.query(`SELECT 1 FROM wal_segment WHERE service_name = $1 AND ($2::uuid IS NULL OR tenant_id = $2) AND expired_at IS NULL LIMIT 1`, [service, opts.tenantId ?? null])).rows.length > 0
    : false;
  if (!walStartLsn || !hasWal) {
    // A snapshot restores the state at its own recovery point: for a target after the newest
    // snapshot that is the newest one (the gap is data loss the report shows), as 'latest' would
    // give at that moment. Only a target still in the future is refused (checked above).
    return { service, target, base, chain, artifacts, wal: [], history: [], recoveryPoint: baseEnd };
  }

  const first = lsnToSegmentNumber(walStartLsn, segSize);
  // Only this timeline's segments from the base on (names of equal width sort in LSN order), and
  // the history files: a week of 60 s switches is 10k rows a plan need not read.
  const walRes = await db.query(
    `SELECT ${WAL_COLS} FROM wal_segment
     WHERE service_name = $1 AND ($2::uuid IS NULL OR tenant_id = $2) AND expired_at IS NULL
       AND ((timeline = $3 AND segment_name >= $4) OR segment_name LIKE '%.history')
     ORDER BY timeline, segment_name`,
    [service, opts.tenantId ?? null, timeline, walFileName(timeline, first, segSize)],
  );
  const all = walRes.rows.map((r) => camel<WalSegmentRow>(r));
  const history = all.filter((s) => s.segmentName.endsWith(".history") && parseInt(s.segmentName.slice(0, 8), 16) <= timeline);
  // A completed segment supersedes the .partial of the same name.
  const byNo = new Map<bigint, WalSegmentRow>();
  for (const s of all) {
    if (s.timeline !== timeline || s.segmentName.endsWith(".history")) continue;
    const no = walSegmentNumber(s.segmentName, segSize);
    const prev = byNo.get(no);
    if (!prev || prev.segmentName.endsWith(".partial")) byNo.set(no, s);
  }
  const mustReach = base.endLsn ? lsnToSegmentNumber(base.endLsn, segSize) : first;
  const wal: WalSegmentRow[] = [];
  let coveredUntil = baseEnd;
  for (let no = first; ; no++) {
    const seg = byNo.get(no);
    if (!seg) break;
    wal.push(seg);
    if (seg.coversUntil > coveredUntil) coveredUntil = seg.coversUntil;
    // A .partial is the newest piece there is; nothing after it can be contiguous.
    if (seg.segmentName.endsWith(".partial")) break;
    if (at && no >= mustReach && seg.coversUntil.getTime() >= at.getTime()) break;
  }
  const missing = walFileName(timeline, first + BigInt(wal.length), segSize);
  if (base.metadata?.walIncluded === false && (wal.length === 0 || first + BigInt(wal.length) <= mustReach)) {
    throw new CatalogError(
      `base ${base.backupId} of '${service}' was taken without its WAL and archived segment ${missing} is missing: it cannot be made consistent. Restore from another base.`,
    );
  }
  if (at && coveredUntil.getTime() < at.getTime()) {
    const gap = wal.length > 0 || byNo.size > 0 ? ` (archived WAL stops being contiguous before segment ${missing})` : "";
    throw new CatalogError(
      `target ${at.toISOString()} is beyond the newest covered point of '${service}': base ${base.backupId} plus archived WAL reach ${coveredUntil.toISOString()}${gap}. ` +
        `Choose a time at or before ${coveredUntil.toISOString()}, or 'latest'.`,
    );
  }
  return {
    service, target, base, chain, artifacts, wal, history,
    recoveryPoint: at ?? coveredUntil,
    ...(at ? { recoveryTargetTime: at } : {}),
  };
}

export interface ConsistentPlans {
  /** The one point in time every plan restores to (or, for engines without WAL, just before). */
  point: Date;
  plans: RecoveryPlan[];
}

/**
 * One recovery point across several services: for `latest`, the newest time every service can
 * reach (the minimum of their latest points); then each service's plan for that time. Services
 * with WAL restore to exactly that point; the others to their newest backup at or before it.
 */
export async function consistentRecoveryPlans(
  db: Db,
  services: string[],
  target: Date | "latest" = "latest",
  opts: RecoveryPlanOptions = {},
): Promise<ConsistentPlans> {
  if (services.length === 0) throw new CatalogError("no services given: name the services to recover together.");
  let point: Date;
  if (target === "latest") {
    const latest = await Promise.all(services.map((s) => recoveryPlan(db, s, "latest", opts)));
    point = new Date(Math.min(...latest.map((p) => p.recoveryPoint.getTime())));
  } else {
    point = target;
  }
  const plans: RecoveryPlan[] = [];
  for (const s of services) plans.push(await recoveryPlan(db, s, point, opts));
  return { point, plans };
}

/**
 * Seconds since the newest VERIFIED recovery point of a service, or null when it has none.
 * Defined as the recovery point `recoveryPlan(service, 'latest', { verifiedOnly: true })` reaches:
 * a verified base plus the contiguous archived WAL after it. WAL segments count as verified by the
 * SHA-256 recorded at upload (the agent hashes the bytes it stored); an unverified newer base does
 * not improve RPO until a verify passes.
 */
export async function rpoSeconds(db: Db, service: string, opts: { tenantId?: string; now?: Date } = {}): Promise<number | null> {
  let plan: RecoveryPlan;
  try {
    plan = await recoveryPlan(db, service, "latest", { tenantId: opts.tenantId, verifiedOnly: true });
  } catch (e) {
    if (e instanceof CatalogError && /^no verified completed/.test(e.message)) return null;
    throw e;
  }
  const now = opts.now ?? (await db.query<{ now: Date }>("SELECT now() AS now")).rows[0]!.now;
  return Math.max(0, (now.getTime() - plan.recoveryPoint.getTime()) / 1000);
}

// ---------------------------------------------------------------------------------------------
// Metrics and health

/** The seed's calculate_backup_metrics(tenant), with intervals as seconds. */
export async function backupMetrics(db: Db, tenantId: string): Promise<BackupMetricsRow[]> {
  checkUuid("tenantId", tenantId);
  const { rows } = await db.query(
    `SELECT service_name, total_backups::float8 AS total_backups, successful_backups::float8 AS successful_backups,
            failed_backups::float8 AS failed_backups, success_rate::float8 AS success_rate,
            avg_backup_size_gb::float8 AS avg_backup_size_gb,
            extract(epoch FROM last_backup_age)::float8 AS last_backup_age_seconds,
            storage_usage_gb::float8 AS storage_usage_gb, running_backups::float8 AS running_backups,
            avg_backup_size_bytes::float8 AS avg_backup_size_bytes, storage_usage_bytes::float8 AS storage_usage_bytes,
            extract(epoch FROM last_verified_backup_age)::float8 AS last_verified_backup_age_seconds
     FROM calculate_backup_metrics($1)`,
    [tenantId],
  );
  return rows.map((r) => camel<BackupMetricsRow>(r));
}

/** Health rows (backup_health view), optionally for one service. */
export async function serviceHealth(db: Db, opts: { service?: string; tenantId?: string } = {}): Promise<HealthRow[]> {
  const { rows } = await db.query(
    `SELECT tenant_id, service_name, extract(epoch FROM backup_frequency)::float8 AS backup_frequency_seconds,
            last_successful_backup, last_failed_backup, last_verified_backup, backup_streak, failure_count,
            verify_failure_count, health_status, effective_status, storage_usage_gb::float8 AS storage_usage_gb,
            storage_quota_gb::float8 AS storage_quota_gb,
            extract(epoch FROM last_verified_age)::float8 AS last_verified_age_seconds, last_recovery_test,
            extract(epoch FROM estimated_full_recovery_time)::float8 AS estimated_full_recovery_seconds,
            alerts_enabled, extract(epoch FROM rpo_target)::float8 AS rpo_target_seconds,
            extract(epoch FROM rto_target)::float8 AS rto_target_seconds, schedule_full, schedule_incremental,
            settings_reported_at, updated_at
     FROM backup_health WHERE ($1::text IS NULL OR service_name = $1) AND ($2::uuid IS NULL OR tenant_id = $2)
     ORDER BY service_name`,
    [opts.service ?? null, opts.tenantId ?? null],
  );
  return rows.map((r) => camel<HealthRow>(r));
}

export interface HealthSettingsInput {
  tenantId: string;
  service: string;
  /** How often a successful backup is expected; staleness is judged against twice this. */
  backupFrequencySeconds?: number;
  /** The service's targets, as its sidecar runs with them. */
  rpoSeconds?: number;
  rtoSeconds?: number;
  /** The cron expressions behind backupFrequencySeconds ("" for none). */
  scheduleFull?: string;
  scheduleIncremental?: string;
  storageQuotaGb?: number;
  alertsEnabled?: boolean;
}

/**
 * Creates or updates a service's health row settings. Each sidecar calls it when it starts, with
 * its effective schedule and targets, so health, `status` and alerts judge it by those.
 */
export async function setHealthSettings(db: Db, h: HealthSettingsInput): Promise<void> {
  checkUuid("tenantId", h.tenantId);
  checkService(h.service);
  for (const k of ["backupFrequencySeconds", "rpoSeconds", "rtoSeconds"] as const) {
    const v = h[k];
    if (v !== undefined && !(v > 0 && Number.isFinite(v))) {
      throw new CatalogError(`${k} must be a finite number > 0; got ${v}. Pass seconds (the frequency is the worst gap between scheduled full or incremental backups).`);
    }
  }
  const reported = h.rpoSeconds !== undefined || h.rtoSeconds !== undefined || h.scheduleFull !== undefined || h.scheduleIncremental !== undefined;
  await db.query(
    `INSERT INTO backup_health_monitoring AS h (tenant_id, service_name, backup_frequency, storage_quota_gb, alerts_enabled,
                                                rpo_target, rto_target, schedule_full, schedule_incremental, settings_reported_at)
     VALUES ($1, $2, coalesce(make_interval(secs => $3), interval '24 hours'), $4, coalesce($5, true),
             make_interval(secs => $6), make_interval(secs => $7), $8, $9, CASE WHEN $10 THEN now() END)
     ON CONFLICT (tenant_id, service_name) DO UPDATE SET
       backup_frequency = coalesce(make_interval(secs => $3), h.backup_frequency),
       storage_quota_gb = coalesce($4, h.storage_quota_gb),
       alerts_enabled = coalesce($5, h.alerts_enabled),
       rpo_target = coalesce(make_interval(secs => $6), h.rpo_target),
       rto_target = coalesce(make_interval(secs => $7), h.rto_target),
       schedule_full = coalesce($8, h.schedule_full),
       schedule_incremental = coalesce($9, h.schedule_incremental),
       settings_reported_at = CASE WHEN $10 THEN now() ELSE h.settings_reported_at END`,
    [
      h.tenantId, h.service, h.backupFrequencySeconds ?? null, h.storageQuotaGb ?? null, h.alertsEnabled ?? null,
      h.rpoSeconds ?? null, h.rtoSeconds ?? null, h.scheduleFull ?? null, h.scheduleIncremental ?? null, reported,
    ],
  );
}

// ---------------------------------------------------------------------------------------------
// Disaster recovery log

export interface StartRecoveryInput {
  tenantId: string;
  incidentType: string;
  affectedServices: string[];
  procedure: string;
  /** 'latest', an ISO timestamp, or a backup id, as asked. */
  target?: string;
  rtoTargetSeconds?: number;
  rpoTargetSeconds?: number;
  initiatedBy?: string;
  metadata?: Record<string, unknown>;
}

/** Opens a recovery (or drill) record as `running`. */
export async function startRecovery(db: Db, r: StartRecoveryInput): Promise<RecoveryLogRow> {
  checkUuid("tenantId", r.tenantId);
  if (!r.incidentType) throw new CatalogError("incidentType is required (e.g. 'drill', 'node_failure', 'data_corruption').");
  if (!r.procedure) throw new CatalogError("procedure is required: name the runbook or command being followed.");
  const { rows } = await db.query(
    `INSERT INTO disaster_recovery_log (tenant_id, incident_type, affected_services, recovery_procedure, recovery_status,
       recovery_target, rto_target, rpo_target, initiated_by, metadata)
     VALUES ($1, $2, $3, $4, 'running', $5, make_interval(secs => $6), make_interval(secs => $7), $8, $9::jsonb)
     RETURNING ${RECOVERY_COLS}`,
    [
      r.tenantId, r.incidentType, r.affectedServices, r.procedure, r.target ?? null,
      r.rtoTargetSeconds ?? null, r.rpoTargetSeconds ?? null, r.initiatedBy ?? `${hostname()} pid ${process.pid}`,
      JSON.stringify(r.metadata ?? {}),
    ],
  );
  return camel<RecoveryLogRow>(rows[0]!);
}

/** Adds (or overwrites) phase durations in seconds while the recovery runs. */
export async function recordRecoveryPhases(db: Db, recoveryId: string, phases: Record<string, number>): Promise<void> {
  checkUuid("recoveryId", recoveryId);
  await db.query(`UPDATE disaster_recovery_log SET phase_timings = phase_timings || $2::jsonb WHERE recovery_id = $1`, [
    recoveryId,
    JSON.stringify(phases),
  ]);
}

export interface FinishRecoveryInput {
  status: "completed" | "failed";
  recoveryPoint?: Date;
  sourceBackupIds?: string[];
  /** Measured data loss in seconds (e.g. last acknowledged write minus recovered point). */
  dataLossSeconds?: number;
  /** @default seconds from initiated_at to now */
  actualRecoverySeconds?: number;
  phaseTimings?: Record<string, number>;
  notes?: string;
  error?: string;
  lessonsLearned?: string;
}

export async function finishRecovery(db: Db, recoveryId: string, f: FinishRecoveryInput): Promise<RecoveryLogRow> {
  checkUuid("recoveryId", recoveryId);
  if (f.status === "failed" && !f.error) throw new CatalogError("a failed recovery needs its error: pass error with what went wrong.");
  if (f.dataLossSeconds !== undefined && !(f.dataLossSeconds >= 0)) throw new CatalogError(`dataLossSeconds must be >= 0; got ${f.dataLossSeconds}.`);
  checkDate("recoveryPoint", f.recoveryPoint);
  const { rows } = await db.query(
    `UPDATE disaster_recovery_log SET
       recovery_status = $2, completed_at = now(),
       actual_recovery_time = coalesce(make_interval(secs => $3), now() - initiated_at),
       recovery_point = coalesce($4, recovery_point), source_backup_ids = coalesce($5::uuid[], source_backup_ids),
       data_loss_seconds = coalesce($6, data_loss_seconds), phase_timings = phase_timings || $7::jsonb,
       recovery_notes = coalesce($8, recovery_notes), error_message = coalesce($9, error_message),
       lessons_learned = coalesce($10, lessons_learned)
     WHERE recovery_id = $1 AND recovery_status IN ('initiated', 'running')
     RETURNING ${RECOVERY_COLS}`,
    [
      recoveryId, f.status, f.actualRecoverySeconds ?? null, f.recoveryPoint ?? null, f.sourceBackupIds ?? null,
      f.dataLossSeconds ?? null, JSON.stringify(f.phaseTimings ?? {}), f.notes ?? null, f.error ?? null, f.lessonsLearned ?? null,
    ],
  );
  if (!rows[0]) throw new CatalogError(`recovery ${recoveryId} is missing or already finished: a recovery record is finished once.`);
  return camel<RecoveryLogRow>(rows[0]);
}

export async function getRecovery(db: Db, recoveryId: string): Promise<RecoveryLogRow | null> {
  checkUuid("recoveryId", recoveryId);
  const { rows } = await db.query(`SELECT ${RECOVERY_COLS} FROM disaster_recovery_log WHERE recovery_id = $1`, [recoveryId]);
  return rows[0] ? camel<RecoveryLogRow>(rows[0]) : null;
}

// ---------------------------------------------------------------------------------------------
// Status overview (read-only: `kryonix-dr status` runs as kryonix_dr_reader)

export interface ServiceBackupSummary {
  tenantId: string;
  serviceName: string;
  /** Engine of the newest run that recorded one. */
  engine: Engine | null;
  completedBackups: number;
  /** Runs pending or running now. */
  runningRuns: number;
  /** Oldest last sign of life (heartbeat, else start, else creation) among those runs; null when none. */
  oldestRunSignOfLife: Date | null;
  /** Completed backups a verify failed (a restore skips them). */
  verifyFailures: number;
  /** Sum of backup_size over completed backups. */
  storedBytes: number;
  /** Mean of the measured backup_size / raw_size over completed backups that have both; null when none. */
  avgCompressionRatio: number | null;
  newestCompleted: { backupId: string; backupType: BackupType; completedAt: Date; recoveryPointEnd: Date } | null;
  newestVerified: { backupId: string; backupType: BackupType; verifiedAt: Date; recoveryPointEnd: Date } | null;
  /** The newest finished (completed or failed) run. */
  lastFinished: { backupId: string; backupStatus: "completed" | "failed"; finishedAt: Date; errorMessage: string | null } | null;
}

/**
 * One row per service that has a run or a health row, with the facts an on-call overview needs,
 * in one statement (so every service is read from the same snapshot).
 */
export async function serviceBackupSummaries(db: Db, opts: { tenantId?: string } = {}): Promise<ServiceBackupSummary[]> {
  if (opts.tenantId) checkUuid("tenantId", opts.tenantId);
  const { rows } = await db.query(
    `WITH svc AS (
       SELECT tenant_id, service_name FROM backup_management WHERE $1::uuid IS NULL OR tenant_id = $1
       UNION
       SELECT tenant_id, service_name FROM backup_health_monitoring WHERE $1::uuid IS NULL OR tenant_id = $1)
     SELECT s.tenant_id, s.service_name, e.engine, a.*, nc.*, nv.*, lf.*
     FROM svc s
     LEFT JOIN LATERAL (
       SELECT engine FROM backup_management b
       WHERE b.tenant_id = s.tenant_id AND b.service_name = s.service_name AND engine IS NOT NULL
       ORDER BY created_at DESC LIMIT 1) e ON true
     CROSS JOIN LATERAL (
       SELECT count(*) FILTER (WHERE backup_status = 'completed')::float8 AS completed_backups,
              count(*) FILTER (WHERE backup_status IN ('pending', 'running'))::float8 AS running_runs,
              min(coalesce(heartbeat_at, started_at, created_at)) FILTER (WHERE backup_status IN ('pending', 'running')) AS oldest_run_sign_of_life,
              count(*) FILTER (WHERE backup_status = 'completed' AND verify_status = 'failed')::float8 AS verify_failures,
              coalesce(sum(backup_size) FILTER (WHERE backup_status = 'completed'), 0)::float8 AS stored_bytes,
              avg(compression_ratio) FILTER (WHERE backup_status = 'completed')::float8 AS avg_compression_ratio
       FROM backup_management b WHERE b.tenant_id = s.tenant_id AND b.service_name = s.service_name) a
     LEFT JOIN LATERAL (
       SELECT backup_id AS nc_id, backup_type AS nc_type, completed_at AS nc_at, recovery_point_end AS nc_rp
       FROM backup_management b
       WHERE b.tenant_id = s.tenant_id AND b.service_name = s.service_name AND backup_status = 'completed'
       ORDER BY completed_at DESC LIMIT 1) nc ON true
     LEFT JOIN LATERAL (
       SELECT backup_id AS nv_id, backup_type AS nv_type, verified_at AS nv_at, recovery_point_end AS nv_rp
       FROM backup_management b
       WHERE b.tenant_id = s.tenant_id AND b.service_name = s.service_name AND backup_status = 'completed'
         AND verify_status = 'passed'
       ORDER BY recovery_point_end DESC, verified_at DESC LIMIT 1) nv ON true
     LEFT JOIN LATERAL (
       SELECT backup_id AS lf_id, backup_status AS lf_status, coalesce(completed_at, failed_at) AS lf_at, error_message AS lf_error
       FROM backup_management b
       WHERE b.tenant_id = s.tenant_id AND b.service_name = s.service_name AND backup_status IN ('completed', 'failed')
       ORDER BY coalesce(completed_at, failed_at) DESC LIMIT 1) lf ON true
     ORDER BY s.tenant_id, s.service_name`,
    [opts.tenantId ?? null],
  );
  return rows.map((r) => ({
    tenantId: r.tenant_id,
    serviceName: r.service_name,
    engine: r.engine ?? null,
    completedBackups: r.completed_backups,
    runningRuns: r.running_runs,
    oldestRunSignOfLife: r.oldest_run_sign_of_life ?? null,
    verifyFailures: r.verify_failures,
    storedBytes: r.stored_bytes,
    avgCompressionRatio: r.avg_compression_ratio ?? null,
    newestCompleted: r.nc_id ? { backupId: r.nc_id, backupType: r.nc_type, completedAt: r.nc_at, recoveryPointEnd: r.nc_rp } : null,
    newestVerified: r.nv_id ? { backupId: r.nv_id, backupType: r.nv_type, verifiedAt: r.nv_at, recoveryPointEnd: r.nv_rp } : null,
    lastFinished: r.lf_id ? { backupId: r.lf_id, backupStatus: r.lf_status, finishedAt: r.lf_at, errorMessage: r.lf_error ?? null } : null,
  }));
}

/** Recovery and drill records, newest first. */
export async function listRecoveries(db: Db, opts: { tenantId?: string; limit?: number } = {}): Promise<RecoveryLogRow[]> {
  if (opts.tenantId) checkUuid("tenantId", opts.tenantId);
  const { rows } = await db.query(
    `SELECT ${RECOVERY_COLS} FROM disaster_recovery_log WHERE ($1::uuid IS NULL OR tenant_id = $1)
     ORDER BY initiated_at DESC, recovery_id LIMIT $2`,
    [opts.tenantId ?? null, opts.limit ?? 10],
  );
  return rows.map((r) => camel<RecoveryLogRow>(r));
}
