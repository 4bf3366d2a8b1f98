/** Policy "no-public-bucket-policy". */
import { TYPES, arr, commandText, describe, services, str } from "../model.js";
import { define, type Finding } from "../define.js";
import { parsePolicyDocument, isPublicPrincipal, PUBLIC_ACLS, PUBLIC_MC } from "../iam.js";

export const noPublicBucket = define<object>({
  name: "no-public-bucket-policy",
  description: "No public or anonymous bucket policy (the seed's `mc policy set download` is the counter-example).",
  defaults: {},
  schema: {},
  check(resources) {
    const out: Finding[] = [];
    for (const r of resources) {
      if (r.type === TYPES.bucket) {
        const acl = str(r.inputs.acl);
        if (acl && PUBLIC_ACLS.test(acl)) {
          out.push({ resource: r, message: `${describe(r)} has the public acl "${acl}". Fix: set acl: "private" and give each reader its own IAM user.` });
        }
      } else if (r.type === TYPES.bucketPolicy) {
        const doc = parsePolicyDocument(r.inputs.policy);
        if ("error" in doc) {
          out.push({ resource: r, message: `${describe(r)}: ${doc.error}. Fix: declare the bucket policy as a plain JSON document so it can be checked.` });
        } else if (doc.statements.some((s) => s.effect === "Allow" && isPublicPrincipal(s.principal))) {
          out.push({ resource: r, message: `${describe(r)} allows anonymous access (Principal "*") to bucket "${String(r.inputs.bucket)}". Fix: remove the statement; grant access to named IAM users only.` });
        }
      } else if (r.type === TYPES.command || r.type === TYPES.service || r.type === TYPES.container) {
        const s = r.type === TYPES.service ? services([r])[0] : undefined;
        const texts = r.type === TYPES.command ? [commandText(r), str(r.inputs.delete) ?? ""] : s ? [[...s.commands, ...s.args].join(" ")] : [[...arr(r.inputs.command), ...arr(r.inputs.entrypoints)].join(" ")];
        for (const t of texts) {
          const m = PUBLIC_MC.exec(t);
          if (m) {
            out.push({ resource: r, message: `${describe(r)} makes a bucket anonymous ("${m[0]}"). Fix: remove it; anonymous ${m[1]} access exposes every backup. Give readers their own IAM users.` });
          }
        }
      }
    }
    return out;
  },
});
