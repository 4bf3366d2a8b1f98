/**
 * prod: protects the services listed in config. Backup buckets in the primary region and their
 * replicas in the DR region (both owned here, so replication has both ends), the catalog, one
 * sidecar per service, the maintenance and drill crons, and the monitoring hooks.
 */
import * as pulumi from "@pulumi/pulumi";
import { BackupCatalog } from "../components/backup-catalog.js";
import { BackupStorage } from "../components/backup-storage.js";
import { Replication } from "../components/replication.js";
import { replicationSlotName } from "../contract/index.js";
import { SECRET, type Secrets, type Specs } from "./config.js";
import { declareFailback } from "./failback.js";
import { agentCatalog, catalogProvider, declareCrons, declareSidecars, minioProvider, storageServices, summarize, type DeclaredTarget, declareMonitoring } from "./common.js";

export interface ProtectionOptions {
  /** Networks every kryonix-dr container joins (ids or names). */
  networks: pulumi.Input<string>[];
  /** Services this stack declares itself (local): where their sidecars connect. */
  declared?: Record<string, DeclaredTarget>;
  /** Network names run-once containers join (attachable overlays). @default the sidecars' networks from config */
  containerNetworks?: pulumi.Input<string>[];
}

/** Storage in both regions, replication, catalog, sidecars, crons, monitoring. Shared by prod and local. */
export function protect(specs: Specs, secrets: Secrets, options: ProtectionOptions): Record<string, pulumi.Output<unknown> | unknown> {
  const primary = specs.regions.primary!;
  const dr = specs.regions.dr!;
  const services = storageServices(specs);
  const storageArgs = {
    bucketPrefix: specs.storage.bucketPrefix,
    services,
    namePrefix: specs.namePrefix,
    lockMode: specs.storage.lockMode,
    sseKmsKeyId: specs.storage.sse ? specs.storage.kmsKeyId : undefined,
    quotaGiB: specs.storage.quotaGiB,
  };
  const primaryStorage = new BackupStorage(
    "primary",
    {
      ...storageArgs,
      region: primary.name,
      endpoint: primary.endpoint,
      adminAccessKey: secrets.get(primary.accessKeyKey),
      adminSecretKey: secrets.get(primary.secretKeyKey),
      // replicationTarget: the writer of the dr stack's reverse replicator, which copies the
      // promoted services' backups back into this region after a failover.
      access: { sidecars: true, restore: true, prune: true, replicationTarget: true },
    },
    { providers: { minio: minioProvider(primary, secrets) } },
  );
  const drStorage = new BackupStorage(
    "dr",
    {
      ...storageArgs,
      region: dr.name,
      endpoint: dr.endpoint,
      adminAccessKey: secrets.get(dr.accessKeyKey),
      adminSecretKey: secrets.get(dr.secretKeyKey),
      // sidecars: users the dr stack's sidecars back up a promoted standby with (failover).
      access: { restore: true, replicationTarget: true, sidecars: true },
    },
    { providers: { minio: minioProvider(dr, secrets) } },
  );

  const catalog = new BackupCatalog(
    "catalog",
    {
      host: specs.catalog.host,
      port: specs.catalog.port,
      database: specs.catalog.database,
      owner: specs.catalog.owner,
      reader: specs.catalog.reader,
      writer: specs.catalog.writer,
      ownerPassword: secrets.get(SECRET.catalogOwnerPassword),
      readerPassword: secrets.get(SECRET.catalogReaderPassword),
      writerPassword: secrets.get(SECRET.catalogWriterPassword),
      sslmode: specs.catalog.sslmode,
      backup: specs.catalogService && {
        role: specs.catalogService.user!,
        password: secrets.get(SECRET.catalogReplicationPassword),
        slot: replicationSlotName(specs.catalogService.name),
      },
    },
    { providers: { postgresql: catalogProvider(specs, secrets) } },
  );

  const mode = specs.replication.mode;
  const replication = new Replication("replication", {
    mode,
    pairs: Object.entries(primaryStorage.buckets).map(([tier, source]) => ({ tier, source: source!, target: drStorage.buckets[tier as keyof typeof drStorage.buckets]! })),
    source: {
      endpoint: primary.endpoint,
      region: primary.name,
      // Native replication is configured on the source bucket (admin); the replicator only reads.
      accessKey: mode === "native" ? secrets.get(primary.accessKeyKey) : primaryStorage.restoreCredentials!.accessKey,
      secretKey: mode === "native" ? secrets.get(primary.secretKeyKey) : primaryStorage.restoreCredentials!.secretKey,
    },
    target: {
      endpoint: dr.endpoint,
      region: dr.name,
      accessKey: drStorage.replicationCredentials!.accessKey,
      secretKey: drStorage.replicationCredentials!.secretKey,
    },
    image: specs.images.agent,
    intervalSeconds: specs.replication.intervalSeconds,
    metricsPort: specs.sidecar.metricsPort,
    networks: options.networks,
    placement: specs.sidecar.placement,
    // Every copy's DR version id is recorded in the catalog: restores from the DR region read it.
    catalog: mode === "replicator" ? agentCatalog(specs, secrets) : undefined,
  }, { dependsOn: [catalog] });

  // After a failover, the services coming back (kryonix-dr:failback): where each runs now.
  const returning = declareFailback(specs, secrets, primaryStorage, options.networks, options.containerNetworks ?? specs.sidecar.networks);
  // Where each service runs for this stack's sidecars and the dr stack's standbys: a returned one
  // once it has taken over (before, the dr stack's inputs stay as they were deployed).
  const declared: Record<string, DeclaredTarget> = { ...options.declared, ...(specs.failback?.switch ? returning : {}) };
  // Until the switch, the dr stack's sidecar backs up the active side: this one would back up a standby.
  const away = new Set(specs.failback && !specs.failback.switch ? specs.failback.standbys.map((s) => s.name) : []);
  // Agents write to the catalog from their first run: they wait for the schema and roles.
  const sidecars = declareSidecars({ specs, secrets, region: primary, storage: primaryStorage, networks: options.networks, declared, skip: away, dependsOn: [catalog] });
  const crons = declareCrons({
    specs,
    secrets,
    region: { endpoint: primary.endpoint, name: primary.name },
    services: summarize(specs),
    buckets: pulumi.output(primaryStorage.buckets as Record<string, pulumi.Output<string>>),
    restore: primaryStorage.restoreCredentials!,
    prune: primaryStorage.pruneCredentials!,
    networks: options.networks,
    dependsOn: [catalog],
  });
  const monitoring = declareMonitoring(specs, secrets, options.networks);

  return {
    role: specs.role,
    tenantId: specs.tenantId,
    /** The DR stack's crons take the service list from here (one source: this stack's config). */
    services: summarize(specs),
    /** The dr stack's warm standbys follow these (PostgreSQL and Redis services): where each runs and how it is served. */
    standbySources: specs.services
      .filter((s) => s.engine === "postgres" || s.engine === "redis")
      .map((s) => ({
        name: s.name,
        engine: s.engine,
        tier: s.tier,
        host: declared[s.name]?.host ?? s.host,
        port: s.port,
        image: s.image,
        dataPath: s.dataPath,
        user: s.user,
        rpoSeconds: s.rpoSeconds,
        rtoSeconds: s.rtoSeconds,
        schedules: s.schedules,
        retention: s.retention,
        walSwitchSeconds: s.walSwitchSeconds,
      })),
    /** The dr stack's sidecars of promoted standbys write to the DR buckets with these (one least-privilege user each). */
    drSidecarCredentials: pulumi.secret(
      Object.fromEntries(specs.services.filter((s) => s.engine === "postgres" || s.engine === "redis").map((s) => [s.name, { accessKey: drStorage.sidecarCredentials[s.name]!.accessKey, secretKey: drStorage.sidecarCredentials[s.name]!.secretKey }])),
    ),
    primaryBuckets: primaryStorage.buckets,
    drBuckets: drStorage.buckets,
    lockDays: primaryStorage.lockDays,
    regions: { primary: { name: primary.name, endpoint: primary.endpoint }, dr: { name: dr.name, endpoint: dr.endpoint } },
    catalog: { host: specs.catalog.agentHost, port: specs.catalog.port, database: catalog.database, owner: specs.catalog.owner, writer: catalog.writerRole, reader: catalog.readerRole },
    /** The DR stack's drill reads the replicas with these (a secret output stays secret across a StackReference). */
    /** `kryonix-dr catalog rebuild|restore --region primary` reads with these. */
    primaryRestoreCredentials: pulumi.secret({ accessKey: primaryStorage.restoreCredentials!.accessKey, secretKey: primaryStorage.restoreCredentials!.secretKey }),
    drRestoreCredentials: pulumi.secret({ accessKey: drStorage.restoreCredentials!.accessKey, secretKey: drStorage.restoreCredentials!.secretKey }),
    /** The dr stack's reverse replicator (active only) writes copies into this region's buckets with these: no delete, no unlock. */
    reverseReplicationCredentials: pulumi.secret({ accessKey: primaryStorage.replicationCredentials!.accessKey, secretKey: primaryStorage.replicationCredentials!.secretKey }),
    /** kryonix-dr:failback: each returning service, and whether it is a standby of the promoted side yet or has taken over. */
    failback: Object.fromEntries(Object.entries(returning).map(([k, v]) => [k, { service: v.host, state: specs.failback!.switch ? "primary" : "standby" }])),
    sidecarServices: Object.fromEntries(Object.entries(sidecars).map(([k, v]) => [k, v.serviceId])),
    cronServices: { maintenance: crons.maintenance.serviceId, drill: crons.drill.serviceId },
    replication: { mode, replicated: replication.replicated },
    monitoring: { scrapeConfigId: monitoring.scrapeConfigId, alertRulesId: monitoring.alertRulesId, scrapeConfig: monitoring.scrapeConfig, alertRules: monitoring.alertRules, dashboard: monitoring.dashboard, prometheusServiceId: monitoring.prometheusServiceId },
  };
}

export function prod(specs: Specs, secrets: Secrets): Record<string, unknown> {
  // prod joins the platform's existing overlay networks, named in config.
  return protect(specs, secrets, { networks: specs.sidecar.networks });
}
