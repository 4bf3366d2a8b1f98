/** Row types, enumerations and errors of the catalog (shared by every query file). */
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
  /** SHA-256 of the plaintext segment (null: recorded before migration 010). */
  rawSha256: string | null;
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
