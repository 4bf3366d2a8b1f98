/** Policy "lock-retention-covers-lifecycle". */
import { TYPES, buckets, defaultRetentions, describe, ilmRules, sameScope, scopeOf, str, type PlannedResource } from "../model.js";
import { define, type Finding } from "../define.js";
import { bucketLabel } from "../shared.js";

/** Default retentions from local.Command resources or from a resource that declares one. */
function lockRetentions(resources: PlannedResource[]): { bucket: string; days: number; resource: PlannedResource }[] {
  const fromCommands = defaultRetentions(resources);
  const fromResources = resources
    .filter((r) => r.type !== TYPES.command && /retention/i.test(`${r.type} ${r.name}`))
    .flatMap((r) => {
      const bucket = str(r.inputs.bucket);
      const days = [r.inputs.days, r.inputs.retentionDays, r.inputs.validityDays].find((d) => typeof d === "number") as number | undefined;
      return bucket && days !== undefined ? [{ bucket, days, resource: r }] : [];
    });
  return [...fromCommands, ...fromResources];
}

export const lockCoversLifecycle = define<object>({
  name: "lock-retention-covers-lifecycle",
  description: "A bucket's object-lock retention is no shorter than the lifecycle expiry it protects.",
  defaults: {},
  schema: {},
  check(resources) {
    const out: Finding[] = [];
    const locks = lockRetentions(resources);
    for (const b of buckets(resources)) {
      const rules = ilmRules(b).filter((r) => r.enabled && r.expirationDays !== undefined);
      if (rules.length === 0) continue;
      const longestRule = rules.reduce((a, r) => (r.expirationDays! > a.expirationDays! ? r : a));
      const longest = { id: longestRule.id, expirationDays: longestRule.expirationDays! };
      const lock = locks.filter((l) => (l.bucket === b.name || l.bucket === b.resource.name) && sameScope(scopeOf(l.resource, resources), b.scope));
      if (lock.length === 0) {
        out.push({
          resource: b.resource,
          message:
            `${bucketLabel(b)} expires objects after up to ${longest.expirationDays} days (rule "${longest.id}") but has no default lock retention, ` +
            `so backups can be deleted before they expire. Fix: set a default retention of at least ${longest.expirationDays} days ` +
            `(kryonix-dr s3 put-default-retention --bucket ${b.name} --mode GOVERNANCE --days ${longest.expirationDays}).`,
        });
        continue;
      }
      const days = Math.min(...lock.map((l) => l.days));
      if (days < longest.expirationDays) {
        const l = lock.find((x) => x.days === days)!;
        out.push({
          resource: l.resource,
          message:
            `${bucketLabel(b)} has a default lock retention of ${days} days (${describe(l.resource)}) but its lifecycle rule "${longest.id}" ` +
            `keeps objects ${longest.expirationDays} days, so for ${longest.expirationDays - days} days they are unlocked and deletable. ` +
            `Fix: raise the retention to at least ${longest.expirationDays} days, or shorten the rule's expiration.`,
        });
      }
    }
    return out;
  },
});
