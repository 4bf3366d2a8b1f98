/**
 * Building blocks the stack compositions share: providers from config, and the protection of a
 * list of services (storage users, sidecars, crons) in one region. Specs in, components out.
 */
import * as pulumi from "@pulumi/pulumi";
import * as minio from "@pulumi/minio";
import * as postgresql from "@pulumi/postgresql";
import { AGENT_ENV, SECRET_FILES, agentFlags } from "../contract/index.js";
import { BackupSidecar } from "../components/backup-sidecar.js";
import type { BackupStorage, Credentials, StorageService } from "../components/backup-storage.js";
import { CronJob, type CronJobEntry } from "../components/cron-job.js";
import { Monitoring, notifyRelayUrl } from "../components/monitoring.js";
import { SECRET, type RegionSpec, type Secrets, type ServiceSpec, type Specs } from "./config.js";

/** A MinIO provider for one region; its credentials stay secrets. */
export function minioProvider(region: RegionSpec, secrets: Secrets): minio.Provider {
  return new minio.Provider(`${region.role}-s3`, {
    minioServer: region.server,
    minioRegion: region.name,
    minioSsl: region.ssl,
    minioUser: secrets.get(region.accessKeyKey),
    minioPassword: secrets.get(region.secretKeyKey),
  });
}

/** The catalog server, as its admin (creates the database and roles). */
export function catalogProvider(specs: Specs, secrets: Secrets): postgresql.Provider {
  return new postgresql.Provider("catalog", {
    host: specs.catalog.host,
    port: specs.catalog.port,
    username: specs.catalog.adminUser,
    password: secrets.get(SECRET.catalogAdminPassword),
    sslmode: specs.catalog.sslmode,
    database: "postgres",
    superuser: true,
  });
}

/** Every service this stack backs up: the configured ones, then the catalog server (catalog.backup). */
export function protectedServices(specs: Specs): ServiceSpec[] {
  return specs.catalogService ? [...specs.services, specs.catalogService] : specs.services;
}

export function storageServices(specs: Specs): StorageService[] {
  return protectedServices(specs).map((s) => ({ name: s.name, tier: s.tier, engine: s.engine, retention: s.retention }));
}

/** Where a sidecar finds what it protects, when the stack declares the service itself. */
export interface DeclaredTarget {
  host: pulumi.Input<string>;
  volume?: pulumi.Input<string>;
}

/** The catalog as the agents see it (they write as the writer role). */
export function agentCatalog(specs: Specs, secrets: Secrets) {
  return {
    host: specs.catalog.agentHost,
    port: specs.catalog.port,
    database: specs.catalog.database,
    user: specs.catalog.writer,
    password: secrets.get(SECRET.catalogWriterPassword),
  };
}

/** One sidecar per service, writing to its tier bucket with its own least-privilege user. */
export function declareSidecars(args: {
  specs: Specs;
  secrets: Secrets;
  region: RegionSpec;
  storage: BackupStorage;
  networks: pulumi.Input<string>[];
  declared?: Record<string, DeclaredTarget>;
  /** Services with no sidecar here now (a failback's returning standbys, until the switch). */
  skip?: ReadonlySet<string>;
  dependsOn?: pulumi.Input<pulumi.Resource>[];
}): Record<string, BackupSidecar> {
  const { specs, secrets, region, storage } = args;
  const out: Record<string, BackupSidecar> = {};
  for (const s of protectedServices(specs)) {
    if (args.skip?.has(s.name)) continue;
    const creds = storage.sidecarCredentials[s.name];
    const bucket = storage.buckets[s.tier];
    if (!creds || !bucket) throw new Error(`internal: storage declared no user or bucket for service ${s.name}`);
    const declared = args.declared?.[s.name];
    out[s.name] = new BackupSidecar(
      `sidecar-${s.name}`,
      {
        service: s.name,
        engine: s.engine,
        tier: s.tier,
        tenantId: specs.tenantId,
        image: specs.images.agent,
        serviceName: `${specs.namePrefix}-${s.name}-backup`,
        rpoSeconds: s.rpoSeconds,
        rtoSeconds: s.rtoSeconds,
        schedules: s.schedules,
        retention: s.retention,
        walSwitchSeconds: s.walSwitchSeconds,
        // The catalog server's REPLICATION login reads no database: base + WAL are its backup.
        pgLogicalDumps: s === specs.catalogService ? "none" : undefined,
        pgLogicalEveryDays: s.logicalDumpEveryDays,
        target:
          s.engine === "volume"
            ? undefined
            : {
                host: declared?.host ?? s.host!,
                port: s.port!,
                user: s.user,
                password: s.passwordKey ? secrets.get(s.passwordKey) : undefined,
              },
        volume: s.engine === "volume" ? { source: declared?.volume ?? s.volume!, path: s.dataPath } : undefined,
        hooks: s.hooks,
        sqlite: s.sqlite,
        tsdbSnapshot: s.tsdbSnapshot,
        maintenanceMode: s.maintenanceMode,
        s3: { endpoint: region.endpoint, region: region.name, bucket, accessKey: creds.accessKey, secretKey: creds.secretKey },
        catalog: agentCatalog(specs, secrets),
        encryptionRecipient: secrets.get(SECRET.ageRecipient),
        resticPassword: s.engine === "volume" ? secrets.get(SECRET.resticPassword) : undefined,
        networks: [...args.networks, ...s.networks],
        placement: [...specs.sidecar.placement, ...s.placement],
        limits: { cpus: specs.sidecar.cpus, memoryMiB: specs.sidecar.memoryMiB },
        metricsPort: specs.sidecar.metricsPort,
        notifyUrl: notifyUrl(specs, secrets),
      },
      { dependsOn: args.dependsOn },
    );
  }
  return out;
}

/** What the crons need to know of a protected service (the primary stack exports this list). */
export interface ServiceSummary {
  name: string;
  engine: string;
  tier: string;
  rpoSeconds: number;
  rtoSeconds: number;
  retention: { fullDays: number; incrementalDays: number; walDays: number };
}

export function summarize(specs: Specs): ServiceSummary[] {
  return protectedServices(specs).map((s) => ({ name: s.name, engine: s.engine, tier: s.tier, rpoSeconds: s.rpoSeconds, rtoSeconds: s.rtoSeconds, retention: s.retention }));
}

/** A service's settings as agent flags (from the settings table), for one cron job. */
export function serviceFlags(s: ServiceSummary, bucket: string): string[] {
  return agentFlags({
    service: s.name,
    engine: s.engine,
    tier: s.tier,
    s3Bucket: bucket,
    rpoSeconds: s.rpoSeconds,
    rtoSeconds: s.rtoSeconds,
    retentionFullDays: s.retention.fullDays,
    retentionIncrementalDays: s.retention.incrementalDays,
    retentionWalDays: s.retention.walDays,
  });
}

/** Where the drill cron restores to: its scratch volume, one directory per service. */
export const DRILL_SCRATCH = "/var/lib/kryonix-dr/drill";

/**
 * The cron jobs, one per service and purpose, from the maintenance schedules in config:
 * health checks (freshness of the newest verified recovery point against the RPO), prune, the
 * verification of each new backup soon after it completes, and the weekly drill (re-read and
 * check every artifact, then restore into scratch space).
 */
export function cronJobs(
  kind: "maintenance" | "drill",
  services: ServiceSummary[],
  buckets: Record<string, string>,
  schedules: Specs["maintenance"],
  /**
   * owner: the region whose sidecars write the backups (prod, local) prunes them and verifies each
   * new one; the dr region only drills its copies, and verifies each new backup of the services
   * it has promoted (verifyNew), whose sidecars now write there.
   */
  options: { owner: boolean; verifyNew?: readonly string[] },
): CronJobEntry[] {
  return services.flatMap((s) => {
    const bucket = buckets[s.tier];
    if (!bucket) throw new Error(`no bucket for tier ${s.tier} of service ${s.name} (buckets: ${Object.keys(buckets).join(", ")})`);
    const flags = serviceFlags(s, bucket);
    if (kind === "maintenance") {
      const jobs: CronJobEntry[] = [{ name: `health-${s.name}`, schedule: schedules.health, command: ["health", ...flags] }];
      if (options.owner) jobs.push({ name: `prune-${s.name}`, schedule: schedules.prune, command: ["prune", ...flags] });
      return jobs;
    }
    return [
      // Every backup verified within minutes of completing (the sidecar cannot: it holds no key).
      ...(options.owner || options.verifyNew?.includes(s.name) ? [{ name: `verify-new-${s.name}`, schedule: schedules.verify, command: ["verify", "--pending", ...flags] }] : []),
      { name: `verify-${s.name}`, schedule: schedules.drill, command: ["verify", ...flags] },
      // The scratch target holds last week's drill: --clean-target empties it (and only it) first.
      { name: `restore-drill-${s.name}`, schedule: schedules.drill, command: ["restore", "--target", `${DRILL_SCRATCH}/${s.name}`, "--clean-target", ...flags] },
    ];
  });
}

function cronEnv(specs: Specs, region: { endpoint: pulumi.Input<string>; name: pulumi.Input<string> }, catalog: ReturnType<typeof agentCatalog>) {
  return {
    [AGENT_ENV.tenantId]: specs.tenantId,
    [AGENT_ENV.s3Endpoint]: region.endpoint,
    [AGENT_ENV.s3Region]: region.name,
    [AGENT_ENV.catalogHost]: catalog.host,
    [AGENT_ENV.catalogPort]: String(catalog.port),
    [AGENT_ENV.catalogDatabase]: catalog.database,
    [AGENT_ENV.catalogUser]: catalog.user,
    [AGENT_ENV.metricsPort]: String(specs.sidecar.metricsPort),
    [AGENT_ENV.stateDir]: "/var/lib/kryonix-dr",
  };
}

/**
 * Maintenance (health every 2 h, weekly prune) and the weekly restore drill, in one region.
 * The drill cron is the only long-running container with the age identity: it must decrypt.
 */
export function declareCrons(args: {
  specs: Specs;
  secrets: Secrets;
  purposeSuffix?: string;
  region: { endpoint: pulumi.Input<string>; name: pulumi.Input<string> };
  /** Protected services (known here, or from the primary stack's outputs). */
  services: pulumi.Input<ServiceSummary[]>;
  /** Bucket name per tier. */
  buckets: pulumi.Input<Record<string, string>>;
  restore: Credentials | { accessKey: pulumi.Input<string>; secretKey: pulumi.Input<string> };
  prune?: Credentials;
  networks: pulumi.Input<string>[];
  /** dr: the promoted services, whose new backups this region verifies. */
  verifyNew?: readonly string[];
  dependsOn?: pulumi.Input<pulumi.Resource>[];
}): { maintenance: CronJob; drill: CronJob } {
  const { specs, secrets } = args;
  const suffix = args.purposeSuffix ? `-${args.purposeSuffix}` : "";
  const catalog = agentCatalog(specs, secrets);
  const relay = notifyUrl(specs, secrets);
  const env = { ...cronEnv(specs, args.region, catalog), ...(relay ? { [AGENT_ENV.notifyUrl]: relay } : {}) };
  const restic = specs.services.some((s) => s.engine === "volume") || specs.role === "dr";
  const common = {
    image: specs.images.agent,
    env,
    networks: args.networks,
    placement: specs.sidecar.placement,
  };
  const jobs = (kind: "maintenance" | "drill") =>
    pulumi.all([args.services, args.buckets]).apply(([services, buckets]) => cronJobs(kind, services, buckets, specs.maintenance, { owner: args.prune !== undefined, verifyNew: args.verifyNew }));
  const maintenance = new CronJob(
    `maintenance${suffix}`,
    {
      ...common,
      purpose: `maintenance${suffix}`,
      serviceName: `${specs.namePrefix}-maintenance${suffix}`,
      jobs: jobs("maintenance"),
      secrets: [
        { file: SECRET_FILES.catalogPassword, value: catalog.password },
        ...(args.prune
          ? [
              { file: SECRET_FILES.s3AccessKey, value: args.prune.accessKey },
              { file: SECRET_FILES.s3SecretKey, value: args.prune.secretKey },
            ]
          : []),
        ...(args.prune && restic ? [{ file: SECRET_FILES.resticPassword, value: secrets.get(SECRET.resticPassword) }] : []),
      ],
    },
    { dependsOn: args.dependsOn },
  );
  const drill = new CronJob(
    `drill${suffix}`,
    {
      ...common,
      purpose: `drill${suffix}`,
      serviceName: `${specs.namePrefix}-drill${suffix}`,
      jobs: jobs("drill"),
      secrets: [
        { file: SECRET_FILES.catalogPassword, value: catalog.password },
        { file: SECRET_FILES.s3AccessKey, value: args.restore.accessKey },
        { file: SECRET_FILES.s3SecretKey, value: args.restore.secretKey },
        { file: SECRET_FILES.encryptionIdentity, value: secrets.get(SECRET.ageIdentity) },
        ...(restic ? [{ file: SECRET_FILES.resticPassword, value: secrets.get(SECRET.resticPassword) }] : []),
      ],
      // Drills restore into scratch space on a volume, never into the container layer or /tmp.
      mounts: [{ type: "volume", source: `${specs.namePrefix}-drill-scratch${suffix}`, target: "/var/lib/kryonix-dr" }],
    },
    { dependsOn: args.dependsOn },
  );
  return { maintenance, drill };
}

/** The notify relay's Swarm name: agents post events to it, Alertmanager its alerts. */
export const notifyRelayName = (specs: Specs): string => `${specs.namePrefix}-notify`;

/** KDR_NOTIFY_URL of every agent that reports events, when anyone is to be told. */
export function notifyUrl(specs: Specs, secrets: Secrets): string | undefined {
  return secrets.notificationTargets === undefined ? undefined : notifyRelayUrl(notifyRelayName(specs), specs.sidecar.metricsPort);
}

/** Metrics scraping and alert rules, with thresholds and notification targets from config. */
export function declareMonitoring(specs: Specs, secrets: Secrets, networks: pulumi.Input<string>[] = specs.sidecar.networks): Monitoring {
  const p = specs.monitoring.prometheus;
  return new Monitoring("monitoring", {
    metricsPort: specs.sidecar.metricsPort,
    rpoWarningRatio: specs.monitoring.rpoWarningRatio,
    failedRunsPerDay: specs.monitoring.failedRunsPerDay,
    replicationLagSeconds: specs.monitoring.replicationLagSeconds,
    agentDownSeconds: specs.monitoring.agentDownSeconds,
    notificationTargets: secrets.notificationTargets,
    relay: { image: specs.images.agent, serviceName: notifyRelayName(specs), networks, placement: specs.sidecar.placement },
    prometheus: p ? { image: p.image, serviceName: `${specs.namePrefix}-prometheus`, scrapeIntervalSeconds: p.scrapeIntervalSeconds, groupIntervalSeconds: p.groupIntervalSeconds, networks, publishedPort: p.publishedPort } : undefined,
  });
}
