/**
 * The contract between the Pulumi program (components) and the agent that runs inside the
 * containers it declares. Components write these names; the agent reads them. Neither side
 * imports the other: contract/ is the only thing they share (this file imports nothing;
 * schedule.ts answers schedule questions for both with croner, which both run).
 *
 * Rules:
 * - Non-secret settings travel as environment variables (AGENT_ENV).
 * - Every credential and key travels as a Swarm secret mounted as a file (SECRET_FILES);
 *   never as an environment variable or a command-line argument.
 */

/** Engines the agent knows how to back up and restore. */
export const ENGINES = ["postgres", "redis", "volume"] as const;
export type Engine = (typeof ENGINES)[number];

/** Backup classes. Each is a key prefix with its own lifecycle rule. */
export const BACKUP_CLASSES = ["full", "incremental", "wal", "logical", "restic"] as const;
export type BackupClass = (typeof BACKUP_CLASSES)[number];

/** Service tiers (the seed's RPO classes: critical 5 min, important 1 h, secondary 24 h). */
export const TIERS = ["critical", "important", "secondary"] as const;
export type Tier = (typeof TIERS)[number];

/**
 * Defaults that program and agent both apply. The stack config falls back to these, and so does
 * the agent when a setting reaches it unset (a container started by hand, a test), so a service
 * is never judged by a target the program does not know.
 */
export const TARGET_DEFAULTS = {
  /** The seed's RPO classes. */
  rpoSeconds: { critical: 5 * 60, important: 60 * 60, secondary: 24 * 60 * 60 } as Readonly<Record<Tier, number>>,
  /** The seed's P0 recovery target. */
  rtoSeconds: 15 * 60,
  /** A forced WAL segment switch this often when there was activity (PostgreSQL RPO = this + the upload margin). */
  walSwitchSeconds: 30,
  retention: { fullDays: 30, incrementalDays: 7, walDays: 7 },
  /** The tier a service without one gets. */
  tier: "important" as Tier,
} as const;

/** Environment variable names the agent reads. */
export const AGENT_ENV = {
  /** Logical name of the protected service (catalog `service_name`, key prefix). */
  service: "KDR_SERVICE",
  /** One of ENGINES. */
  engine: "KDR_ENGINE",
  /** Catalog tenant id (UUID). */
  tenantId: "KDR_TENANT_ID",
  /** Tier of the protected service, one of TIERS. */
  tier: "KDR_TIER",

  /** Host and port of the protected service (postgres, redis). */
  targetHost: "KDR_TARGET_HOST",
  targetPort: "KDR_TARGET_PORT",
  /** User the agent connects as (postgres: a REPLICATION role). */
  targetUser: "KDR_TARGET_USER",
  /** Path where the protected volume is mounted read-only (volume engine). */
  volumePath: "KDR_VOLUME_PATH",
  /** Shell commands run before/after a volume backup for application consistency. */
  hookPre: "KDR_HOOK_PRE",
  hookPost: "KDR_HOOK_POST",

  /** S3 endpoint URL, region name and bucket of this service's backups. */
  s3Endpoint: "KDR_S3_ENDPOINT",
  s3Region: "KDR_S3_REGION",
  s3Bucket: "KDR_S3_BUCKET",

  /** Catalog PostgreSQL connection (password comes from SECRET_FILES.catalogPassword). */
  catalogHost: "KDR_CATALOG_HOST",
  catalogPort: "KDR_CATALOG_PORT",
  catalogDatabase: "KDR_CATALOG_DATABASE",
  catalogUser: "KDR_CATALOG_USER",

  /** Cron expressions (croner syntax; 5 or 6 fields). Empty disables the schedule. */
  scheduleFull: "KDR_SCHEDULE_FULL",
  scheduleIncremental: "KDR_SCHEDULE_INCREMENTAL",
  scheduleHealth: "KDR_SCHEDULE_HEALTH",
  schedulePrune: "KDR_SCHEDULE_PRUNE",
  scheduleDrill: "KDR_SCHEDULE_DRILL",

  /** Targets, in seconds. */
  rpoSeconds: "KDR_RPO_SECONDS",
  rtoSeconds: "KDR_RTO_SECONDS",
  /** PostgreSQL: force a WAL segment switch this often when there was activity (seconds). */
  walSwitchSeconds: "KDR_WAL_SWITCH_SECONDS",

  /** Retention in days per class. */
  retentionFullDays: "KDR_RETENTION_FULL_DAYS",
  retentionIncrementalDays: "KDR_RETENTION_INCREMENTAL_DAYS",
  retentionWalDays: "KDR_RETENTION_WAL_DAYS",

  /** Object-lock mode used on upload: GOVERNANCE or COMPLIANCE. */
  lockMode: "KDR_LOCK_MODE",
  /** Port of /healthz and /metrics in serve mode. */
  metricsPort: "KDR_METRICS_PORT",
  /** Where the agent keeps local working state (WAL spool); a volume, not the container layer. */
  stateDir: "KDR_STATE_DIR",

  /** cron mode: JSON array of {name, schedule, command: string[]} (command = agent argv). */
  cronJobs: "KDR_CRON_JOBS",
  /** replicate mode: where new object versions are copied to (credentials in SECRET_FILES.replica*). */
  replicaEndpoint: "KDR_REPLICA_S3_ENDPOINT",
  replicaRegion: "KDR_REPLICA_S3_REGION",
  replicaBucket: "KDR_REPLICA_S3_BUCKET",
  /** replicate mode: seconds between two passes over the source bucket. */
  replicationIntervalSeconds: "KDR_REPLICATION_INTERVAL_SECONDS",
  /** restore jobs: `latest`, an ISO timestamp, or a backup id (backup_management.backup_id). */
  recoveryPoint: "KDR_RECOVERY_POINT",
} as const;

/** Swarm secret file paths inside the containers. */
export const SECRET_DIR = "/run/secrets";
export const SECRET_FILES = {
  s3AccessKey: `${SECRET_DIR}/kdr-s3-access-key`,
  s3SecretKey: `${SECRET_DIR}/kdr-s3-secret-key`,
  catalogPassword: `${SECRET_DIR}/kdr-catalog-password`,
  targetPassword: `${SECRET_DIR}/kdr-target-password`,
  /** age recipient (public key): enough to encrypt; backup sidecars get only this. */
  encryptionRecipient: `${SECRET_DIR}/kdr-age-recipient`,
  /** age identity (private key): only restore, verify and drill containers get this. */
  encryptionIdentity: `${SECRET_DIR}/kdr-age-identity`,
  /** restic repository password (restic does its own encryption for volume backups). */
  resticPassword: `${SECRET_DIR}/kdr-restic-password`,
  /** replicate mode: credentials of the replica (DR) bucket's writer. */
  replicaAccessKey: `${SECRET_DIR}/kdr-replica-s3-access-key`,
  replicaSecretKey: `${SECRET_DIR}/kdr-replica-s3-secret-key`,
} as const;

/** Default port of the agent's /healthz and /metrics endpoints. */
export const DEFAULT_METRICS_PORT = 9469;

/** Labels the components put on Swarm services; policies and the drill read them. */
export const LABELS = {
  /** On a protected service: "true" when it holds state. */
  stateful: "kryonix.dr.stateful",
  /** On a protected service: its logical service name. */
  service: "kryonix.dr.service",
  /** On a backup sidecar: the logical name of the service it protects. */
  protects: "kryonix.dr.protects",
  /** On any kryonix-dr service: its role (sidecar, cron, replicator, restore). */
  role: "kryonix.dr.role",
  /** Targets, in seconds, declared on protected services. */
  rpoSeconds: "kryonix.dr.rpo-seconds",
  rtoSeconds: "kryonix.dr.rto-seconds",
  tier: "kryonix.dr.tier",
  engine: "kryonix.dr.engine",
  /** On every resource kryonix-dr declares: "true". */
  managed: "kryonix.dr.managed",
} as const;

/**
 * Object layout. Class comes first so that lifecycle rules (which filter by prefix) can give
 * each class its own expiry; the service comes second so that each sidecar's policy can be
 * limited to its own prefixes.
 */
export function objectPrefix(cls: BackupClass, service: string): string {
  return `${cls}/${service}/`;
}

/**
 * A volume service's restic repository of one generation. A repository that cannot be opened is
 * never written again: the agent starts the next generation beside it (so a policy on
 * `restic/<service>/*` covers them all, and restic's lock files are at `.../g<N>/locks/`).
 */
export function resticRepoPrefix(service: string, generation: number): string {
  return `${objectPrefix("restic", service)}g${generation}/`;
}

/** The generation of a restic repository prefix or of an object key under it, if any. */
export function resticGeneration(key: string): number | undefined {
  const m = /^restic\/[^/]+\/g([1-9][0-9]*)\//.exec(key);
  return m ? Number(m[1]) : undefined;
}

/** Beside each generation's restic files: who it belongs to and the key to open it with. */
export const RESTIC_DESCRIPTOR = "kdr-repository.json";

/** restic's lock files of every generation: the one thing a volume sidecar may delete. */
export function resticLockFiles(service: string): string {
  return `${objectPrefix("restic", service)}g*/locks/*`;
}
