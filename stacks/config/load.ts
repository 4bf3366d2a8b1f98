/** `loadConfig()`: reads this stack's raw config groups and secrets and parses them once. */
import * as pulumi from "@pulumi/pulumi";
import { PROJECT, RawService, RawConfig, Specs, SECRET } from "./schema.js";
import { parseSpecs } from "./parse.js";

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
    active: cfg.get("active"),
    failover: cfg.getObject("failover"),
    failback: cfg.getObject("failback"),
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
