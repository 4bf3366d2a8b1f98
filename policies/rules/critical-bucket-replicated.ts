/** Policy "critical-bucket-replicated". */
import { AGENT_ENV, LABELS } from "../../contract/index.js";
import { TYPES, buckets, commandText, hostPort, namesToken, sameScope, scopeOf, services, setting, str, type PlannedResource, type Protection, type ServiceView } from "../model.js";
import { define, type Finding } from "../define.js";
import { bucketLabel, backupProtections } from "../shared.js";

function tierOf(p: Protection): string | undefined {
  return setting(AGENT_ENV.tier, LABELS.tier, p.sidecar, p.target)?.toLowerCase();
}

/** What replicates a bucket: a native replication command, or a replicator service naming it. */
function replicators(resources: PlannedResource[], all: ServiceView[], bucket: string): PlannedResource[] {
  const commands = resources.filter((r) => r.type === TYPES.command && /replicat/i.test(commandText(r)) && namesToken(commandText(r), bucket));
  const svc = all.filter((s) => {
    if (s.role !== "replicator" && !s.role?.startsWith("replicator-")) return false;
    // A copy to the same endpoint is no copy in another region.
    const from = hostPort(str(s.env[AGENT_ENV.s3Endpoint]) ?? "");
    const to = hostPort(str(s.env[AGENT_ENV.replicaEndpoint]) ?? "");
    if (from !== undefined && from === to) return false;
    const words = [...Object.values(s.env), ...s.args, ...s.commands, ...Object.values(s.labels)].filter((x): x is string => typeof x === "string");
    return words.some((w) => w === bucket || namesToken(w, bucket) || w.split(",").map((x) => x.trim()).includes(bucket));
  });
  return [...commands, ...svc.map((s) => s.resource)];
}

export const criticalBucketReplicated = define<{ criticalBuckets: string[] }>({
  name: "critical-bucket-replicated",
  description: "Every critical-tier bucket is replicated to the DR region.",
  defaults: { criticalBuckets: [] },
  schema: { criticalBuckets: { type: "array", items: { type: "string" }, description: "Buckets that are critical whatever the tiers of their services." } },
  check(resources, cfg) {
    const out: Finding[] = [];
    const all = services(resources);
    const prots = backupProtections(all);
    for (const b of buckets(resources)) {
      const critical = prots.filter(
        (p) => p.sidecar.env[AGENT_ENV.s3Bucket] === b.name && tierOf(p) === "critical" && sameScope(scopeOf(p.sidecar.resource, resources), b.scope),
      );
      if (critical.length === 0 && !cfg.criticalBuckets.includes(b.name)) continue;
      if (replicators(resources, all, b.name).some((r) => sameScope(scopeOf(r, resources), b.scope))) continue;
      const why = critical.length > 0 ? `holds critical-tier backups (of ${critical.map((p) => `"${p.protects}"`).join(", ")})` : "is listed in criticalBuckets";
      out.push({
        resource: b.resource,
        message:
          `${bucketLabel(b)} ${why} but nothing replicates it to the DR region. ` +
          `Fix: declare its native replication (a local.Command that configures bucket replication for "${b.name}") or a replicator service (${LABELS.role}=replicator) that names "${b.name}".`,
      });
    }
    return out;
  },
});
