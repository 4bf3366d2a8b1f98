/** Metrics and health: calculate_backup_metrics, the backup_health view, and the settings sidecars report. */
import { camel, checkService, checkUuid } from "./sql.js";
import { CatalogError } from "./types.js";
import type { BackupMetricsRow, Db, HealthRow } from "./types.js";

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
      throw new CatalogError(`${k} must be > 0 (a finite number of seconds); got ${v}. Pass seconds (the frequency is the worst gap between scheduled full or incremental backups).`);
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
