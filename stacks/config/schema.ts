/**
 * The shape of stack config: the raw groups a `Pulumi.<stack>.yaml` holds, the typed specs components
 * receive, the seed's defaults, the secret key names, and the error every rejection raises.
 */
export { LOCK_MODES, REPLICATION_MODES, type LockMode, type ReplicationMode } from "../../contract/index.js";
import * as pulumi from "@pulumi/pulumi";
import { TARGET_DEFAULTS, type Engine, type LockMode, type Priority, type ReplicationMode, type Tier } from "../../contract/index.js";

export const PROJECT = "kryonix-dr";
export const ROLES = ["prod", "dr", "recovery", "local"] as const;
export type Role = (typeof ROLES)[number];
export const REGION_KINDS = ["minio", "s3"] as const;
export type RegionKind = (typeof REGION_KINDS)[number];
export const REGIONS = ["primary", "dr"] as const;
export type RegionRole = (typeof REGIONS)[number];

/** The seed's defaults (PARTE-22): schedules, retention, RTO P0 and the RPO of each tier. */
export const DEFAULTS = {
  schedules: { full: "0 2 * * *", incremental: "0 */6 * * *" },
  maintenance: { health: "0 */2 * * *", prune: "0 3 * * 0", drill: "0 4 * * 6", verify: "*/15 * * * *" },
  retention: TARGET_DEFAULTS.retention,
  rtoSeconds: TARGET_DEFAULTS.rtoSeconds,
  rpoSeconds: TARGET_DEFAULTS.rpoSeconds,
  /** We aim for 60 s on PostgreSQL: a forced WAL switch every 30 s plus 30 s to upload the segment. */
  walSwitchSeconds: TARGET_DEFAULTS.walSwitchSeconds,
  uploadMarginSeconds: 30,
  images: {
    agent: "kryonix-dr/agent:local",
    postgres: "kryonix-dr/postgres:15",
    redis: "kryonix-dr/redis:7",
    files: "kryonix-dr/files:local",
  },
  quotaGiB: { critical: 500, important: 200, secondary: 100 } as Record<Tier, number>,
  sidecar: { cpus: 0.5, memoryMiB: 512 },
  monitoring: { replicationLagSeconds: 900, failedRunsPerDay: 1, rpoWarningRatio: 0.8, agentDownSeconds: 300 },
  replicationIntervalSeconds: TARGET_DEFAULTS.replicationIntervalSeconds,
} as const;

/** Rejected config. The message names the key (`kryonix-dr:...`) and how to fix it. */
export class ConfigError extends pulumi.RunError {
  constructor(
    readonly issues: ReadonlyArray<{ key: string; message: string }>,
  ) {
    super(
      `Invalid kryonix-dr stack config:\n` + issues.map((i) => `  - ${PROJECT}:${i.key}: ${i.message}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

// ---------- raw config (what Pulumi.<stack>.yaml holds) ----------

export interface RawSchedules {
  full?: string;
  /** Empty string disables incremental backups. */
  incremental?: string;
}
export interface RawRetention {
  fullDays?: number;
  incrementalDays?: number;
  /** PITR window: how long WAL is kept. */
  walDays?: number;
}
export interface RawService {
  name: string;
  engine: string;
  tier?: string;
  /** P0..P3: sets the default RTO (15 min, 1 h, 4 h, 24 h). Default: by tier (critical P0, important P1, secondary P2). */
  priority?: string;
  rpoSeconds?: number;
  rtoSeconds?: number;
  /** postgres/redis: DNS name of the protected service on the shared network. */
  host?: string;
  port?: number;
  /** postgres: a REPLICATION role; redis: ACL user. */
  user?: string;
  /** volume: the Docker volume holding the data. */
  volume?: string;
  /** Where the data lives inside the protected container (and where the sidecar mounts it). */
  dataPath?: string;
  hooks?: { pre?: string; post?: string };
  schedules?: RawSchedules;
  retention?: RawRetention;
  walSwitchSeconds?: number;
  /** postgres: a full carries a logical pg_dump of every database once every this many days (0: every full). @default 7 */
  logicalDumpEveryDays?: number;
  /** Swarm placement constraints that put the sidecar next to the data. */
  placement?: string[];
  /** Networks (names) shared with the protected service. */
  networks?: string[];
  /** local/recovery only: the image of the protected service they declare themselves. */
  image?: string;
  /** local/recovery only: arguments after that image's command (a stand-in's kind). */
  args?: string[];
  /** volume: SQLite databases in it (paths relative to dataPath), copied with SQLite's online backup. */
  sqlite?: string[];
  /** volume, Prometheus: its URL (admin API on); each backup is a TSDB snapshot, removed after upload. */
  tsdbSnapshot?: string;
  /** volume: `nextcloud` turns its maintenance mode on around each copy. */
  maintenanceMode?: string;
}
export interface RawRegion {
  name: string;
  /** URL, e.g. https://s3.dr.example.net:9000 */
  endpoint: string;
  /** `minio` supports native replication and SSE; `s3` is any other S3 server (e.g. Ceph RGW). @default minio */
  kind?: string;
}
export interface RawConfig {
  role?: string;
  stack: string;
  namePrefix?: string;
  tenantId?: string;
  services?: RawService[];
  defaults?: {
    schedules?: RawSchedules;
    retention?: RawRetention;
    rtoSeconds?: number;
    rpoSeconds?: Partial<Record<string, number>>;
    walSwitchSeconds?: number;
    uploadMarginSeconds?: number;
  };
  maintenance?: { health?: string; prune?: string; drill?: string; verify?: string };
  storage?: { bucketPrefix?: string; lockMode?: string; sse?: boolean; kmsKeyId?: string; quotaGiB?: Partial<Record<string, number>> };
  regions?: { primary?: RawRegion; dr?: RawRegion };
  replication?: { mode?: string; intervalSeconds?: number };
  catalog?: {
    host?: string;
    port?: number;
    /** Host the containers use, when it differs from the one the deployer uses. @default host */
    agentHost?: string;
    database?: string;
    adminUser?: string;
    owner?: string;
    reader?: string;
    writer?: string;
    sslmode?: string;
    /**
     * prod/local: the catalog's own server protected like a critical PostgreSQL (base backups and
     * WAL of service CATALOG_SERVICE into the critical bucket, replicated with it). `false` turns it
     * off. user: a REPLICATION login the stack creates (password: secret catalogReplicationPassword).
     */
    backup?: false | { user?: string; schedules?: RawSchedules; retention?: RawRetention; walSwitchSeconds?: number; rpoSeconds?: number; placement?: string[] };
  };
  images?: { agent?: string; postgres?: string; redis?: string; files?: string };
  sidecar?: { cpus?: number; memoryMiB?: number; metricsPort?: number; networks?: string[]; placement?: string[] };
  monitoring?: {
    replicationLagSeconds?: number;
    failedRunsPerDay?: number;
    rpoWarningRatio?: number;
    /** Seconds a sidecar does not answer /metrics before KryonixDrAgentDown fires. */
    agentDownSeconds?: number;
    /** Run Prometheus with the generated scrape config and rules (local platform; prod may use its own). */
    prometheus?: { image?: string; scrapeIntervalSeconds?: number; groupIntervalSeconds?: number; publishedPort?: number };
  };
  /** dr: fully qualified name of the primary stack (`org/kryonix-dr/prod`). */
  primaryStack?: string;
  /** catalog: how the recovery stack gets a catalog (see RECOVERY_CATALOG_MODES). @default existing */
  recovery?: { point?: string; sourceRegion?: string; serviceNamePrefix?: string; catalog?: string; stableNames?: boolean };
  /** dr: the switch that promotes the warm standbys (`pulumi config set kryonix-dr:active true`). @default false */
  active?: boolean | string;
  /** dr: the warm standbys of the primary's critical PostgreSQL and Redis services. */
  failover?: RawFailover;
  /** prod/local: the way back after a failover (the primary region's services as standbys of the promoted ones). */
  failback?: RawFailback;
}

export interface RawFailover {
  /** Each standby: the primary's service name and engine; primaryHost: how the DR region reaches the primary (default: its host as the primary stack reports it). */
  standbys?: Array<{ name?: string; engine?: string; primaryHost?: string }>;
  /** Activate although the primary still answers. @default false */
  force?: boolean;
  /** Seconds a PostgreSQL standby may take to replay what the region holds before activation refuses. @default 60 */
  catchUpSeconds?: number;
  /** Set of standbys: each new set (after a failback, the old standby volumes hold a promoted timeline) gets its own Swarm names and volumes, `<prefix>-<service>-g<n>` from 2 on. @default 1 */
  generation?: number;
}

export interface RawFailback {
  /** The dr stack whose promoted services these return from (`org/kryonix-dr/dr`). */
  drStack?: string;
  /** Each returning service: one of this stack's PostgreSQL or Redis services. */
  standbys?: Array<{ name?: string; engine?: string }>;
  /** false: the returning services follow the promoted ones as standbys. true: hand over (fence, exact catch-up, promote) and take the stable names back. @default false */
  switch?: boolean | string;
  /** Seconds the returning standby may take to hold the promoted side's last write before the hand-over refuses (and unfences). @default 60 */
  catchUpSeconds?: number;
  /** The returning services' Swarm names and volumes are `<prefix>-<service>-g<n>` (new ones, beside the old volume, which is kept). @default 2 */
  generation?: number;
}

/** What the primary stack declares for the way back: see RawFailback. */
export interface FailbackSpec {
  drStack: string;
  standbys: StandbySpec[];
  switch: boolean;
  catchUpSeconds: number;
  generation: number;
}

export interface StandbySpec {
  name: string;
  engine: "postgres" | "redis";
  primaryHost?: string;
  /** Config key of its password (the primary's), when set on this stack. */
  passwordKey?: string;
}

// ---------- specs (what components receive) ----------

export interface RetentionSpec {
  fullDays: number;
  incrementalDays: number;
  walDays: number;
}
export interface ServiceSpec {
  name: string;
  engine: Engine;
  tier: Tier;
  priority: Priority;
  rpoSeconds: number;
  /** Its own rtoSeconds, else defaults.rtoSeconds, else its priority's. */
  rtoSeconds: number;
  /** What the configured mechanism can achieve, derived from schedules / WAL switching. */
  achievableRpoSeconds: number;
  schedules: { full: string; incremental: string };
  /** Longest gap between two full backups, from the cron. */
  fullIntervalSeconds: number;
  retention: RetentionSpec;
  walSwitchSeconds?: number;
  /** postgres: days between fulls that carry the logical dumps; unset, the agent's default (7). */
  logicalDumpEveryDays?: number;
  host?: string;
  port?: number;
  user?: string;
  volume?: string;
  dataPath: string;
  hooks: { pre?: string; post?: string };
  placement: string[];
  networks: string[];
  image: string;
  /** Arguments after the image's command (local/recovery: the services they declare). */
  args: string[];
  /** volume: SQLite databases in it (relative paths), copied with SQLite's online backup. */
  sqlite: string[];
  /** volume, Prometheus: its URL; each backup is a TSDB snapshot taken through the admin API. */
  tsdbSnapshot?: string;
  /** volume: the service's maintenance mode switched around each copy. */
  maintenanceMode?: "nextcloud";
  /** Config key of this service's target password, when it has one. */
  passwordKey?: string;
}
export interface RegionSpec {
  role: RegionRole;
  name: string;
  endpoint: string;
  /** host:port, as @pulumi/minio wants it. */
  server: string;
  ssl: boolean;
  kind: RegionKind;
  accessKeyKey: string;
  secretKeyKey: string;
}
export interface CatalogSpec {
  host: string;
  port: number;
  agentHost: string;
  database: string;
  adminUser: string;
  owner: string;
  reader: string;
  writer: string;
  sslmode: string;
}
export { CATALOG_SERVICE } from "../../contract/index.js";
/**
 * How the recovery stack gets its catalog: `existing` uses the configured one as it is;
 * `rebuild` creates it and fills it from the source region's manifests; `restore` restores the
 * catalog database itself to the recovery point from the source region (its backups as
 * CATALOG_SERVICE), then adds what the region holds beyond that point.
 */
export const RECOVERY_CATALOG_MODES = ["existing", "rebuild", "restore"] as const;
export type RecoveryCatalogMode = (typeof RECOVERY_CATALOG_MODES)[number];
export type RecoveryPoint =
  | { kind: "latest" }
  | { kind: "time"; at: string }
  | { kind: "backup"; id: string };

export interface Specs {
  role: Role;
  stack: string;
  namePrefix: string;
  tenantId: string;
  services: ServiceSpec[];
  /** prod/local: the catalog server, protected as service CATALOG_SERVICE (not declared by the stack). */
  catalogService?: ServiceSpec;
  /** verify: how often the drill cron verifies the backups completed since (kdr-agent verify --pending). */
  maintenance: { health: string; prune: string; drill: string; verify: string };
  storage: { bucketPrefix: string; lockMode: LockMode; sse: boolean; kmsKeyId: string; quotaGiB: Record<Tier, number> };
  regions: { primary?: RegionSpec; dr?: RegionSpec };
  replication: { mode: ReplicationMode; intervalSeconds: number };
  catalog: CatalogSpec;
  images: { agent: string; postgres: string; redis: string; files: string };
  sidecar: { cpus: number; memoryMiB: number; metricsPort: number; networks: string[]; placement: string[] };
  monitoring: {
    replicationLagSeconds: number;
    failedRunsPerDay: number;
    rpoWarningRatio: number;
    agentDownSeconds: number;
    prometheus?: { image: string; scrapeIntervalSeconds: number; groupIntervalSeconds: number; publishedPort?: number };
  };
  primaryStack?: string;
  /** recovery: what to restore from, and the prefix of the fresh services' Swarm names. */
  /** stableNames: the rebuilt services also answer to the names clients use (`postgresql`); off for a restore aside. */
  recovery?: { point: RecoveryPoint; sourceRegion: RegionRole; serviceNamePrefix: string; catalog: RecoveryCatalogMode; stableNames: boolean };
  /** dr: the warm standbys and whether they are promoted. */
  failover?: { active: boolean; force: boolean; catchUpSeconds: number; generation: number; standbys: StandbySpec[] };
  /** prod/local: the returning services after a failover, and whether they take over again. */
  failback?: FailbackSpec;
  /** Every secret config key this stack needs (without the project prefix). */
  secretKeys: string[];
  /** Optional secrets that are present. */
  optionalSecretKeys: string[];
}

export const SECRET = {
  catalogAdminPassword: "catalogAdminPassword",
  catalogOwnerPassword: "catalogOwnerPassword",
  catalogWriterPassword: "catalogWriterPassword",
  catalogReaderPassword: "catalogReaderPassword",
  /** The REPLICATION login that backs up the catalog server (catalog.backup.user). */
  catalogReplicationPassword: "catalogReplicationPassword",
  ageRecipient: "ageRecipient",
  ageIdentity: "ageIdentity",
  resticPassword: "resticPassword",
  notificationTargets: "notificationTargets",
  regionAccessKey: (r: RegionRole) => `${r}AccessKey`,
  regionSecretKey: (r: RegionRole) => `${r}SecretKey`,
  targetPassword: (service: string) => `targetPassword-${service}`,
} as const;
