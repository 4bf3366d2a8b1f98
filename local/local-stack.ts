/**
 * The local stack's config overrides: the platform's published facts (regions, catalog, images)
 * replace the loopback defaults in Pulumi.local.yaml, and every secret gets a real value (the
 * file's `secure:` placeholders cannot be decrypted without the Pulumi CLI). Region keys and the
 * catalog superuser's password are the platform's; the rest are generated once per deployment
 * (passwords from the CSPRNG, the age key pair with age-keygen) and kept 0600 next to the
 * deployment state, so the same values serve the deployment, its drill and its destroy.
 */
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Platform } from "./platform.js";
import { loadStackConfig, type RunOptions } from "./program.js";

type Config = NonNullable<RunOptions["config"]>;

/** Generates an age X25519 key pair with age-keygen (the recipient is derived from the identity). */
export function ageKeyPair(): { identity: string; recipient: string } {
  const r = spawnSync("age-keygen", [], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`age-keygen failed (${r.error?.message ?? r.stderr.trim()}): install the 'age' package.`);
  const identity = /^AGE-SECRET-KEY-1[0-9A-Z]+$/m.exec(r.stdout)?.[0];
  const recipient = /public key: (age1[0-9a-z]+)/.exec(r.stdout)?.[1];
  if (!identity || !recipient) throw new Error("age-keygen printed no key pair.");
  return { identity, recipient };
}

const password = () => randomBytes(24).toString("base64url");

export function secretsPath(stack: string, stateDir: string): string {
  return join(stateDir, `${stack}.secrets.json`);
}

/**
 * Keys that decrypt backups. Backups sit under object lock and outlive the deployment that wrote
 * them, so destroying a deployment must not destroy the only copy of these keys: a later
 * deployment reuses them and can still read (and restic can still append to) what is stored.
 */
export const DATA_KEYS = ["ageIdentity", "ageRecipient", "resticPassword"] as const;

function writeSecrets(file: string, stateDir: string, secrets: Record<string, string>): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeFileSync(file, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
}

/**
 * Generated secrets of a stack's deployment: what is kept is read back, what is missing is created
 * and kept. `extraKeys`: further passwords the deployment needs (a drill of the prod stack's
 * services: targetPassword-<service> of each PostgreSQL and Redis).
 */
export function generatedSecrets(stack: string, stateDir: string, extraKeys: readonly string[] = []): Record<string, string> {
  const file = secretsPath(stack, stateDir);
  const kept = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, string>) : {};
  const secrets: Record<string, string> = { ...kept };
  for (const key of ["catalogOwnerPassword", "catalogWriterPassword", "catalogReaderPassword", "catalogReplicationPassword", "resticPassword", "targetPassword-postgresql", ...extraKeys]) {
    secrets[key] ??= password();
  }
  if (!secrets.ageIdentity || !secrets.ageRecipient) {
    const age = ageKeyPair();
    secrets.ageIdentity = age.identity;
    secrets.ageRecipient = age.recipient;
  }
  if (Object.keys(secrets).some((k) => secrets[k] !== kept[k])) writeSecrets(file, stateDir, secrets);
  return secrets;
}

/** After a destroy: the deployment's passwords go, the data keys (DATA_KEYS) stay. */
export function forgetGeneratedSecrets(stack: string, stateDir: string): void {
  const file = secretsPath(stack, stateDir);
  if (!existsSync(file)) return;
  const all = JSON.parse(readFileSync(file, "utf8")) as Record<string, string>;
  const keys = Object.fromEntries(DATA_KEYS.filter((k) => all[k] !== undefined).map((k) => [k, all[k]!]));
  if (Object.keys(keys).length === 0) rmSync(file, { force: true });
  else writeSecrets(file, stateDir, keys);
}

/**
 * Config overrides that point the local stack at the running platform, with real secrets. With
 * `projectDir`, the stack file's own kryonix-dr:catalog settings (such as catalog.backup) are kept
 * under the platform's address and credentials (an override replaces the whole key).
 */
export function localStackConfig(platform: Platform, stack: string, stateDir: string, projectDir?: string, extraSecretKeys: readonly string[] = []): Config {
  const file = projectDir ? loadStackConfig(projectDir, stack).config : {};
  const fileCatalog = file[`kryonix-dr:catalog`];
  // A dr stack (it names its primary) holds the primary's secrets, as an operator sets the same
  // values on both stacks: its standbys decrypt what the primary's sidecars encrypted.
  const secretsOf = file[`kryonix-dr:primaryStack`]?.split("/").pop() ?? stack;
  const region = (r: Platform["regions"]["primary"]) => ({ name: r.name, endpoint: r.endpoint, kind: "s3" });
  const config: Config = {
    regions: { value: { primary: region(platform.regions.primary), dr: region(platform.regions.dr) } },
    catalog: {
      value: {
        ...(fileCatalog ? (JSON.parse(fileCatalog) as Record<string, unknown>) : {}),
        host: platform.catalog.host,
        port: platform.catalog.port,
        // Containers reach host servers through the docker_gwbridge gateway.
        agentHost: platform.gatewayIp,
        database: "kryonix_dr",
        adminUser: platform.catalog.user,
        sslmode: "disable",
      },
    },
    images: { value: { agent: platform.images.agent, postgres: platform.images.postgres, redis: platform.images.redis, files: platform.images.files } },
    primaryAccessKey: { value: platform.regions.primary.accessKey, secret: true },
    primarySecretKey: { value: platform.regions.primary.secretKey, secret: true },
    drAccessKey: { value: platform.regions.dr.accessKey, secret: true },
    drSecretKey: { value: platform.regions.dr.secretKey, secret: true },
    catalogAdminPassword: { value: platform.catalog.password, secret: true },
  };
  for (const [k, v] of Object.entries(generatedSecrets(secretsOf, stateDir, extraSecretKeys))) config[k] = { value: v, secret: true };
  return config;
}
