/**
 * `parseSpecs()` (pure) validates raw config once and turns it into the plain typed specs the
 * compositions hand to components. Every rejection names the key and the fix.
 */
import { DEFAULT_METRICS_PORT, ENGINES, isIsoTimeWithZone, isUuid, LOCK_MODES, PRIORITIES, PRIORITY_RTO_SECONDS, REPLICATION_MODES, TARGET_DEFAULTS, TIER_PRIORITY, TIERS, type Engine } from "../../contract/index.js";
import { cronError, worstGapSeconds } from "../../contract/schedule.js";
import { PROJECT, ROLES, Role, REGION_KINDS, REGIONS, RegionRole, DEFAULTS, ConfigError, RawRegion, RawConfig, RawService, RetentionSpec, ServiceSpec, RegionSpec, CatalogSpec, RecoveryPoint, Specs, SECRET, CATALOG_SERVICE, RECOVERY_CATALOG_MODES } from "./schema.js";
import { parseFailback, parseFailover } from "./failover.js";
import { bool, consistency, Issues, positive, PREFIX_RE, retentionDays, servicePrefix, sqliteFiles, stringList, wholeDays } from "./values.js";

// ---------- parsing ----------

// A Swarm service name part: it never ends in '-' (names are joined with '-').
const NAME_RE = /^[a-z](?:[a-z0-9-]{0,29}[a-z0-9])?$/;

/** monitoring.prometheus: run Prometheus with the generated config (image required; port optional). */
function prometheusSpec(issues: Issues, raw: { image?: string; scrapeIntervalSeconds?: number; groupIntervalSeconds?: number; publishedPort?: number } | undefined) {
  if (raw === undefined) return undefined;
  if (typeof raw.image !== "string" || raw.image === "") {
    issues.add("monitoring.prometheus.image", `Prometheus needs its image: set it, e.g. 'pulumi config set --path ${PROJECT}:monitoring.prometheus.image prom/prometheus:v2.42.0'`);
  }
  const port = raw.publishedPort;
  if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) {
    issues.add("monitoring.prometheus.publishedPort", `must be a TCP port (1-65535), got ${JSON.stringify(port)}`);
  }
  return {
    image: raw.image ?? "",
    scrapeIntervalSeconds: positive(issues, "monitoring.prometheus.scrapeIntervalSeconds", raw.scrapeIntervalSeconds, 15),
    groupIntervalSeconds: positive(issues, "monitoring.prometheus.groupIntervalSeconds", raw.groupIntervalSeconds, 60),
    publishedPort: port,
  };
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
    if (cronError(expr) === "the pattern never runs") {
      issues.add(key, `cron ${JSON.stringify(expr)} never fires (no such date, e.g. February 31st): pick a day every month has, e.g. "0 2 1 * *"`);
      return { expr: fallback, interval: worstGapSeconds([fallback]) };
    }
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

function recoveryPoint(issues: Issues, value: unknown, now: number): RecoveryPoint {
  if (value === undefined || value === "latest") return { kind: "latest" };
  if (typeof value === "string" && isIsoTimeWithZone(value)) {
    const at = new Date(value);
    if (at.getTime() > now) {
      issues.add("recovery.point", `${at.toISOString()} is in the future (this machine's clock reads ${new Date(now).toISOString()}): nothing has been backed up at that moment yet; choose a time at or before now, or "latest"`);
    }
    return { kind: "time", at: at.toISOString() };
  }
  if (typeof value === "string" && isUuid(value)) return { kind: "backup", id: value.toLowerCase() };
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

/** The defaults every service falls back to (kryonix-dr:defaults, kryonix-dr:images). */
function parseServiceDefaults(issues: Issues, raw: RawConfig) {
  const d = raw.defaults ?? {};
  const defaultRetention: RetentionSpec = {
    fullDays: retentionDays(issues, "defaults.retention.fullDays", d.retention?.fullDays, DEFAULTS.retention.fullDays),
    incrementalDays: retentionDays(issues, "defaults.retention.incrementalDays", d.retention?.incrementalDays, DEFAULTS.retention.incrementalDays),
    walDays: retentionDays(issues, "defaults.retention.walDays", d.retention?.walDays, DEFAULTS.retention.walDays),
  };
  const rpoByTier = { ...DEFAULTS.rpoSeconds };
  for (const tier of TIERS) rpoByTier[tier] = positive(issues, `defaults.rpoSeconds.${tier}`, d.rpoSeconds?.[tier], DEFAULTS.rpoSeconds[tier]);
  for (const key of Object.keys(d.rpoSeconds ?? {})) {
    if (!(TIERS as readonly string[]).includes(key)) issues.add(`defaults.rpoSeconds.${key}`, `unknown tier; accepted: ${TIERS.join(", ")}`);
  }
  // Unset, each service's priority gives its RTO.
  const defaultRto = d.rtoSeconds === undefined ? undefined : positive(issues, "defaults.rtoSeconds", d.rtoSeconds, DEFAULTS.rtoSeconds);
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
  return {
    retention: defaultRetention,
    rpoByTier,
    rtoSeconds: defaultRto,
    walSwitchSeconds: defaultWalSwitch,
    uploadMarginSeconds: uploadMargin,
    full: defaultFull,
    incremental: defaultIncremental,
    images,
  };
}

interface ServiceContext extends ReturnType<typeof parseServiceDefaults> {
  role: Role;
  namePrefix: string;
  presentKeys: ReadonlySet<string>;
  /** Names taken so far, with their config key, to report duplicates. */
  seen: Map<string, string>;
}

/** One entry of kryonix-dr:services; undefined when it is too broken to describe (the issue is recorded). */
function parseService(issues: Issues, s: RawService, key: string, ctx: ServiceContext): ServiceSpec | undefined {
  if (typeof s?.name !== "string" || !NAME_RE.test(s.name)) {
    issues.add(`${key}.name`, `must be lowercase letters, digits and '-' (at most 31, starting with a letter, not ending in '-'), got ${JSON.stringify(s?.name)}`);
    return undefined;
  }
  if (ctx.seen.has(s.name)) {
    const also = ctx.seen.get(s.name);
    issues.add(
      `${key}.name`,
      also === "catalog.backup"
        ? `"${s.name}" is the name the catalog server's own backups are recorded under (catalog.backup): rename the service`
        : `duplicate service name "${s.name}" (also ${also}); each service needs a unique name: rename or remove one`,
    );
    return undefined;
  }
  ctx.seen.set(s.name, key);
  if (!(ENGINES as readonly string[]).includes(s.engine)) {
    issues.add(`${key}.engine`, `unknown engine ${JSON.stringify(s.engine)} for service "${s.name}"; accepted: ${ENGINES.join(", ")}`);
    return undefined;
  }
  const engine = s.engine as Engine;
  const tier = oneOf(issues, `${key}.tier`, s.tier, TIERS, TARGET_DEFAULTS.tier);
  const priority = oneOf(issues, `${key}.priority`, s.priority, PRIORITIES, TIER_PRIORITY[tier]);
  const full = cron(issues, `${key}.schedules.full`, s.schedules?.full ?? ctx.full, DEFAULTS.schedules.full);
  const incrementalExpr = s.schedules?.incremental ?? ctx.incremental;
  const incremental = incrementalExpr === "" ? undefined : cron(issues, `${key}.schedules.incremental`, incrementalExpr, DEFAULTS.schedules.incremental);
  const retention: RetentionSpec = {
    fullDays: retentionDays(issues, `${key}.retention.fullDays`, s.retention?.fullDays, ctx.retention.fullDays),
    incrementalDays: retentionDays(issues, `${key}.retention.incrementalDays`, s.retention?.incrementalDays, ctx.retention.incrementalDays),
    walDays: retentionDays(issues, `${key}.retention.walDays`, s.retention?.walDays, ctx.retention.walDays),
  };
  if (retention.fullDays * 86400 < full.interval) {
    issues.add(
      `${key}.retention.fullDays`,
      `${retention.fullDays} d is shorter than the full-backup interval of "${s.name}" (${full.interval / 86400} d from "${full.expr}"): a moment would come with no full backup left; raise retention.fullDays to at least ${Math.ceil(full.interval / 86400)} or back up more often`,
    );
  }
  const walSwitchSeconds = engine === "postgres" ? positive(issues, `${key}.walSwitchSeconds`, s.walSwitchSeconds, ctx.walSwitchSeconds) : undefined;
  if (s.logicalDumpEveryDays !== undefined && engine !== "postgres") issues.add(`${key}.logicalDumpEveryDays`, `applies to PostgreSQL services only (logical pg_dump), and "${s.name}" is ${engine}: remove it`);
  const logicalDumpEveryDays = engine === "postgres" ? wholeDays(issues, `${key}.logicalDumpEveryDays`, s.logicalDumpEveryDays, undefined) : undefined;
  const rpoSeconds = positive(issues, `${key}.rpoSeconds`, s.rpoSeconds, ctx.rpoByTier[tier]);
  // Snapshot engines: the longest time with no backup of either kind, by the same function
  // the schedule policy and the agent use.
  const achievable = engine === "postgres" ? walSwitchSeconds! + ctx.uploadMarginSeconds : worstGapSeconds([full.expr, incremental?.expr ?? ""]);
  if (achievable > rpoSeconds) {
    const fix =
      engine === "postgres"
        ? `lower ${key}.walSwitchSeconds (continuous WAL achieves walSwitchSeconds + ${ctx.uploadMarginSeconds} s upload margin = ${achievable} s)`
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
  if (engine === "volume" && !s.volume && ctx.role !== "local" && ctx.role !== "recovery") {
    issues.add(`${key}.volume`, `service "${s.name}" uses the volume engine and needs the Docker volume that holds its data: set ${key}.volume`);
  }
  const defaultPort = engine === "volume" ? undefined : TARGET_DEFAULTS.targetPort[engine];
  const passwordKey = engine === "postgres" || (engine === "redis" && ctx.presentKeys.has(SECRET.targetPassword(s.name))) ? SECRET.targetPassword(s.name) : undefined;
  return {
    name: s.name,
    engine,
    tier,
    priority,
    rpoSeconds,
    rtoSeconds: positive(issues, `${key}.rtoSeconds`, s.rtoSeconds, ctx.rtoSeconds ?? PRIORITY_RTO_SECONDS[priority]),
    achievableRpoSeconds: achievable,
    schedules: { full: full.expr, incremental: incremental?.expr ?? "" },
    fullIntervalSeconds: full.interval,
    retention,
    walSwitchSeconds,
    logicalDumpEveryDays,
    host: engine === "volume" ? undefined : (s.host ?? `${ctx.namePrefix}-${s.name}`),
    port: engine === "volume" ? undefined : positive(issues, `${key}.port`, s.port, defaultPort!),
    user: engine === "postgres" ? (s.user ?? "replicator") : s.user,
    volume: s.volume,
    dataPath: s.dataPath ?? (engine === "postgres" ? "/var/lib/postgresql/data" : "/data"),
    hooks: { pre: s.hooks?.pre, post: s.hooks?.post },
    placement: s.placement ?? [],
    networks: s.networks ?? [],
    image: s.image ?? (engine === "postgres" ? ctx.images.postgres : engine === "redis" ? ctx.images.redis : ctx.images.files),
    args: stringList(issues, `${key}.args`, s.args),
    sqlite: sqliteFiles(issues, `${key}.sqlite`, engine, s.sqlite),
    ...consistency(issues, key, engine, s),
    passwordKey,
};
}

/**
 * The catalog server as a protected PostgreSQL (catalog.backup): critical, P0, streamed WAL,
 * backed up by a REPLICATION login on the catalog's own host and port.
 */
function parseCatalogService(
  issues: Issues,
  b: Exclude<NonNullable<RawConfig["catalog"]>["backup"], false | undefined>,
  catalog: CatalogSpec,
  ctx: ServiceContext,
): ServiceSpec | undefined {
  if (typeof b !== "object") {
    issues.add("catalog.backup", `must be false or an object such as { user: kryonix_dr_replication }, got ${JSON.stringify(b)}`);
    return undefined;
  }
  const raw: RawService = {
    name: CATALOG_SERVICE,
    engine: "postgres",
    tier: "critical",
    priority: "P0",
    host: catalog.agentHost,
    port: catalog.port,
    user: b.user ?? "kryonix_dr_replication",
    schedules: b.schedules,
    retention: b.retention,
    walSwitchSeconds: b.walSwitchSeconds,
    rpoSeconds: b.rpoSeconds,
    placement: b.placement,
  };
  const spec = parseService(issues, raw, "catalog.backup", { ...ctx, seen: new Map() });
  return spec && { ...spec, passwordKey: SECRET.catalogReplicationPassword };
}

function serviceList(issues: Issues, raw: RawConfig, ctx: ServiceContext): ServiceSpec[] {
  return (Array.isArray(raw.services) ? raw.services : []).flatMap((s, i) => parseService(issues, s, `services[${i}]`, ctx) ?? []);
}

/**
 * Only the services of a stack's config, as the specs its components receive: the drill reads the
 * local stack's services this way, so it judges them by the same defaults the stack deploys.
 */
export function parseServiceSpecs(raw: RawConfig, role: Role, presentKeys: ReadonlySet<string> = new Set()): ServiceSpec[] {
  const issues = new Issues();
  const defaults = parseServiceDefaults(issues, raw);
  const namePrefix = raw.namePrefix ?? `kdr-${raw.stack}`;
  const services = serviceList(issues, raw, { ...defaults, role, namePrefix, presentKeys, seen: new Map() });
  if (issues.list.length > 0) throw new ConfigError(issues.list);
  return services;
}

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
  if (!PREFIX_RE.test(namePrefix)) {
    issues.add("namePrefix", `must be lowercase letters, digits and '-', at most 21 characters, starting with a letter and not ending in '-', got ${JSON.stringify(namePrefix)}`);
  }
  const tenantId = raw.tenantId ?? "00000000-0000-0000-0000-000000000000";
  if (!isUuid(tenantId)) issues.add("tenantId", `must be a UUID (the catalog's tenant_id), got ${JSON.stringify(tenantId)}`);

  const defaults = parseServiceDefaults(issues, raw);
  const images = defaults.images;

  // Services.
  if (needs.services && (raw.services === undefined || !Array.isArray(raw.services) || raw.services.length === 0)) {
    issues.add("services", `must list at least one protected service, e.g. [{ name: postgresql, engine: postgres, tier: critical }]`);
  }
  // prod and local own the catalog, and protect its server unless catalog.backup is false.
  const backsUpCatalog = (role === "prod" || role === "local") && raw.catalog?.backup !== false;
  const serviceCtx = { ...defaults, role, namePrefix, presentKeys, seen: new Map<string, string>(backsUpCatalog ? [[CATALOG_SERVICE, "catalog.backup"]] : []) };
  const services = needs.services ? serviceList(issues, raw, serviceCtx) : [];

  const maintenance = {
    health: cron(issues, "maintenance.health", raw.maintenance?.health, DEFAULTS.maintenance.health).expr,
    prune: cron(issues, "maintenance.prune", raw.maintenance?.prune, DEFAULTS.maintenance.prune).expr,
    drill: cron(issues, "maintenance.drill", raw.maintenance?.drill, DEFAULTS.maintenance.drill).expr,
    verify: cron(issues, "maintenance.verify", raw.maintenance?.verify, DEFAULTS.maintenance.verify).expr,
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
  const catalogService = backsUpCatalog ? parseCatalogService(issues, c.backup || {}, catalog, serviceCtx) : undefined;

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
    agentDownSeconds: positive(issues, "monitoring.agentDownSeconds", raw.monitoring?.agentDownSeconds, DEFAULTS.monitoring.agentDownSeconds),
    prometheus: prometheusSpec(issues, raw.monitoring?.prometheus),
  };

  if (role === "dr" && !raw.primaryStack) {
    issues.add("primaryStack", `the DR stack finds the primary through a StackReference: set 'pulumi config set ${PROJECT}:primaryStack <org>/kryonix-dr/prod'`);
  }
  const recovery =
    role === "recovery"
      ? {
          point: recoveryPoint(issues, raw.recovery?.point, Date.now()),
          sourceRegion: oneOf(issues, "recovery.sourceRegion", raw.recovery?.sourceRegion, REGIONS, "primary"),
          serviceNamePrefix: servicePrefix(issues, raw.recovery?.serviceNamePrefix, namePrefix),
          catalog: oneOf(issues, "recovery.catalog", raw.recovery?.catalog, RECOVERY_CATALOG_MODES, "existing"),
          stableNames: bool(issues, "recovery.stableNames", raw.recovery?.stableNames, true),
        }
      : undefined;

  const failover = parseFailover(issues, role, raw, presentKeys);
  const failback = parseFailback(issues, role, raw, services);

  // Secrets this composition reads: checked here so the message can say which and how.
  const secretKeys: string[] = [SECRET.catalogWriterPassword, SECRET.ageIdentity, SECRET.ageRecipient];
  if (role === "prod" || role === "local") {
    secretKeys.push(SECRET.catalogAdminPassword, SECRET.catalogOwnerPassword, SECRET.catalogReaderPassword);
  }
  // A recovery that makes the catalog database creates it as the admin and migrates it as the owner.
  if (recovery && recovery.catalog !== "existing") secretKeys.push(SECRET.catalogAdminPassword, SECRET.catalogOwnerPassword);
  // The DR stack declares no S3 resources (its drill reads with credentials from the primary stack).
  if (role !== "dr") for (const r of [regions.primary, regions.dr]) if (r) secretKeys.push(r.accessKeyKey, r.secretKeyKey);
  if (services.some((s) => s.engine === "volume") || role === "dr") secretKeys.push(SECRET.resticPassword);
  for (const s of services) if (s.passwordKey) secretKeys.push(s.passwordKey);
  for (const s of failover?.standbys ?? []) if (s.passwordKey) secretKeys.push(s.passwordKey);
  if (catalogService) secretKeys.push(SECRET.catalogReplicationPassword);
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
    catalogService,
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
    failover,
    failback,
    secretKeys,
    optionalSecretKeys,
  };
}
