/**
 * local: everything on one machine with both regions. It declares the protected services too
 * (PostgreSQL, Redis and a volume service from config), so a drill has something real to lose
 * and recover. Otherwise it is prod: same components, same config schema.
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import { LABELS } from "../contract/index.js";
import { ProtectedService } from "../components/protected-service.js";
import { dockerLabels } from "../components/shared.js";
import type { Secrets, Specs } from "./config.js";
import type { DeclaredTarget } from "./common.js";
import { protect } from "./prod.js";

export function local(specs: Specs, secrets: Secrets): Record<string, unknown> {
  // Attachable, so run-once containers (restore jobs, drills) can join it too.
  const network = new docker.Network("network", {
    name: `${specs.namePrefix}-net`,
    driver: "overlay",
    attachable: true,
    labels: dockerLabels({ [LABELS.role]: "network" }),
  });
  const declared: Record<string, DeclaredTarget> = {};
  const services: Record<string, pulumi.Output<string>> = {};
  // A service coming back after a failover is a new one (stacks/failback.ts): the old one, which
  // would answer to the stable name with the data of before the failover, is not declared (its
  // volume is kept).
  const returning = new Set(specs.failback?.standbys.map((s) => s.name) ?? []);
  for (const s of specs.services) {
    if (returning.has(s.name)) {
      // Until the switch, the dr stack still reads the old name (its inputs stay as deployed).
      declared[s.name] = { host: `${specs.namePrefix}-${s.name}` };
      continue;
    }
    const svc = new ProtectedService(`service-${s.name}`, {
      service: s.name,
      engine: s.engine,
      tier: s.tier,
      rpoSeconds: s.rpoSeconds,
      rtoSeconds: s.rtoSeconds,
      image: s.image,
      serviceName: `${specs.namePrefix}-${s.name}`,
      dataPath: s.dataPath,
      user: s.user,
      password: s.passwordKey ? secrets.get(s.passwordKey) : undefined,
      networks: [network.id],
      // The stable name clients use (`postgresql`): on failover the promoted standby takes it.
      aliases: [s.name],
      placement: s.placement,
      ...(s.args.length ? { args: s.args } : {}),
    });
    declared[s.name] = { host: svc.serviceName, volume: svc.volumeName };
    services[s.name] = svc.serviceName;
  }
  return {
    ...protect(specs, secrets, { networks: [network.id, ...specs.sidecar.networks], declared, containerNetworks: [network.name, ...specs.sidecar.networks] }),
    network: network.name,
    protectedServices: services,
  };
}
