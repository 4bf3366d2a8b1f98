/** Status overview (read-only: `kryonix-dr status` runs as kryonix_dr_reader). */
import type { Engine } from "../contract/index.js";
import { RECOVERY_COLS, camel, checkUuid } from "./sql.js";
import type { BackupType, Db, RecoveryLogRow } from "./types.js";

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
