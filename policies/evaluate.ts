/**
 * Runs the policy pack on an in-process plan (`kryonix-dr plan --policy`). It calls each
 * policy's own `validateStack`, the function the Pulumi CLI calls through the PolicyPack, so
 * both ways of running the pack give the same verdicts.
 */
import { readFileSync } from "node:fs";
import type { PolicyResource, StackValidationArgs } from "@pulumi/policy";
import { policies, type KdrPolicy } from "./policies.js";
import type { PlannedResource } from "./model.js";

export type { PlannedResource } from "./model.js";
export { SECRET, UNKNOWN } from "./model.js";
export { policies } from "./policies.js";

export type Enforcement = "mandatory" | "advisory" | "disabled";

export interface Violation {
  policy: string;
  enforcement: "mandatory" | "advisory";
  resourceType?: string;
  resourceName?: string;
  message: string;
}

export interface EvaluateConfig {
  /** Per-policy enforcement level, overriding the policy's default (mandatory). */
  enforcement?: Record<string, Enforcement>;
  /**
   * Per-policy parameters keyed by policy name (see each policy's configSchema). As in a
   * `pulumi preview --policy-pack-config` file, the value may also be a bare level
   * ("advisory") or carry `enforcementLevel` beside the parameters; `all` sets every level.
   */
  [policyName: string]: unknown;
}

const LEVELS: Enforcement[] = ["mandatory", "advisory", "disabled"];

interface Resolved {
  level: Enforcement;
  params: Record<string, unknown>;
}

function typeOk(value: unknown, schema: { type?: unknown; items?: { type?: unknown } }): boolean {
  switch (schema.type) {
    case "array":
      return Array.isArray(value) && value.every((v) => schema.items?.type === undefined || typeof v === schema.items.type);
    case "string":
    case "number":
    case "boolean":
      return typeof value === schema.type;
    default:
      return true;
  }
}

function level(value: unknown, where: string): Enforcement {
  if (!LEVELS.includes(value as Enforcement)) {
    throw new Error(`Policy config: ${where} is ${JSON.stringify(value)}. Fix: use one of ${LEVELS.join(", ")}.`);
  }
  return value as Enforcement;
}

/**
 * Validates the config once and resolves each policy's level and parameters. A typo in a
 * policy or parameter name would silently weaken the pack, so it is an error that names the fix.
 */
function resolveConfig(config: EvaluateConfig, all: KdrPolicy[]): Map<string, Resolved> {
  const names = all.map((p) => p.name);
  for (const key of Object.keys(config)) {
    if (key !== "enforcement" && key !== "all" && !names.includes(key)) {
      throw new Error(`Policy config: "${key}" is not a policy of this pack. Fix: use one of ${names.join(", ")} (or "enforcement", "all").`);
    }
  }
  for (const name of Object.keys(config.enforcement ?? {})) {
    if (!names.includes(name)) throw new Error(`Policy config: enforcement names unknown policy "${name}". Fix: use one of ${names.join(", ")}.`);
  }
  const all_ = config.all === undefined ? undefined : level(config.all, `"all"`);
  const out = new Map<string, Resolved>();
  for (const p of all) {
    const raw = config[p.name];
    let params: Record<string, unknown> = {};
    let own: Enforcement | undefined;
    if (typeof raw === "string") own = level(raw, `"${p.name}"`);
    else if (raw !== undefined) {
      if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
        throw new Error(`Policy config: "${p.name}" must be a level or an object of parameters. Fix: e.g. { "${p.name}": "advisory" }.`);
      }
      const { enforcementLevel, ...rest } = raw as Record<string, unknown>;
      if (enforcementLevel !== undefined) own = level(enforcementLevel, `"${p.name}".enforcementLevel`);
      params = rest;
    }
    const schema = p.configSchema?.properties ?? {};
    for (const [key, value] of Object.entries(params)) {
      const s = schema[key] as { type?: unknown; items?: { type?: unknown } } | undefined;
      if (!s) {
        const known = Object.keys(schema);
        throw new Error(`Policy config: "${p.name}" has no parameter "${key}". Fix: ${known.length ? `use one of ${known.join(", ")}` : "this policy takes no parameters, only a level"}.`);
      }
      if (!typeOk(value, s)) {
        const want = s.type === "array" ? `an array of ${String(s.items?.type ?? "values")}s` : `a ${String(s.type)}`;
        throw new Error(`Policy config: "${p.name}".${key} is ${JSON.stringify(value)}. Fix: give ${want}.`);
      }
    }
    const fromMap = config.enforcement?.[p.name];
    const lvl = fromMap !== undefined ? level(fromMap, `enforcement of "${p.name}"`) : (own ?? all_ ?? (p.enforcementLevel as Enforcement | undefined) ?? "mandatory");
    out.set(p.name, { level: lvl, params });
  }
  return out;
}

function policyResource(r: PlannedResource, index: number): PolicyResource {
  const urn = r.urn ?? `urn:pulumi:plan::kryonix-dr::${r.type}::${r.name}#${index}`;
  return {
    type: r.type,
    name: r.name,
    urn,
    props: r.inputs ?? {},
    opts: { protect: false, ignoreChanges: [], aliases: [], customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 }, additionalSecretOutputs: [] },
    parent: r.parent !== undefined ? ({ urn: r.parent } as PolicyResource) : undefined,
    provider: r.provider !== undefined ? { type: "", name: "", urn: r.provider, props: {} } : undefined,
    dependencies: [],
    propertyDependencies: {},
    isType: () => false,
    asType: () => undefined,
  } as PolicyResource;
}

/**
 * Judges a plan with every policy of the pack. Returns one violation per problem; a plan
 * passes when none of them is mandatory. Throws on a config that names an unknown policy or
 * level, since a typo there would silently weaken the pack.
 */
export function evaluatePolicies(resources: PlannedResource[], config: EvaluateConfig = {}): Violation[] {
  const resolved = resolveConfig(config, policies);
  const asPolicy = resources.map(policyResource);
  const byUrn = new Map(asPolicy.map((p, i) => [p.urn, resources[i]]));
  const out: Violation[] = [];
  for (const p of policies) {
    const { level, params } = resolved.get(p.name)!;
    if (level === "disabled") continue;
    const args: StackValidationArgs = {
      resources: asPolicy,
      stackTags: new Map(),
      getConfig: <T extends object>() => params as T,
      notApplicable: (reason?: string): never => {
        throw new Error(`policy ${p.name} is not applicable: ${reason ?? ""}`);
      },
    };
    void p.validateStack(args, (message, urn) => {
      const r = urn !== undefined ? byUrn.get(urn) : undefined;
      out.push({ policy: p.name, enforcement: level, resourceType: r?.type, resourceName: r?.name, message });
    });
  }
  return out;
}

/**
 * Reads a policy config file in the format of `pulumi preview --policy-pack-config` (JSON), so
 * one file serves both the CLI and `kryonix-dr plan --policy`. Validation happens in
 * evaluatePolicies.
 */
export function readPolicyConfig(file: string): EvaluateConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`Policy config file ${file} cannot be read (${(e as Error).message}). Fix: give the path of a JSON file.`);
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not a JSON object");
    return parsed as EvaluateConfig;
  } catch (e) {
    throw new Error(`Policy config file ${file} is not a JSON object (${(e as Error).message}). Fix: write { "<policy>": "advisory" | { ...parameters } }.`);
  }
}

/** True when any violation blocks the deployment. */
export function hasMandatory(violations: Violation[]): boolean {
  return violations.some((v) => v.enforcement === "mandatory");
}
