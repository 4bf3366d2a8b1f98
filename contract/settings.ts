/**
 * Every setting of the agent, in one table: its env name, its flag, its kind, its default and a
 * line of doc. The components build containers' env and argv from it (AGENT_ENV, agentFlags),
 * the agent parses and checks it once (agent/config.ts) and prints its --help from it. A
 * setting, a default or a name that is not here does not exist. (pgBackRest keeps its options
 * the same way, for the same reason: a second copy drifts.)
 */

/** How a value is checked when the agent reads it. */
export type SettingKind = "text" | "name" | "uuid" | "url" | "port" | "seconds" | "days" | "cron" | "enum" | "path" | "json" | "rate";

export interface SettingDef {
  readonly env: string;
  readonly kind: SettingKind;
  readonly doc: string;
  /** Used when the setting is unset. Absent: no default (required where it is needed). */
  readonly default?: string | number;
  /** enum: the accepted values. */
  readonly values?: readonly string[];
}

import { ENGINES, LOCK_MODES, TIERS } from "./enums.js";

export const SETTINGS = {
  service: { env: "KDR_SERVICE", kind: "name", doc: "logical name of the protected service (catalog service_name, object key prefix)" },
  engine: { env: "KDR_ENGINE", kind: "enum", values: ENGINES, doc: "how the service is backed up" },
  tenantId: { env: "KDR_TENANT_ID", kind: "uuid", doc: "catalog tenant id" },
  tier: { env: "KDR_TIER", kind: "enum", values: TIERS, default: "important", doc: "the service's tier (its default RPO: critical 5 min, important 1 h, secondary 24 h)" },

  targetHost: { env: "KDR_TARGET_HOST", kind: "text", doc: "host of the protected service (postgres, redis)" },
  targetPort: { env: "KDR_TARGET_PORT", kind: "port", doc: "port of the protected service (default by engine: postgres 5432, redis 6379)" },
  targetUser: { env: "KDR_TARGET_USER", kind: "text", doc: "user the agent connects as (postgres: a REPLICATION role)" },
  volumePath: { env: "KDR_VOLUME_PATH", kind: "path", doc: "where the protected volume is mounted, read-only (volume engine)" },
  hookPre: { env: "KDR_HOOK_PRE", kind: "text", doc: "run before a volume backup (application consistency): a shell command, or 'POST|GET|PUT|DELETE <url>', an HTTP call the agent makes itself" },
  sqliteFiles: { env: "KDR_SQLITE_FILES", kind: "json", doc: "volume engine: SQLite databases in the volume (JSON list of paths relative to it, e.g. [\"grafana.db\"]) copied with SQLite's online backup and checked, never read while written" },
  tsdbSnapshotUrl: { env: "KDR_TSDB_SNAPSHOT_URL", kind: "url", doc: "volume engine, Prometheus: its URL (admin API on); each backup is a TSDB snapshot taken through it, stored alone and removed from the volume after upload (the volume is mounted read-write)" },
  maintenanceMode: { env: "KDR_MAINTENANCE_MODE", kind: "enum", values: ["nextcloud"], doc: "volume engine: 'nextcloud' turns Nextcloud's maintenance mode on in config/config.php around each copy and off after it, even when the copy failed (the volume is mounted read-write)" },
  hookPost: { env: "KDR_HOOK_POST", kind: "text", doc: "run after a volume backup, also when it or the pre hook failed (so make it safe to repeat): a shell command or 'POST|GET|PUT|DELETE <url>'" },

  s3Endpoint: { env: "KDR_S3_ENDPOINT", kind: "url", doc: "S3 endpoint URL of this service's backups" },
  s3Region: { env: "KDR_S3_REGION", kind: "text", default: "us-east-1", doc: "S3 signing region" },
  s3RetrySeconds: { env: "KDR_S3_RETRY_SECONDS", kind: "seconds", default: 24, doc: "how long a failed S3 request is tried again (0.5 s, then doubling up to 8 s between attempts) before it fails: an RGW or MinIO restart takes a few seconds to some tens; 0: never" },
  s3Bucket: { env: "KDR_S3_BUCKET", kind: "text", doc: "bucket of this service's tier" },

  catalogHost: { env: "KDR_CATALOG_HOST", kind: "text", doc: "catalog PostgreSQL host (password: secret kdr-catalog-password)" },
  catalogPort: { env: "KDR_CATALOG_PORT", kind: "port", default: 5432, doc: "catalog PostgreSQL port" },
  catalogDatabase: { env: "KDR_CATALOG_DATABASE", kind: "text", default: "kryonix_dr", doc: "catalog database" },
  catalogUser: { env: "KDR_CATALOG_USER", kind: "text", doc: "catalog login (a member of kryonix_dr_writer)" },

  scheduleFull: { env: "KDR_SCHEDULE_FULL", kind: "cron", doc: "full backups (croner, 5 or 6 fields; empty: none)" },
  scheduleIncremental: { env: "KDR_SCHEDULE_INCREMENTAL", kind: "cron", doc: "incremental backups (Redis: a whole RDB snapshot each time)" },
  scheduleHealth: { env: "KDR_SCHEDULE_HEALTH", kind: "cron", doc: "freshness checks in the sidecar" },
  schedulePrune: { env: "KDR_SCHEDULE_PRUNE", kind: "cron", doc: "retention runs in the sidecar" },
  scheduleDrill: { env: "KDR_SCHEDULE_DRILL", kind: "cron", doc: "restore drills" },

  rpoSeconds: { env: "KDR_RPO_SECONDS", kind: "seconds", doc: "RPO target (default: the tier's)" },
  rtoSeconds: { env: "KDR_RTO_SECONDS", kind: "seconds", default: 15 * 60, doc: "RTO target (the seed's P0: 15 min)" },
  walSwitchSeconds: { env: "KDR_WAL_SWITCH_SECONDS", kind: "seconds", default: 30, doc: "PostgreSQL: force a WAL segment switch this often when there was activity" },

  retentionFullDays: { env: "KDR_RETENTION_FULL_DAYS", kind: "days", default: 30, doc: "days a full backup is kept (and locked)" },
  retentionIncrementalDays: { env: "KDR_RETENTION_INCREMENTAL_DAYS", kind: "days", default: 7, doc: "days an incremental backup is kept (and locked)" },
  retentionWalDays: { env: "KDR_RETENTION_WAL_DAYS", kind: "days", default: 7, doc: "days archived WAL is kept (and locked)" },

  lockMode: { env: "KDR_LOCK_MODE", kind: "enum", values: LOCK_MODES, doc: "object-lock mode on upload (unset: the bucket's default retention)" },
  metricsPort: { env: "KDR_METRICS_PORT", kind: "port", default: 9469, doc: "port of /healthz and /metrics (serve, cron, replicate)" },
  stateDir: { env: "KDR_STATE_DIR", kind: "path", default: "/var/lib/kdr-agent", doc: "local working state (WAL spool, restic cache, locks): a volume, not the container layer" },
  secretDir: { env: "KDR_SECRET_DIR", kind: "path", default: "/run/secrets", doc: "where the secret files are (Swarm mounts them at /run/secrets)" },

  cronJobs: { env: "KDR_CRON_JOBS", kind: "json", doc: "cron mode: JSON array of {name, schedule, command: [agent args]}" },
  replicaEndpoint: { env: "KDR_REPLICA_S3_ENDPOINT", kind: "url", doc: "replicate mode: S3 endpoint of the DR copy (credentials: secrets kdr-replica-s3-*)" },
  replicaRegion: { env: "KDR_REPLICA_S3_REGION", kind: "text", default: "us-east-1", doc: "replicate mode: signing region of the DR copy" },
  replicaBucket: { env: "KDR_REPLICA_S3_BUCKET", kind: "text", doc: "replicate mode: the DR bucket" },
  replicationIntervalSeconds: { env: "KDR_REPLICATION_INTERVAL_SECONDS", kind: "seconds", default: 30, doc: "replicate mode: seconds between two passes over the source bucket" },
  primaryHost: { env: "KDR_PRIMARY_HOST", kind: "text", doc: "standby: host of the primary it stands in for (activate refuses while that answers, unless --force)" },
  primaryPort: { env: "KDR_PRIMARY_PORT", kind: "port", doc: "standby: port of that primary (default: the standby's own port)" },
  followIntervalSeconds: { env: "KDR_FOLLOW_INTERVAL_SECONDS", kind: "seconds", default: 5, doc: "standby follow: seconds between two looks for newly copied WAL" },
  catchUpSeconds: { env: "KDR_CATCH_UP_SECONDS", kind: "seconds", default: 60, doc: "standby activate: how long the standby may take to replay what the region holds before activation refuses; standby switchover: how long the fenced primary waits for the standby to replay its last write" },
  notifyUrl: { env: "KDR_NOTIFY_URL", kind: "url", doc: "the notify relay (http://<relay>:<port>): agents post events a person must hear of there (a failed backup, the first success after failures, a drill's result); unset: none" },
  recoveryPoint: { env: "KDR_RECOVERY_POINT", kind: "text", doc: "restore jobs: latest, an ISO time, or a backup id" },

  pgLogicalDumps: {
    env: "KDR_PG_LOGICAL_DUMPS",
    kind: "enum",
    values: ["all", "none"],
    default: "all",
    doc: "PostgreSQL: a logical pg_dump of every database beside a base backup, as often as pgLogicalEveryDays says (all), or never (none: the catalog server's REPLICATION login reads no database)",
  },
  pgLogicalEveryDays: {
    env: "KDR_PG_LOGICAL_EVERY_DAYS",
    kind: "days",
    default: 7,
    doc: "PostgreSQL: a full backup carries the logical dumps when the newest backup that carries them began this many days ago or more (less an hour, so a daily full at a fixed time keeps the cadence), or when none does; 0: every full. Recovery needs only the base and the WAL; the dumps are a second format (single-database copies, a major-version move)",
  },
  pgMaxRate: { env: "KDR_PG_MAX_RATE", kind: "rate", doc: "pg_basebackup --max-rate (kB/s, optionally k or M, e.g. 50M)" },
  pgBin: { env: "KDR_PG_BIN", kind: "path", doc: "extra directory searched first for PostgreSQL tools" },
  migrationsDir: { env: "KDR_MIGRATIONS_DIR", kind: "path", doc: "where `migrate` finds the catalog migrations (default: the image's)" },
} as const satisfies Record<string, SettingDef>;

export type SettingKey = keyof typeof SETTINGS;

/** `--target-host` for `targetHost`. */
export const flagName = (key: string): string => "--" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

/** The env names, by key: what components write and the agent reads. */
export const AGENT_ENV = Object.freeze(Object.fromEntries(Object.entries(SETTINGS).map(([k, d]) => [k, d.env]))) as {
  readonly [K in SettingKey]: (typeof SETTINGS)[K]["env"];
};

/** Agent argv flags for some settings (a cron job's command line), in the table's order. */
export function agentFlags(values: Partial<Record<SettingKey, string | number>>): string[] {
  return (Object.keys(SETTINGS) as SettingKey[]).flatMap((k) => (values[k] === undefined ? [] : [flagName(k), String(values[k])]));
}

/**
 * Env names of the host-side tools (the kryonix-dr CLI and the local deployer), not of the
 * agent, kept here so that no KDR_ name is spelled anywhere else.
 */
export const TOOL_ENV = {
  /** CLI: print stacks with errors. */
  debug: "KDR_DEBUG",
  /** Local deployer: where deployment state lives. */
  deploymentsDir: "KDR_DEPLOYMENTS_DIR",
  /** Local platform facts (scripts/platform-up.sh writes them). */
  platformFile: "KDR_PLATFORM_FILE",
  /** `kryonix-dr s3`: the endpoint and region (keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY). */
  s3Endpoint: "KDR_S3_ENDPOINT",
  s3Region: "KDR_S3_REGION",
  /** MinIO replication command: the remote target URL (a secret, so never on the command line). */
  replicationTarget: "KDR_REPLICATION_TARGET",
  /** `kryonix-dr catalog --from-env`: the recovery stack's inputs as JSON (a secret: it holds passwords and keys). */
  catalogRecovery: "KDR_CATALOG_RECOVERY",
} as const;
