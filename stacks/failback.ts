/**
 * The way back after a failover (issue #14), declared on the primary stack by kryonix-dr:failback.
 * Each listed service returns as a warm standby in this region of its promoted counterpart (the
 * dr stack names it: output `standbys`), seeded from this region's copies of the promoted side's
 * backups (the dr stack's reverse replicators brought them here) and streaming from it through
 * the stable name (which only the promoted service holds until the switch). Its Swarm
 * name and volume are new (`<prefix>-<service>-g<generation>`): the old volume holds a timeline
 * the promoted side left, and is kept. `switch: true` hands over: a run-once `kdr-agent standby
 * switchover` fences the promoted side, waits for the exact catch-up and promotes; only then does
 * the returning service take the stable name, and this stack's sidecar back it up again.
 */
import * as pulumi from "@pulumi/pulumi";
import { WarmStandby } from "../components/standby.js";
import type { BackupStorage } from "../components/backup-storage.js";
import { SECRET, type Secrets, type Specs } from "./config.js";
import { agentCatalog } from "./common.js";

/** What the dr stack says of each standby (its output `standbys`). */
type DrStandbys = Record<string, { service: string; state: string }>;

/** The Swarm name of a service's returning generation. */
export function returningName(specs: Specs, service: string, generation: number): string {
  return `${specs.namePrefix}-${service}-g${generation}`;
}

/**
 * Declares the returning standbys; returns, for each, where it runs (the host this stack's
 * sidecar and the dr stack's next standbys connect to once it has taken over).
 */
export function declareFailback(
  specs: Specs,
  secrets: Secrets,
  storage: BackupStorage,
  networks: pulumi.Input<string>[],
  containerNetworks: pulumi.Input<string>[],
): Record<string, { host: pulumi.Output<string> }> {
  const f = specs.failback;
  if (!f) return {};
  const dr = new pulumi.StackReference("failback-dr", { name: f.drStack });
  const drStandbys = dr.requireOutput("standbys") as pulumi.Output<DrStandbys | undefined>;
  const out: Record<string, { host: pulumi.Output<string> }> = {};
  for (const sb of f.standbys) {
    const svc = specs.services.find((s) => s.name === sb.name)!;
    // The returning standby follows, and the hand-over fences, what answers to the stable name:
    // the promoted service, the only one holding it until the switch. Not the dr stack's Swarm
    // name: that changes with its generations, and the returned service's run-once seed and
    // hand-over must never run again once done. The dr stack is read to refuse a failback from
    // a service it does not run promoted (before the switch; after it, it goes back to standbys).
    const primaryHost = drStandbys.apply((all) => {
      const x = all?.[sb.name];
      if (!x) throw new Error(`${PROJECT_KEY}.standbys names '${sb.name}', which the dr stack ${f.drStack} has no standby of (it has: ${Object.keys(all ?? {}).join(", ") || "none"}): a service fails back only from the DR region's promoted standby`);
      if (!f.switch && x.state !== "promoted") {
        throw new Error(`the dr stack ${f.drStack} runs '${sb.name}' as a ${x.state}, not promoted: there is nothing to fail back from (the primary region still serves it). Remove ${PROJECT_KEY} from this stack's config`);
      }
      return sb.name;
    });
    const bucket = storage.buckets[svc.tier];
    if (!bucket || !storage.restoreCredentials) throw new Error(`internal: storage declared no ${svc.tier} bucket or restore user for the returning ${sb.name}`);
    // Each generation is a new set of resources: the next failback's never replace this one's.
    const standby = new WarmStandby(`failback-${sb.name}-g${f.generation}`, {
      service: sb.name,
      engine: sb.engine,
      tier: svc.tier,
      tenantId: specs.tenantId,
      rpoSeconds: svc.rpoSeconds,
      rtoSeconds: svc.rtoSeconds,
      image: svc.image,
      agentImage: specs.images.agent,
      serviceName: returningName(specs, sb.name, f.generation),
      stableName: sb.name,
      dataPath: svc.dataPath,
      primaryHost,
      port: svc.port ?? (sb.engine === "postgres" ? 5432 : 6379),
      user: sb.engine === "postgres" ? (svc.user ?? "postgres") : undefined,
      password: sb.passwordKey ? secrets.get(sb.passwordKey) : undefined,
      active: f.switch,
      handover: "switchover",
      catchUpSeconds: f.catchUpSeconds,
      networks,
      containerNetworks,
      placement: svc.placement,
      s3: {
        endpoint: specs.regions.primary!.endpoint,
        region: specs.regions.primary!.name,
        bucket,
        accessKey: storage.restoreCredentials.accessKey,
        secretKey: storage.restoreCredentials.secretKey,
      },
      catalog: agentCatalog(specs, secrets),
      encryptionIdentity: secrets.get(SECRET.ageIdentity),
    });
    out[sb.name] = { host: standby.serviceName };
  }
  return out;
}

const PROJECT_KEY = "kryonix-dr:failback";
