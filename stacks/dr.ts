/**
 * dr: the failover region. The replica buckets and replication belong to the primary stack
 * (which owns both ends); this stack finds them through a StackReference named in config and
 * runs, in the DR region's swarm, the weekly restore drill against the replicas (proof that the
 * DR copy restores) and the health checks, plus its own monitoring hooks.
 */
import * as pulumi from "@pulumi/pulumi";
import type { Secrets, Specs } from "./config.js";
import { declareCrons, type ServiceSummary, declareMonitoring } from "./common.js";

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
  });
  const monitoring = declareMonitoring(specs, secrets);
  return {
    role: specs.role,
    primaryStack: specs.primaryStack,
    drBuckets,
    region: { name: region.name, endpoint: region.endpoint },
    cronServices: { maintenance: crons.maintenance.serviceId, drill: crons.drill.serviceId },
    monitoring: { scrapeConfigId: monitoring.scrapeConfigId, alertRulesId: monitoring.alertRulesId, scrapeConfig: monitoring.scrapeConfig, alertRules: monitoring.alertRules },
  };
}
