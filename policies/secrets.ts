/**
 * Under the Pulumi CLI, secrets reach a policy pack wrapped (the engine marshals analyzer
 * properties with KeepSecrets), but @pulumi/policy 1.21 unwraps them for validateResource and
 * validateStack: `deserializeProperties(props, false)` returns the plaintext with no trace of
 * secretness. Only its remediation path (`deserializeProperties(props, true)`) keeps them, as
 * `Secret` instances.
 *
 * `no-plaintext-credentials` must tell a Pulumi secret from a plain string, and the in-process
 * plan already shows secrets as SECRET ("[secret]"). So the pack entry calls
 * `presentSecretsAsMarker()` before constructing the PolicyPack: validations then receive
 * SECRET wherever the engine sent a secret, exactly like the in-process plan. The policies
 * never see the plaintext of a secret at all.
 */
import { SECRET } from "./model.js";

type Deserialize = (struct: unknown, proxySecrets: boolean) => Record<string, unknown>;
interface DeserializeModule {
  deserializeProperties: Deserialize & { kdrMarked?: true };
}

const TARGET = "__getSpecialProxyTarget";

/** Replaces every `Secret` (a class of @pulumi/policy) in a deserialized value with SECRET. */
export function markSecrets(v: unknown, SecretClass: new (value: unknown) => unknown): unknown {
  if (v instanceof SecretClass) return SECRET;
  if (Array.isArray(v)) return v.map((x) => markSecrets(x, SecretClass));
  if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(v)) out[k] = markSecrets(val, SecretClass);
    return out;
  }
  return v;
}

/**
 * Patches @pulumi/policy's deserializer so that validations see SECRET for secret values.
 * Returns false (and changes nothing) when the library no longer has the shape this relies
 * on; the pack then still runs, but treats Pulumi secrets in env/args as plain strings, so
 * it can only over-report, never miss a plaintext credential.
 */
export function presentSecretsAsMarker(
  mod: DeserializeModule = require("@pulumi/policy/deserialize.js") as DeserializeModule,
  SecretClass: new (value: unknown) => unknown = (require("@pulumi/policy") as { Secret: new (value: unknown) => unknown }).Secret,
): boolean {
  const original = mod.deserializeProperties;
  if (typeof original !== "function" || typeof SecretClass !== "function") return false;
  if (original.kdrMarked) return true;
  const patched: Deserialize & { kdrMarked?: true } = (struct, proxySecrets) => {
    if (proxySecrets) return original(struct, true);
    // With proxySecrets the result is a proxy over an object that still holds Secret instances.
    const proxied = original(struct, true) as Record<string, unknown>;
    const raw = (proxied[TARGET] as Record<string, unknown> | undefined) ?? proxied;
    return markSecrets(raw, SecretClass) as Record<string, unknown>;
  };
  patched.kdrMarked = true;
  mod.deserializeProperties = patched;
  return true;
}
