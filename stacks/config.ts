/**
 * The only place stack config is read. `loadConfig()` reads the raw groups and secrets;
 * `parseSpecs()` (pure) validates them once and turns them into the plain typed specs the
 * compositions hand to components. Every rejection is a ConfigError whose message names the key
 * and the fix, so a bad `Pulumi.<stack>.yaml` fails at the stack entry, before any resource.
 */
import * as pulumi from "@pulumi/pulumi";
import { DEFAULT_METRICS_PORT, ENGINES, LOCK_MODES, REPLICATION_MODES, TARGET_DEFAULTS, TIERS, type Engine, type LockMode, type ReplicationMode, type Tier } from "../contract/index.js";
export { LOCK_MODES, REPLICATION_MODES, type LockMode, type ReplicationMode };
import { worstGapSeconds } from "../contract/schedule.js";

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
  maintenance: { health: "0 */2 * * *", prune: "0 3 * * 0", drill: "0 4 * * 6" },
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
  monitoring: { replicationLagSeconds: 900, failedRunsPerDay: 1, rpoWarningRatio: 0.8 },
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
  /** Swarm placement constraints that put the sidecar next to the data. */
  placement?: string[];
  /** Networks (names) shared with the protected service. */
  networks?: string[];
  /** local/recovery only: the image of the protected service they declare themselves. */
  image?: string;
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
  maintenance?: { health?: string; prune?: string; drill?: string };
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
  };
  images?: { agent?: string; postgres?: string; redis?: string; files?: string };
  sidecar?: { cpus?: number; memoryMiB?: number; metricsPort?: number; networks?: string[]; placement?: string[] };
  monitoring?: { replicationLagSeconds?: number; failedRunsPerDay?: number; rpoWarningRatio?: number };
  /** dr: fully qualified name of the primary stack (`org/kryonix-dr/prod`). */
  primaryStack?: string;
  recovery?: { point?: string; sourceRegion?: string; serviceNamePrefix?: string };
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
  rpoSeconds: number;
  rtoSeconds: number;
  /** What the configured mechanism can achieve, derived from schedules / WAL switching. */
  achievableRpoSeconds: number;
  schedules: { full: string; incremental: string };
  /** Longest gap between two full backups, from the cron. */
  fullIntervalSeconds: number;
  retention: RetentionSpec;
  walSwitchSeconds?: number;
  host?: string;
  port?: number;
  user?: string;
  volume?: string;
  dataPath: string;
  hooks: { pre?: string; post?: string };
  placement: string[];
  networks: string[];
  image: string;
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
  maintenance: { health: string; prune: string; drill: string };
  storage: { bucketPrefix: string; lockMode: LockMode; sse: boolean; kmsKeyId: string; quotaGiB: Record<Tier, number> };
  regions: { primary?: RegionSpec; dr?: RegionSpec };
  replication: { mode: ReplicationMode; intervalSeconds: number };
  catalog: CatalogSpec;
  images: { agent: string; postgres: string; redis: string; files: string };
  sidecar: { cpus: number; memoryMiB: number; metricsPort: number; networks: string[]; placement: string[] };
  monitoring: { replicationLagSeconds: number; failedRunsPerDay: number; rpoWarningRatio: number };
  primaryStack?: string;
  /** recovery: what to restore from, and the prefix of the fresh services' Swarm names. */
  recovery?: { point: RecoveryPoint; sourceRegion: RegionRole; serviceNamePrefix: string };
  /** Every secret config key this stack needs (without the project prefix). */
  secretKeys: string[];
  /** Optional secrets that are present. */
  optionalSecretKeys: string[];
}

// ---------- parsing ----------

const NAME_RE = /^[a-z][a-z0-9-]{0,30}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

export const SECRET = {
  catalogAdminPassword: "catalogAdminPassword",
  catalogOwnerPassword: "catalogOwnerPassword",
  catalogWriterPassword: "catalogWriterPassword",
  catalogReaderPassword: "catalogReaderPassword",
  ageRecipient: "ageRecipient",
  ageIdentity: "ageIdentity",
  resticPassword: "resticPassword",
  notificationTargets: "notificationTargets",
  regionAccessKey: (r: RegionRole) => `${r}AccessKey`,
  regionSecretKey: (r: RegionRole) => `${r}SecretKey`,
  targetPassword: (service: string) => `targetPassword-${service}`,
} as const;

class Issues {
  readonly list: Array<{ key: string; message: string }> = [];
  add(key: string, message: string): void {
    this.list.push({ key, message });
  }
}

function positive(issues: Issues, key: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    issues.add(key, `must be a positive number, got ${JSON.stringify(value)}; set it with 'pulumi config set --path ${PROJECT}:${key} <n>'`);
    return fallback;
  }
  return value;
}

function oneOf<T extends string>(issues: Issues, key: string, value: unknown, accepted: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value === "string" && (accepted as readonly string[]).includes(value)) return value as T;
  issues.add(key, `unknown value ${JSON.stringify(value)}; accepted: ${accepted.join(", ")}`);
  return fallback;
}

function cron(issues: Issues, key: string, value: unknown, fallback: string): { expr: string; interval: number } {
  const expr = value === undefined ? fallback : value;
  if (typeof expr !== "string") {
    issues.add(key, `must be a cron expression string (5 or 6 fields), got ${JSON.stringify(expr)}`);
    return { expr: fallback, interval: worstGapSeconds([fallback]) };
  }
  try {
    return { expr, interval: worstGapSeconds([expr]) };
  } catch (err) {
    issues.add(
      key,
      `invalid cron ${JSON.stringify(expr)} (${(err as Error).message}); use 5 fields (minute hour day month weekday, e.g. "0 2 * * *") or 6 with seconds first`,
    );
    return { expr: fallback, interval: worstGapSeconds([fallback]) };
  }
}

function region(issues: Issues, role: RegionRole, raw: RawRegion | undefined): RegionSpec | undefined {
  const key = `regions.${role}`;
  if (raw === undefined) {
    issues.add(key, `is required for this stack: set { name, endpoint, kind } with 'pulumi config set --path ${PROJECT}:${key}.endpoint https://host:port' (and .name)`);
    return undefined;
  }
  let url: URL | undefined;
  try {
    url = new URL(raw.endpoint);
  } catch {
    issues.add(`${key}.endpoint`, `must be a URL like https://s3.example.net:9000, got ${JSON.stringify(raw.endpoint)}`);
  }
  if (!raw.name) issues.add(`${key}.name`, `is required: the S3 region name (signing region), e.g. "us-east-1"`);
  const ssl = url?.protocol === "https:";
  const port = url?.port || (ssl ? "443" : "80");
  return {
    role,
    name: raw.name ?? "",
    endpoint: url ? url.origin : "",
    server: url ? `${url.hostname}:${port}` : "",
    ssl,
    kind: oneOf(issues, `${key}.kind`, raw.kind, REGION_KINDS, "minio"),
    accessKeyKey: SECRET.regionAccessKey(role),
    secretKeyKey: SECRET.regionSecretKey(role),
  };
}

function recoveryPoint(issues: Issues, value: unknown): RecoveryPoint {
  if (value === undefined || value === "latest") return { kind: "latest" };
  if (typeof value === "string" && ISO_RE.test(value) && !Number.isNaN(Date.parse(value))) {
    return { kind: "time", at: new Date(value).toISOString() };
  }
  if (typeof value === "string" && UUID_RE.test(value)) return { kind: "backup", id: value.toLowerCase() };
  issues.add(
    "recovery.point",
    `must be "latest", an ISO timestamp with zone (e.g. 2026-11-28T21:00:00Z) or a backup id (UUID from backup_management), got ${JSON.stringify(value)}`,
  );
  return { kind: "latest" };
}

/** Which parts each role needs. */
const ROLE_NEEDS: Record<Role, { services: boolean; primary: boolean; dr: boolean }> = {
  prod: { services: true, primary: true, dr: true },
  local: { services: true, primary: true, dr: true },
  dr: { services: false, primary: false, dr: true },
  recovery: { services: true, primary: false, dr: false },
};

/**
 * Validates raw config and returns plain specs. Pure: `presentKeys` are the config keys (without
 * the project prefix) that have a value, so missing secrets are reported without reading them.
 */
export function parseSpecs(raw: RawConfig, presentKeys: ReadonlySet<string>): Specs {
  const issues = new Issues();
  const role = oneOf(issues, "role", raw.role ?? (ROLES.includes(raw.stack as Role) ? raw.stack : undefined), ROLES, "prod");
  if (raw.role === undefined && !ROLES.includes(raw.stack as Role)) {
    issues.add("role", `stack "${raw.stack}" is not one of ${ROLES.join(", ")}: set 'pulumi config set ${PROJECT}:role <${ROLES.join("|")}>'`);
  }
  const needs = ROLE_NEEDS[role];
  const namePrefix = raw.namePrefix ?? `kdr-${raw.stack}`;
  if (!/^[a-z][a-z0-9-]{0,20}$/.test(namePrefix)) {
    issues.add("namePrefix", `must be lowercase letters, digits and '-', at most 21 characters, got ${JSON.stringify(namePrefix)}`);
  }
  const tenantId = raw.tenantId ?? "00000000-0000-0000-0000-000000000000";
  if (!UUID_RE.test(tenantId)) issues.add("tenantId", `must be a UUID (the catalog's tenant_id), got ${JSON.stringify(tenantId)}`);

  const d = raw.defaults ?? {};
  const defaultRetention: RetentionSpec = {
    fullDays: positive(issues, "defaults.retention.fullDays", d.retention?.fullDays, DEFAULTS.retention.fullDays),
    incrementalDays: positive(issues, "defaults.retention.incrementalDays", d.retention?.incrementalDays, DEFAULTS.retention.incrementalDays),
    walDays: positive(issues, "defaults.retention.walDays", d.retention?.walDays, DEFAULTS.retention.walDays),
  };
  const rpoByTier = { ...DEFAULTS.rpoSeconds };
  for (const tier of TIERS) rpoByTier[tier] = positive(issues, `defaults.rpoSeconds.${tier}`, d.rpoSeconds?.[tier], DEFAULTS.rpoSeconds[tier]);
  for (const key of Object.keys(d.rpoSeconds ?? {})) {
    if (!(TIERS as readonly string[]).includes(key)) issues.add(`defaults.rpoSeconds.${key}`, `unknown tier; accepted: ${TIERS.join(", ")}`);
  }
  const defaultRto = positive(issues, "defaults.rtoSeconds", d.rtoSeconds, DEFAULTS.rtoSeconds);
  const defaultWalSwitch = positive(issues, "defaults.walSwitchSeconds", d.walSwitchSeconds, DEFAULTS.walSwitchSeconds);
  const uploadMargin = positive(issues, "defaults.uploadMarginSeconds", d.uploadMarginSeconds, DEFAULTS.uploadMarginSeconds);
  const defaultFull = d.schedules?.full ?? DEFAULTS.schedules.full;
  const defaultIncremental = d.schedules?.incremental ?? DEFAULTS.schedules.incremental;
  cron(issues, "defaults.schedules.full", defaultFull, DEFAULTS.schedules.full);
  if (defaultIncremental !== "") cron(issues, "defaults.schedules.incremental", defaultIncremental, DEFAULTS.schedules.incremental);

  const images = {
    agent: raw.images?.agent ?? DEFAULTS.images.agent,
    postgres: raw.images?.postgres ?? DEFAULTS.images.postgres,
    redis: raw.images?.redis ?? DEFAULTS.images.redis,
    files: raw.images?.files ?? DEFAULTS.images.files,
  };

  // Services.
  const services: ServiceSpec[] = [];
  if (needs.services && (raw.services === undefined || !Array.isArray(raw.services) || raw.services.length === 0)) {
    issues.add("services", `must list at least one protected service, e.g. [{ name: postgresql, engine: postgres, tier: critical }]`);
  }
  const seen = new Map<string, number>();
  (needs.services ? (raw.services ?? []) : []).forEach((s, i) => {
    const key = `services[${i}]`;
    if (typeof s?.name !== "string" || !NAME_RE.test(s.name)) {
      issues.add(`${key}.name`, `must be lowercase letters, digits and '-' (at most 31, starting with a letter), got ${JSON.stringify(s?.name)}`);
      return;
    }
    if (seen.has(s.name)) {
      issues.add(`${key}.name`, `duplicate service name "${s.name}" (also services[${seen.get(s.name)}]); each service needs a unique name: rename or remove one`);
      return;
    }
    seen.set(s.name, i);
    if (!(ENGINES as readonly string[]).includes(s.engine)) {
      issues.add(`${key}.engine`, `unknown engine ${JSON.stringify(s.engine)} for service "${s.name}"; accepted: ${ENGINES.join(", ")}`);
      return;
    }
    const engine = s.engine as Engine;
    const tier = oneOf(issues, `${key}.tier`, s.tier, TIERS, TARGET_DEFAULTS.tier);
    const full = cron(issues, `${key}.schedules.full`, s.schedules?.full ?? defaultFull, DEFAULTS.schedules.full);
    const incrementalExpr = s.schedules?.incremental ?? defaultIncremental;
    const incremental = incrementalExpr === "" ? undefined : cron(issues, `${key}.schedules.incremental`, incrementalExpr, DEFAULTS.schedules.incremental);
    const retention: RetentionSpec = {
      fullDays: positive(issues, `${key}.retention.fullDays`, s.retention?.fullDays, defaultRetention.fullDays),
      incrementalDays: positive(issues, `${key}.retention.incrementalDays`, s.retention?.incrementalDays, defaultRetention.incrementalDays),
      walDays: positive(issues, `${key}.retention.walDays`, s.retention?.walDays, defaultRetention.walDays),
    };
    if (retention.fullDays * 86400 < full.interval) {
      issues.add(
        `${key}.retention.fullDays`,
        `${retention.fullDays} d is shorter than the full-backup interval of "${s.name}" (${full.interval / 86400} d from "${full.expr}"): a moment would come with no full backup left; raise retention.fullDays to at least ${Math.ceil(full.interval / 86400)} or back up more often`,
      );
    }
    const walSwitchSeconds = engine === "postgres" ? positive(issues, `${key}.walSwitchSeconds`, s.walSwitchSeconds, defaultWalSwitch) : undefined;
    const rpoSeconds = positive(issues, `${key}.rpoSeconds`, s.rpoSeconds, rpoByTier[tier]);
    // Snapshot engines: the longest time with no backup of either kind, by the same function
    // the schedule policy and the agent use.
    const achievable = engine === "postgres" ? walSwitchSeconds! + uploadMargin : worstGapSeconds([full.expr, incremental?.expr ?? ""]);
    if (achievable > rpoSeconds) {
      const fix =
        engine === "postgres"
          ? `lower ${key}.walSwitchSeconds (continuous WAL achieves walSwitchSeconds + ${uploadMargin} s upload margin = ${achievable} s)`
          : `set ${key}.schedules.incremental to run at least every ${rpoSeconds} s (e.g. "*/${Math.max(1, Math.floor(rpoSeconds / 60))} * * * *"; the shortest configured interval is ${achievable} s)`;
      issues.add(`${key}.rpoSeconds`, `RPO target ${rpoSeconds} s of "${s.name}" (tier ${tier}) cannot be met: ${fix}, or raise rpoSeconds / choose another tier`);
    }
    // A local volume lives on one node. Without a constraint the service (after a reschedule)
    // and its sidecar can each run on a node where the volume is empty.
    if (engine === "volume" && (s.placement ?? []).length === 0) {
      issues.add(
        `${key}.placement`,
        `service "${s.name}" keeps its data on a volume, which lives on one node: pin the service and its backup sidecar to it, e.g. ["node.labels.kryonix.${s.name} == true"] with that label on the node that holds the data`,
      );
    }
    // local and recovery declare their services, and with them the volumes.
    if (engine === "volume" && !s.volume && role !== "local" && role !== "recovery") {
      issues.add(`${key}.volume`, `service "${s.name}" uses the volume engine and needs the Docker volume that holds its data: set ${key}.volume`);
    }
    const defaultPort = engine === "volume" ? undefined : TARGET_DEFAULTS.targetPort[engine];
    const passwordKey = engine === "postgres" || (engine === "redis" && presentKeys.has(SECRET.targetPassword(s.name))) ? SECRET.targetPassword(s.name) : undefined;
    services.push({
      name: s.name,
      engine,
      tier,
      rpoSeconds,
      rtoSeconds: positive(issues, `${key}.rtoSeconds`, s.rtoSeconds, defaultRto),
      achievableRpoSeconds: achievable,
      schedules: { full: full.expr, incremental: incremental?.expr ?? "" },
      fullIntervalSeconds: full.interval,
      retention,
      walSwitchSeconds,
      host: engine === "volume" ? undefined : (s.host ?? `${namePrefix}-${s.name}`),
      port: engine === "volume" ? undefined : positive(issues, `${key}.port`, s.port, defaultPort!),
      user: engine === "postgres" ? (s.user ?? "replicator") : s.user,
      volume: s.volume,
      dataPath: s.dataPath ?? (engine === "postgres" ? "/var/lib/postgresql/data" : "/data"),
      hooks: { pre: s.hooks?.pre, post: s.hooks?.post },
      placement: s.placement ?? [],
      networks: s.networks ?? [],
      image: s.image ?? (engine === "postgres" ? images.postgres : engine === "redis" ? images.redis : images.files),
      passwordKey,
    });
  });

  const maintenance = {
    health: cron(issues, "maintenance.health", raw.maintenance?.health, DEFAULTS.maintenance.health).expr,
    prune: cron(issues, "maintenance.prune", raw.maintenance?.prune, DEFAULTS.maintenance.prune).expr,
    drill: cron(issues, "maintenance.drill", raw.maintenance?.drill, DEFAULTS.maintenance.drill).expr,
  };

  const quotaGiB = { ...DEFAULTS.quotaGiB };
  for (const tier of TIERS) quotaGiB[tier] = positive(issues, `storage.quotaGiB.${tier}`, raw.storage?.quotaGiB?.[tier], DEFAULTS.quotaGiB[tier]);
  const storage = {
    bucketPrefix: raw.storage?.bucketPrefix ?? `${namePrefix}-backups`,
    lockMode: oneOf(issues, "storage.lockMode", raw.storage?.lockMode, LOCK_MODES, "GOVERNANCE"),
    sse: raw.storage?.sse ?? false,
    kmsKeyId: raw.storage?.kmsKeyId ?? "kryonix-dr-backups",
    quotaGiB,
  };
  if (!/^[a-z0-9][a-z0-9-]{1,40}$/.test(storage.bucketPrefix)) {
    issues.add("storage.bucketPrefix", `must be a valid S3 bucket name prefix (lowercase, digits, '-', at most 41), got ${JSON.stringify(storage.bucketPrefix)}`);
  }

  const regions: Specs["regions"] = {};
  const needPrimary = needs.primary || (role === "recovery" && (raw.recovery?.sourceRegion ?? "primary") === "primary");
  const needDr = needs.dr || (role === "recovery" && raw.recovery?.sourceRegion === "dr");
  if (needPrimary) regions.primary = region(issues, "primary", raw.regions?.primary);
  if (needDr) regions.dr = region(issues, "dr", raw.regions?.dr);

  const replication = {
    mode: oneOf(issues, "replication.mode", raw.replication?.mode, REPLICATION_MODES, "native"),
    intervalSeconds: positive(issues, "replication.intervalSeconds", raw.replication?.intervalSeconds, DEFAULTS.replicationIntervalSeconds),
  };
  if (replication.mode === "native" && regions.primary?.kind === "s3" && (role === "prod" || role === "local")) {
    issues.add("replication.mode", `"native" needs MinIO on the primary region (regions.primary.kind is "s3"); use "replicator" for other S3 servers`);
  }
  if (storage.sse && [regions.primary, regions.dr].some((r) => r?.kind === "s3")) {
    issues.add("storage.sse", `server-side encryption is declared through MinIO (KMS); a region of kind "s3" does not support it here: set storage.sse to false (backups are encrypted with age/restic before upload either way)`);
  }

  const c = raw.catalog ?? {};
  if (!c.host) issues.add("catalog.host", `is required: the PostgreSQL server that holds the backup catalog ('pulumi config set --path ${PROJECT}:catalog.host <host>')`);
  const catalog: CatalogSpec = {
    host: c.host ?? "",
    port: positive(issues, "catalog.port", c.port, 5432),
    agentHost: c.agentHost ?? c.host ?? "",
    database: c.database ?? "kryonix_dr",
    adminUser: c.adminUser ?? "postgres",
    owner: c.owner ?? "kryonix_dr_owner",
    reader: c.reader ?? "kryonix_dr_dashboard",
    writer: c.writer ?? "kryonix_dr_agent",
    sslmode: oneOf(issues, "catalog.sslmode", c.sslmode, ["disable", "require", "verify-ca", "verify-full"] as const, "require"),
  };

  const sidecar = {
    cpus: positive(issues, "sidecar.cpus", raw.sidecar?.cpus, DEFAULTS.sidecar.cpus),
    memoryMiB: positive(issues, "sidecar.memoryMiB", raw.sidecar?.memoryMiB, DEFAULTS.sidecar.memoryMiB),
    metricsPort: positive(issues, "sidecar.metricsPort", raw.sidecar?.metricsPort, DEFAULT_METRICS_PORT),
    networks: raw.sidecar?.networks ?? [],
    placement: raw.sidecar?.placement ?? [],
  };
  const monitoring = {
    replicationLagSeconds: positive(issues, "monitoring.replicationLagSeconds", raw.monitoring?.replicationLagSeconds, DEFAULTS.monitoring.replicationLagSeconds),
    failedRunsPerDay: positive(issues, "monitoring.failedRunsPerDay", raw.monitoring?.failedRunsPerDay, DEFAULTS.monitoring.failedRunsPerDay),
    rpoWarningRatio: positive(issues, "monitoring.rpoWarningRatio", raw.monitoring?.rpoWarningRatio, DEFAULTS.monitoring.rpoWarningRatio),
  };

  if (role === "dr" && !raw.primaryStack) {
    issues.add("primaryStack", `the DR stack finds the primary through a StackReference: set 'pulumi config set ${PROJECT}:primaryStack <org>/kryonix-dr/prod'`);
  }
  const recovery =
    role === "recovery"
      ? {
          point: recoveryPoint(issues, raw.recovery?.point),
          sourceRegion: oneOf(issues, "recovery.sourceRegion", raw.recovery?.sourceRegion, REGIONS, "primary"),
          serviceNamePrefix: raw.recovery?.serviceNamePrefix ?? namePrefix,
        }
      : undefined;

  // Secrets this composition reads: checked here so the message can say which and how.
  const secretKeys: string[] = [SECRET.catalogWriterPassword, SECRET.ageIdentity, SECRET.ageRecipient];
  if (role === "prod" || role === "local") {
    secretKeys.push(SECRET.catalogAdminPassword, SECRET.catalogOwnerPassword, SECRET.catalogReaderPassword);
  }
  // The DR stack declares no S3 resources (its drill reads with credentials from the primary stack).
  if (role !== "dr") for (const r of [regions.primary, regions.dr]) if (r) secretKeys.push(r.accessKeyKey, r.secretKeyKey);
  if (services.some((s) => s.engine === "volume") || role === "dr") secretKeys.push(SECRET.resticPassword);
  for (const s of services) if (s.passwordKey) secretKeys.push(s.passwordKey);
  for (const key of secretKeys) {
    if (!presentKeys.has(key)) {
      issues.add(key, `secret is missing: set it with 'pulumi config set --secret ${PROJECT}:${key} <value>'`);
    }
  }
  const optionalSecretKeys = [SECRET.notificationTargets].filter((k) => presentKeys.has(k));

  if (issues.list.length > 0) throw new ConfigError(issues.list);
  return {
    role,
    stack: raw.stack,
    namePrefix,
    tenantId,
    services,
    maintenance,
    storage,
    regions,
    replication,
    catalog,
    images,
    sidecar,
    monitoring,
    primaryStack: raw.primaryStack,
    recovery,
    secretKeys,
    optionalSecretKeys,
  };
}

/** Credentials and keys, as Pulumi secrets. */
export interface Secrets {
  get(key: string): pulumi.Output<string>;
  /** Notification targets (JSON: webhook URLs etc. by name), when configured. */
  notificationTargets?: pulumi.Output<string>;
}

/** Reads and validates this stack's config. The stack entry calls it once. */
export function loadConfig(): { specs: Specs; secrets: Secrets } {
  const cfg = new pulumi.Config(PROJECT);
  const raw: RawConfig = {
    role: cfg.get("role"),
    stack: pulumi.getStack(),
    namePrefix: cfg.get("namePrefix"),
    tenantId: cfg.get("tenantId"),
    services: cfg.getObject<RawService[]>("services"),
    defaults: cfg.getObject("defaults"),
    maintenance: cfg.getObject("maintenance"),
    storage: cfg.getObject("storage"),
    regions: cfg.getObject("regions"),
    replication: cfg.getObject("replication"),
    catalog: cfg.requireObject("catalog"),
    images: cfg.getObject("images"),
    sidecar: cfg.getObject("sidecar"),
    monitoring: cfg.getObject("monitoring"),
    primaryStack: cfg.get("primaryStack"),
    recovery: cfg.getObject("recovery"),
  };
  // Only the key names are taken here; secret values are read below with requireSecret.
  const prefix = `${PROJECT}:`;
  const present = new Set(
    Object.keys(pulumi.runtime.allConfig())
      .filter((k) => k.startsWith(prefix))
      .map((k) => k.slice(prefix.length)),
  );
  const specs = parseSpecs(raw, present);
  const cache = new Map<string, pulumi.Output<string>>();
  for (const key of specs.secretKeys) cache.set(key, cfg.requireSecret(key));
  const secrets: Secrets = {
    get(key) {
      const value = cache.get(key);
      if (!value) throw new Error(`internal: secret ${key} was not declared in specs.secretKeys`);
      return value;
    },
    notificationTargets: specs.optionalSecretKeys.includes(SECRET.notificationTargets) ? cfg.requireSecret(SECRET.notificationTargets) : undefined,
  };
  return { specs, secrets };
}
