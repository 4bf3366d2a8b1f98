/** Policy "sidecar-cannot-delete-backups". */
import { LABELS } from "../../contract/index.js";
import { TYPES, describe, isUnknown, obj, str, type PlannedResource } from "../model.js";
import { define, type Finding } from "../define.js";
import { parsePolicyDocument, forbiddenGrants } from "../iam.js";

export const DEFAULT_FORBIDDEN_ACTIONS = [
  "s3:DeleteObject",
  "s3:DeleteObjectVersion",
  "s3:BypassGovernanceRetention",
  "s3:PutObjectRetention",
  "s3:PutBucketObjectLockConfiguration",
  "s3:PutLifecycleConfiguration",
  "s3:DeleteBucket",
];

interface SidecarIamConfig {
  forbiddenActions: string[];
  /** Case-insensitive regular expression on IAM user names (and resource names) of sidecar users. */
  sidecarUserPattern: string;
}

/** A sidecar user is tagged role=sidecar, or named like one (the components name them `<prefix>-sidecar-<service>`). */
function isSidecarUser(u: PlannedResource, pattern: string): boolean {
  const tags = obj(u.inputs.tags) ?? {};
  const role = str(tags[LABELS.role]) ?? str(tags.role);
  if (role !== undefined) return role === "sidecar";
  const re = new RegExp(pattern, "i");
  return re.test(str(u.inputs.name) ?? "") || re.test(u.name);
}

export const sidecarCannotDelete = define<SidecarIamConfig>({
  name: "sidecar-cannot-delete-backups",
  description: "No sidecar credential is allowed to delete objects or bypass retention.",
  defaults: { forbiddenActions: DEFAULT_FORBIDDEN_ACTIONS, sidecarUserPattern: "(^|[-_.])sidecar([-_.]|$)" },
  schema: {
    forbiddenActions: { type: "array", items: { type: "string" }, description: "S3 actions a sidecar credential must not have." },
    sidecarUserPattern: { type: "string", description: `Regular expression on IAM user names of sidecar users (a ${LABELS.role} or role tag overrides it).` },
  },
  check(resources, cfg) {
    const out: Finding[] = [];
    const byType = (t: string) => resources.filter((r) => r.type === t);
    const users = byType(TYPES.iamUser).filter((u) => isSidecarUser(u, cfg.sidecarUserPattern));
    const policies = byType(TYPES.iamPolicy);
    const userNames = (u: PlannedResource) => [str(u.inputs.name), u.name, u.urn].filter((x): x is string => !!x);
    const policyByName = (n: unknown) => policies.find((p) => n === str(p.inputs.name) || n === p.name || n === p.urn);
    for (const u of users) {
      const names = userNames(u);
      const docs: { source: PlannedResource; doc: unknown }[] = [];
      for (const a of byType(TYPES.iamUserPolicyAttachment)) {
        if (!names.includes(str(a.inputs.userName) ?? "")) continue;
        const p = policyByName(a.inputs.policyName);
        if (p) docs.push({ source: p, doc: p.inputs.policy });
        else if (!isUnknown(a.inputs.policyName)) {
          // A built-in policy such as "readwrite" or "consoleAdmin" grants deletes.
          out.push({ resource: a, message: `${describe(a)} gives sidecar user "${names[0]}" the policy "${String(a.inputs.policyName)}", which this stack does not declare (MinIO's built-in policies allow deletes). Fix: attach a minio.IamPolicy of this stack that allows only s3:PutObject/GetObject/ListBucket on the service's prefixes.` });
        }
      }
      for (const g of byType(TYPES.iamGroupUserAttachment)) {
        if (!names.includes(str(g.inputs.userName) ?? "")) continue;
        const group = g.inputs.groupName;
        for (const gp of byType(TYPES.iamGroupPolicy)) if (gp.inputs.group === group) docs.push({ source: gp, doc: gp.inputs.policy });
        for (const ga of byType(TYPES.iamGroupPolicyAttachment)) {
          if (ga.inputs.groupName !== group) continue;
          const p = policyByName(ga.inputs.policyName);
          if (p) docs.push({ source: p, doc: p.inputs.policy });
        }
      }
      for (const sa of byType(TYPES.iamServiceAccount)) {
        if (names.includes(str(sa.inputs.targetUser) ?? "") && sa.inputs.policy !== undefined) docs.push({ source: sa, doc: sa.inputs.policy });
      }
      for (const { source, doc } of docs) {
        const parsed = parsePolicyDocument(doc);
        if ("error" in parsed) {
          out.push({ resource: source, message: `${describe(source)} (attached to sidecar user "${names[0]}"): ${parsed.error}. Fix: declare the policy as a plain JSON document (it holds no secret) so it can be checked.` });
          continue;
        }
        const bad = forbiddenGrants(parsed.statements, cfg.forbiddenActions);
        if (bad.length > 0) {
          out.push({
            resource: source,
            message:
              `${describe(source)} lets sidecar user "${names[0]}" delete backups or bypass retention: ${bad.join(", ")}. ` +
              `Fix: allow only s3:PutObject, s3:GetObject and s3:ListBucket on its own prefixes (s3:DeleteObject only on restic/<service>/g*/locks/*), and leave deletion to lifecycle rules.`,
          });
        }
      }
    }
    return out;
  },
});
