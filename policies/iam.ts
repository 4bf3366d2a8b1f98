/** IAM and bucket policy documents: parsing, action matching, public principals, forbidden grants. */
import { isSecret, isUnknown, obj } from "./model.js";

export interface Statement {
  effect: string;
  actions: string[];
  resources: string[];
  principal: unknown;
}

/** Parses an IAM/bucket policy document; a string that is not JSON yields an error message. */
export function parsePolicyDocument(v: unknown): { statements: Statement[] } | { error: string } {
  if (isSecret(v)) return { error: "the policy document is a secret, so it cannot be audited" };
  if (isUnknown(v)) return { error: "the policy document is not known until the update" };
  let doc: unknown = v;
  if (typeof v === "string") {
    try {
      doc = JSON.parse(v);
    } catch (e) {
      return { error: `the policy document is not valid JSON (${(e as Error).message})` };
    }
  }
  const o = obj(doc);
  if (!o) return { error: "the policy document is missing" };
  const list = Array.isArray(o.Statement) ? o.Statement : o.Statement !== undefined ? [o.Statement] : [];
  const asList = (x: unknown) => (Array.isArray(x) ? x.map(String) : x === undefined ? [] : [String(x)]);
  return {
    statements: list.map((s) => {
      const st = obj(s) ?? {};
      return {
        effect: String(st.Effect ?? ""),
        actions: asList(st.Action),
        resources: asList(st.Resource),
        principal: st.Principal,
      };
    }),
  };
}

export function glob(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, "i");
}

export function actionMatches(pattern: string, action: string): boolean {
  return glob(pattern).test(action);
}

export function isPublicPrincipal(p: unknown): boolean {
  if (p === "*") return true;
  const o = obj(p);
  if (!o) return false;
  return Object.values(o).some((v) => v === "*" || (Array.isArray(v) && v.includes("*")));
}

export const PUBLIC_ACLS = /^public/i;
export const PUBLIC_MC = /\bmc\s+(?:policy\s+set|anonymous\s+set)\s+(download|upload|public|readonly|readwrite|writeonly)\b/;

/** restic must remove its own lock files; that is the one delete a backup writer may do. */
export const RESTIC_LOCKS = /^arn:aws:s3:::[^/]+\/restic\/[^/*]+\/g\*\/locks\/\*$/;

/** Forbidden actions a policy document grants; each with the statement resources. */
export function forbiddenGrants(statements: Statement[], forbidden: string[]): string[] {
  const found: string[] = [];
  for (const action of forbidden) {
    const allows = statements.filter((s) => s.effect === "Allow" && s.actions.some((a) => actionMatches(a, action)));
    for (const s of allows) {
      if (action === "s3:DeleteObject" && s.resources.length > 0 && s.resources.every((r) => RESTIC_LOCKS.test(r))) continue;
      const denied = statements.some(
        (d) => d.effect === "Deny" && d.actions.some((a) => actionMatches(a, action)) && s.resources.every((r) => d.resources.some((dr) => glob(dr).test(r))),
      );
      if (!denied) {
        const via = s.actions.find((a) => actionMatches(a, action))!;
        found.push(via === action ? action : `${action} (through "${via}")`);
        break;
      }
    }
  }
  return found;
}
