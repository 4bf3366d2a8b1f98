/** Policy "backup-bucket-private-versioned-locked". */
import { buckets, describe, ilmRules, obj, str } from "../model.js";
import { define, type Finding } from "../define.js";
import { bucketLabel } from "../shared.js";
import { parsePolicyDocument, isPublicPrincipal } from "../iam.js";

export const backupBucketIsSafe = define<{ exclude: string[] }>({
  name: "backup-bucket-private-versioned-locked",
  description: "Every backup bucket is private, versioned and object-locked, and has lifecycle rules.",
  defaults: { exclude: [] },
  schema: { exclude: { type: "array", items: { type: "string" }, description: "Bucket names that hold no backups." } },
  check(resources, cfg) {
    const out: Finding[] = [];
    for (const b of buckets(resources)) {
      if (cfg.exclude.includes(b.name)) continue;
      const who = bucketLabel(b);
      if (b.acl !== undefined && b.acl !== "private") {
        out.push({ resource: b.resource, message: `${who} has acl "${b.acl}", so it is not private. Fix: set acl: "private" (or leave it unset).` });
      }
      for (const p of b.policies) {
        const doc = parsePolicyDocument(p.inputs.policy);
        if ("statements" in doc && doc.statements.some((s) => s.effect === "Allow" && isPublicPrincipal(s.principal))) {
          out.push({
            resource: b.resource,
            message: `${who} is not private: ${describe(p)} allows anonymous access (Principal "*"). Fix: remove that bucket policy; give each client its own IAM user instead.`,
          });
        }
      }
      const enabled = b.versioning.filter((v) => str(obj(v.inputs.versioningConfiguration)?.status) === "Enabled");
      if (enabled.length === 0) {
        const state = b.versioning.length === 0 ? "has no S3BucketVersioning" : `has versioning status "${str(obj(b.versioning[0].inputs.versioningConfiguration)?.status) ?? "unset"}"`;
        out.push({
          resource: b.resource,
          message: `${who} is not versioned (it ${state}). Fix: declare a minio.S3BucketVersioning for it with versioningConfiguration.status "Enabled".`,
        });
      }
      if (b.objectLocking !== true) {
        out.push({
          resource: b.resource,
          message:
            `${who} is not object-locked (objectLocking is ${b.objectLocking === undefined ? "unset" : JSON.stringify(b.objectLocking)}). ` +
            `Fix: set objectLocking: true on the bucket (MinIO only enables it at creation, so the bucket is replaced) and give it a default retention.`,
        });
      }
      const rules = ilmRules(b).filter((r) => r.enabled && (r.expirationDays !== undefined || r.noncurrentDays !== undefined));
      if (rules.length === 0) {
        out.push({
          resource: b.resource,
          message: `${who} has no lifecycle rule that expires anything. Fix: declare a minio.IlmPolicy for it with one enabled rule per backup class prefix (for example filter "full/", expiration "30d").`,
        });
      }
    }
    return out;
  },
});
