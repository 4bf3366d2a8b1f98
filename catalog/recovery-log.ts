/** The disaster recovery log: recoveries and drills, their phases and results. */
import { hostname } from "node:os";
import { RECOVERY_COLS, camel, checkDate, checkUuid } from "./sql.js";
import { CatalogError } from "./types.js";
import type { Db, RecoveryLogRow } from "./types.js";

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
  /** When the recovery began, if before this record could be written (the catalog itself was lost). @default now */
  initiatedAt?: Date;
  metadata?: Record<string, unknown>;
}

/** Opens a recovery (or drill) record as `running`. */
export async function startRecovery(db: Db, r: StartRecoveryInput): Promise<RecoveryLogRow> {
  checkUuid("tenantId", r.tenantId);
  if (!r.incidentType) throw new CatalogError("incidentType is required (e.g. 'drill', 'node_failure', 'data_corruption').");
  if (!r.procedure) throw new CatalogError("procedure is required: name the runbook or command being followed.");
  const { rows } = await db.query(
    `INSERT INTO disaster_recovery_log (tenant_id, incident_type, affected_services, recovery_procedure, recovery_status,
       recovery_target, rto_target, rpo_target, initiated_by, metadata, initiated_at)
     VALUES ($1, $2, $3, $4, 'running', $5, make_interval(secs => $6), make_interval(secs => $7), $8, $9::jsonb, coalesce($10::timestamptz, now()))
     RETURNING ${RECOVERY_COLS}`,
    [
      r.tenantId, r.incidentType, r.affectedServices, r.procedure, r.target ?? null,
      r.rtoTargetSeconds ?? null, r.rpoTargetSeconds ?? null, r.initiatedBy ?? `${hostname()} pid ${process.pid}`,
      JSON.stringify(r.metadata ?? {}),
      r.initiatedAt ?? null,
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

/**
 * Appends what was learnt to a finished recovery (an incident's review, after the fact): added
 * with its date below what is there, never replacing it.
 */
export async function addLessons(db: Db, recoveryId: string, text: string): Promise<RecoveryLogRow> {
  checkUuid("recoveryId", recoveryId);
  if (!text.trim()) throw new CatalogError("lessons learnt are empty: give the text to record.");
  const { rows } = await db.query(
    `UPDATE disaster_recovery_log
        SET lessons_learned = concat_ws(E'\\n', lessons_learned, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z: "') || $2)
      WHERE recovery_id = $1
      RETURNING ${RECOVERY_COLS}`,
    [recoveryId, text.trim()],
  );
  if (!rows[0]) throw new CatalogError(`no recovery ${recoveryId} in disaster_recovery_log: 'kryonix-dr status' lists the latest recoveries and drills with their ids.`);
  return camel<RecoveryLogRow>(rows[0]);
}
