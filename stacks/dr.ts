/**
 * dr: the failover region. The replica buckets and replication belong to the primary stack
 * (which owns both ends); this stack finds them through a StackReference named in config and
 * runs, in the DR region's swarm, the weekly restore drill against the replicas (proof that the
 * DR copy restores) and the health checks, plus its own monitoring hooks.
 */
import * as pulumi from "@pulumi/pulumi";
import type { Secrets, Specs } from "./config.js";
import { agentCatalog, declareCrons, type ServiceSummary, declareMonitoring } from "./common.js";
import { WarmStandby } from "../components/standby.js";
import { BackupSidecar } from "../components/backup-sidecar.js";
import { Replication } from "../components/replication.js";
import { TARGET_DEFAULTS } from "../contract/index.js";
import { SECRET } from "./config.js";

/** What the primary stack says of a service a standby follows (its output standbySources). */
interface StandbySource {
  name: string;
  engine: string;
  tier: string;
  host: string;
  port?: number;
  image: string;
  dataPath: string;
  user?: string;
  rpoSeconds: number;
  rtoSeconds: number;
  schedules: { full: string; incremental: string };
  retention: { fullDays: number; incrementalDays: number; walDays: number };
  walSwitchSeconds?: number;
}

type StandbyOut = { service: pulumi.Output<string>; state: string; tier: pulumi.Output<string> };

/** The Swarm name of a standby of the given generation (1: `<prefix>-<service>`, then `-g<n>`). */
function standbyName(specs: Specs, service: string, generation: number): string {
  return `${specs.namePrefix}-${service}${generation > 1 ? `-g${generation}` : ""}`;
}

/**
 * The warm standbys (kryonix-dr:failover.standbys) of the primary's services, in this region's
 * swarm, fed from this region's copies; promoted when kryonix-dr:active is true.
 */
function declareStandbys(
  specs: Specs,
  secrets: Secrets,
  primary: pulumi.StackReference,
  drBuckets: pulumi.Output<Record<string, string>>,
  creds: pulumi.Output<{ accessKey: string; secretKey: string }>,
): Record<string, StandbyOut> {
  const f = specs.failover;
  if (!f || f.standbys.length === 0) return {};
  const sources = (primary.getOutput("standbySources") as pulumi.Output<StandbySource[] | undefined>).apply((all) => {
    if (!all) throw new Error(`the primary stack ${specs.primaryStack} exports no standbySources (it was deployed before failover existed): run 'pulumi up' on it first, then on this stack`);
    return all;
  });
  // Read only when promoting: an inactive dr stack works with a primary deployed before failover existed.
  const sidecarCreds = f.active ? (primary.requireOutput("drSidecarCredentials") as pulumi.Output<Record<string, { accessKey: string; secretKey: string }>>) : undefined;
  const region = specs.regions.dr!;
  const out: Record<string, StandbyOut> = {};
  /** This region's bucket of a service's tier, read or written with the given user. */
  const regionS3 = (src: pulumi.Output<StandbySource>, user: pulumi.Output<{ accessKey: string; secretKey: string }>) => ({
    endpoint: region.endpoint,
    region: region.name,
    bucket: pulumi.all([drBuckets, src]).apply(([b, s]) => b[s.tier]!),
    accessKey: pulumi.secret(user.apply((c) => c.accessKey)),
    secretKey: pulumi.secret(user.apply((c) => c.secretKey)),
  });
  for (const sb of f.standbys) {
    const src = sources.apply((all) => {
      const s = all.find((x) => x.name === sb.name);
      if (!s) throw new Error(`kryonix-dr:failover.standbys names '${sb.name}', which the primary stack ${specs.primaryStack} does not protect as PostgreSQL or Redis (it has: ${all.map((x) => x.name).join(", ") || "none"})`);
      if (s.engine !== sb.engine) throw new Error(`kryonix-dr:failover.standbys says '${sb.name}' is ${sb.engine}, the primary stack says ${s.engine}: correct the engine`);
      return s;
    });
    // A later generation is a new set of resources (the promoted ones' volumes are kept, not renamed).
    const standby = new WarmStandby(`standby-${sb.name}${f.generation > 1 ? `-g${f.generation}` : ""}`, {
      service: sb.name,
      engine: sb.engine,
      tier: src.apply((s) => s.tier),
      tenantId: specs.tenantId,
      rpoSeconds: src.apply((s) => s.rpoSeconds),
      rtoSeconds: src.apply((s) => s.rtoSeconds),
      image: src.apply((s) => s.image),
      agentImage: specs.images.agent,
      // A new set of standbys (after a failback: the old volumes hold the timeline promoted here) has its own names.
      serviceName: standbyName(specs, sb.name, f.generation),
      stableName: sb.name,
      dataPath: src.apply((s) => s.dataPath),
      primaryHost: sb.primaryHost ?? src.apply((s) => s.host),
      port: src.apply((s) => s.port ?? (sb.engine === "postgres" ? 5432 : 6379)),
      user: sb.engine === "postgres" ? src.apply((s) => s.user ?? "postgres") : undefined,
      password: sb.passwordKey ? secrets.get(sb.passwordKey) : undefined,
      active: f.active,
      force: f.force,
      catchUpSeconds: f.catchUpSeconds,
      networks: specs.sidecar.networks,
      containerNetworks: specs.sidecar.networks,
      placement: specs.sidecar.placement,
      s3: regionS3(src, creds),
      catalog: agentCatalog(specs, secrets),
      encryptionIdentity: secrets.get(SECRET.ageIdentity),
    });
    if (f.active) {
      // The promoted service is backed up in this region from its first minute, like the primary was.
      const creds = sidecarCreds!.apply((all) => {
        const c = all[sb.name];
        if (!c) throw new Error(`the primary stack ${specs.primaryStack} exports no DR sidecar user for '${sb.name}' (output drSidecarCredentials): update the primary stack first`);
        return c;
      });
      new BackupSidecar(
        `sidecar-${sb.name}`,
        {
          service: sb.name,
          engine: sb.engine,
          tier: src.apply((s) => s.tier),
          tenantId: specs.tenantId,
          image: specs.images.agent,
          serviceName: `${specs.namePrefix}-${sb.name}-backup`,
          rpoSeconds: src.apply((s) => s.rpoSeconds),
          rtoSeconds: src.apply((s) => s.rtoSeconds),
          schedules: { full: src.apply((s) => s.schedules.full), incremental: src.apply((s) => s.schedules.incremental) },
          retention: { fullDays: src.apply((s) => s.retention.fullDays), incrementalDays: src.apply((s) => s.retention.incrementalDays), walDays: src.apply((s) => s.retention.walDays) },
          walSwitchSeconds: sb.engine === "postgres" ? src.apply((s) => s.walSwitchSeconds ?? TARGET_DEFAULTS.walSwitchSeconds) : undefined,
          target: { host: standby.serviceName, port: src.apply((s) => s.port ?? (sb.engine === "postgres" ? 5432 : 6379)), user: sb.engine === "postgres" ? src.apply((s) => s.user ?? "postgres") : undefined, password: sb.passwordKey ? secrets.get(sb.passwordKey) : undefined },
          s3: regionS3(src, creds),
          catalog: agentCatalog(specs, secrets),
          encryptionRecipient: secrets.get(SECRET.ageRecipient),
          networks: specs.sidecar.networks,
          placement: specs.sidecar.placement,
          limits: { cpus: specs.sidecar.cpus, memoryMiB: specs.sidecar.memoryMiB },
          metricsPort: specs.sidecar.metricsPort,
        },
        { dependsOn: [standby] },
      );
    }
    out[sb.name] = { service: standby.serviceName, state: f.active ? "promoted" : "standby", tier: src.apply((s) => s.tier) };
  }
  return out;
}

/**
 * Active: replication reversed. What the promoted services' sidecars write into this region's
 * buckets is copied to the primary region's, by a replicator per tier (any S3, MinIO included)
 * that reads here with the restore user and writes there with the primary stack's replication
 * writer (no delete, no unlock). It retries, saying why once, while the primary region is gone,
 * and catches up when it returns; it never sends back a copy that came from there.
 */
function reverseReplication(
  specs: Specs,
  secrets: Secrets,
  primary: pulumi.StackReference,
  drBuckets: pulumi.Output<Record<string, string>>,
  creds: pulumi.Output<{ accessKey: string; secretKey: string }>,
  standbyTiers: pulumi.Output<string>[],
): Replication {
  const regions = primary.requireOutput("regions") as pulumi.Output<{ primary: { name: string; endpoint: string } }>;
  const primaryBuckets = primary.requireOutput("primaryBuckets") as pulumi.Output<Record<string, string>>;
  const writer = primary.requireOutput("reverseReplicationCredentials").apply((c) => {
    if (!c) throw new Error(`the primary stack ${specs.primaryStack} exports no reverseReplicationCredentials (deployed before reverse replication existed): run 'pulumi up' on it first, then on this stack`);
    return c as { accessKey: string; secretKey: string };
  });
  const region = specs.regions.dr!;
  // A pair per tier; only the tiers the promoted services back up into run (the others are
  // scaled to 0: which tiers those are is the primary's config, known only at deployment).
  const used = pulumi.all(standbyTiers);
  const tiers = ["critical", "important", "secondary"] as const;
  return new Replication("reverse-replication", {
    mode: "replicator",
    pairs: tiers.map((tier) => ({
      tier,
      source: drBuckets.apply((b) => b[tier] ?? `${specs.namePrefix}-no-${tier}-bucket`),
      target: primaryBuckets.apply((b) => b[tier] ?? `${specs.namePrefix}-no-${tier}-bucket`),
      enabled: pulumi.all([used, drBuckets, primaryBuckets]).apply(([u, d, p]) => u.includes(tier) && !!d[tier] && !!p[tier]),
    })),
    source: { endpoint: region.endpoint, region: region.name, accessKey: pulumi.secret(creds.apply((c) => c.accessKey)), secretKey: pulumi.secret(creds.apply((c) => c.secretKey)) },
    target: { endpoint: regions.apply((r) => r.primary.endpoint), region: regions.apply((r) => r.primary.name), accessKey: pulumi.secret(writer.apply((c) => c.accessKey)), secretKey: pulumi.secret(writer.apply((c) => c.secretKey)) },
    image: specs.images.agent,
    intervalSeconds: specs.replication.intervalSeconds,
    metricsPort: specs.sidecar.metricsPort,
    networks: specs.sidecar.networks,
    placement: specs.sidecar.placement,
    catalog: agentCatalog(specs, secrets),
  });
}

export function dr(specs: Specs, secrets: Secrets): Record<string, unknown> {
  const primary = new pulumi.StackReference("primary", { name: specs.primaryStack! });
  const drBuckets = primary.requireOutput("drBuckets") as pulumi.Output<Record<string, string>>;
  const services = primary.requireOutput("services") as pulumi.Output<ServiceSummary[]>;
  const creds = primary.requireOutput("drRestoreCredentials") as pulumi.Output<{ accessKey: string; secretKey: string }>;
  const region = specs.regions.dr!;
  const crons = declareCrons({
    specs,
    secrets,
    purposeSuffix: "dr",
    region: { endpoint: region.endpoint, name: region.name },
    services,
    buckets: drBuckets,
    restore: { accessKey: pulumi.secret(creds.apply((c) => c.accessKey)), secretKey: pulumi.secret(creds.apply((c) => c.secretKey)) },
    networks: specs.sidecar.networks,
    verifyNew: specs.failover?.active ? specs.failover.standbys.map((s) => s.name) : [],
  });
  const monitoring = declareMonitoring(specs, secrets);
  const standbys = declareStandbys(specs, secrets, primary, drBuckets, creds);
  const reverse = specs.failover?.active ? reverseReplication(specs, secrets, primary, drBuckets, creds, Object.values(standbys).map((x) => x.tier)) : undefined;
  return {
    role: specs.role,
    primaryStack: specs.primaryStack,
    drBuckets,
    region: { name: region.name, endpoint: region.endpoint },
    cronServices: { maintenance: crons.maintenance.serviceId, drill: crons.drill.serviceId },
    /** Whether this region is the active one (kryonix-dr:active), and its standbys: Swarm service, stable name, state. */
    active: specs.failover?.active ?? false,
    standbys: Object.fromEntries(Object.entries(standbys).map(([k, v]) => [k, { service: v.service, state: v.state }])),
    /** Active: the replicator per tier copying what is written in this region back to the primary's buckets. */
    reverseReplication: reverse?.replicated ?? {},
    monitoring: { scrapeConfigId: monitoring.scrapeConfigId, alertRulesId: monitoring.alertRulesId, scrapeConfig: monitoring.scrapeConfig, alertRules: monitoring.alertRules, dashboard: monitoring.dashboard },
  };
}
