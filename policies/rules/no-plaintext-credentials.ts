/** Policy "no-plaintext-credentials". */
import { SECRET, TYPES, arr, describe, isSecret, isUnknown, obj, services, str } from "../model.js";
import { define, type Finding } from "../define.js";

interface CredentialConfig {
  credentialNames: string;
  allowNames: string[];
}

const DEFAULT_CREDENTIAL_NAMES = "pass(word|wd)?|secret|token|credential|private[_-]?key|access[_-]?key|api[_-]?key|(^|[_-])key($|[_-])";

/** A value that is a credential in plain text: a non-empty string that is not a secret or a reference. */
function plainValue(v: unknown): boolean {
  if (typeof v !== "string" || v === "" || isSecret(v) || isUnknown(v)) return false;
  // A reference to another variable or a secret file is not the credential itself.
  if (/^\$\{?\w+\}?$/.test(v) || v.startsWith("/run/secrets/")) return false;
  return true;
}

function credentialName(name: string, cfg: CredentialConfig): boolean {
  if (cfg.allowNames.includes(name)) return false;
  // FOO_PASSWORD_FILE points at a secret file: the documented safe way for most images.
  if (/_(FILE|PATH)$/i.test(name)) return false;
  return new RegExp(cfg.credentialNames, "i").test(name);
}

/** Credentials embedded in a shell/command-line text; returns what was found, without the value. */
export function credentialsInText(text: string): string[] {
  if (isSecret(text) || text === "") return [];
  const found: string[] = [];
  for (const m of text.matchAll(/\b[a-z][a-z0-9+.-]*:\/\/[^\s/:@'"]+:([^\s@/'"]+)@/gi)) {
    if (plainValue(m[1])) found.push("a connection URL with an embedded password");
  }
  const flags = /(?:^|\s)(--password|--passwd|--pass|--secret-key|--secret|--access-key|--token|--api-key|--auth|-a|-p)(?:=|\s+)(?:'([^']*)'|"([^"]*)"|(\S+))/g;
  for (const m of text.matchAll(flags)) {
    const value = m[2] ?? m[3] ?? m[4] ?? "";
    if (!plainValue(value) || value.startsWith("-")) continue;
    // -p is also a port (redis-cli, docker) and "mkdir -p"'s flag; only a non-path, non-port value is a password.
    if (m[1] === "-p" && (/^[\d:]+$/.test(value) || /^[./~]/.test(value))) continue;
    // -a is redis-cli's password; elsewhere (cp -a, ls -a) it is something else.
    if (m[1] === "-a" && (!/\bredis-cli\b/.test(text) || /^[./~]/.test(value))) continue;
    found.push(`the argument ${m[1]}`);
  }
  for (const m of text.matchAll(/\b([A-Za-z_][A-Za-z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|SECRET_KEY|API_KEY))=(?:'([^']*)'|"([^"]*)"|(\S+))/gi)) {
    if (plainValue(m[2] ?? m[3] ?? m[4])) found.push(`the inline assignment ${m[1]}=...`);
  }
  const alias = /\bmc\s+(?:alias\s+set|config\s+host\s+add)\s+\S+\s+\S+\s+(\S+)\s+(\S+)/.exec(text);
  if (alias && (plainValue(alias[1]) || plainValue(alias[2]))) found.push("the keys of `mc alias set`");
  return found;
}

/** Top-level inputs that are credentials by the provider's own schema. */
const CREDENTIAL_INPUTS: Record<string, string[]> = {
  [TYPES.iamUser]: ["secret"],
  [TYPES.dockerSecret]: ["data"],
  "postgresql:index/role:Role": ["password"],
  "pulumi:providers:minio": ["minioPassword"],
  "pulumi:providers:postgresql": ["password"],
};

export const noPlainCredentials = define<CredentialConfig>({
  name: "no-plaintext-credentials",
  description: "No credential or key appears in plain environment variables or plain command strings: only as secrets.",
  defaults: { credentialNames: DEFAULT_CREDENTIAL_NAMES, allowNames: [] },
  schema: {
    credentialNames: { type: "string", description: "Case-insensitive regular expression for names of credential variables." },
    allowNames: { type: "array", items: { type: "string" }, description: "Variable names that match but hold no credential." },
  },
  check(resources, cfg) {
    const out: Finding[] = [];
    const fixEnv = (where: string) =>
      `Fix: deliver it as a Swarm secret file (${where}, read from /run/secrets/...) or at least as a Pulumi secret (pulumi.secret / config.requireSecret); never as a plain string.`;
    for (const r of resources) {
      const place: { kind: string; env: Record<string, unknown>; texts: string[] }[] = [];
      if (r.type === TYPES.service) {
        const s = services([r])[0];
        place.push({ kind: "environment variable", env: s.env, texts: [s.args, s.commands].map((a) => a.filter((x): x is string => typeof x === "string").join(" ")) });
      } else if (r.type === TYPES.container) {
        const env: Record<string, unknown> = {};
        for (const e of arr(r.inputs.envs)) {
          if (typeof e === "string") env[e.split("=")[0]] = isSecret(e) ? SECRET : e.slice(e.indexOf("=") + 1);
        }
        place.push({ kind: "environment variable", env, texts: [arr(r.inputs.command), arr(r.inputs.entrypoints)].map((a) => a.filter((x): x is string => typeof x === "string").join(" ")) });
      } else if (r.type === TYPES.command) {
        place.push({ kind: "command environment variable", env: obj(r.inputs.environment) ?? {}, texts: ["create", "update", "delete"].map((k) => str(r.inputs[k]) ?? "") });
      }
      for (const p of place) {
        for (const [k, v] of Object.entries(p.env)) {
          if (credentialName(k, cfg) && plainValue(v)) {
            out.push({ resource: r, message: `${describe(r)} puts a credential in plain text: ${p.kind} ${k}. ${fixEnv("taskSpec.containerSpec.secrets")}` });
          } else if (typeof v === "string" && credentialsInText(v).length > 0) {
            out.push({ resource: r, message: `${describe(r)} puts a credential in plain text: ${p.kind} ${k} holds ${credentialsInText(v).join(", ")}. ${fixEnv("a *_FILE variable")}` });
          }
        }
        for (const t of p.texts) {
          for (const what of credentialsInText(t)) {
            out.push({ resource: r, message: `${describe(r)} puts a credential in a plain command line: ${what}. Fix: pass it through a secret file or a secret environment variable and refer to it by name ("$VAR"), never as the literal value.` });
          }
        }
      }
      for (const key of CREDENTIAL_INPUTS[r.type] ?? []) {
        if (plainValue(r.inputs[key])) {
          out.push({ resource: r, message: `${describe(r)} has its credential input "${key}" as a plain string. Fix: pass it as a Pulumi secret (config.requireSecret or pulumi.secret).` });
        }
      }
    }
    return out;
  },
});
