/**
 * Runs the policy pack on an in-process plan (`kryonix-dr plan --policy`). It calls each
 * policy's own `validateStack`, the function the Pulumi CLI calls through the PolicyPack, so
 * both ways of running the pack give the same verdicts.
 */
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
  /** Per-policy parameters, keyed by policy name (see each policy's configSchema). */
  [policyName: string]: unknown;
}

const LEVELS: Enforcement[] = ["mandatory", "advisory", "disabled"];

function check(config: EvaluateConfig, all: KdrPolicy[]): void {
  const names = all.map((p) => p.name);
  for (const [name, level] of Object.entries(config.enforcement ?? {})) {
    if (!names.includes(name)) {
      throw new Error(`Policy config: enforcement names unknown policy "${name}". Fix: use one of ${names.join(", ")}.`);
    }
    if (!LEVELS.includes(level)) {
      throw new Error(`Policy config: enforcement of "${name}" is "${String(level)}". Fix: use one of ${LEVELS.join(", ")}.`);
    }
  }
  for (const key of Object.keys(config)) {
    if (key !== "enforcement" && !names.includes(key)) {
      throw new Error(`Policy config: "${key}" is not a policy of this pack. Fix: use one of ${names.join(", ")} (or "enforcement").`);
    }
  }
}

function policyResource(r: PlannedResource, index: number): PolicyResource {
  const urn = r.urn ?? `urn:pulumi:plan::kryonix-dr::${r.type}::${r.name}#${index}`;
  return {
    type: r.type,
    name: r.name,
    urn,
    props: r.inputs,
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
  check(config, policies);
  const asPolicy = resources.map(policyResource);
  const byUrn = new Map(asPolicy.map((p, i) => [p.urn, resources[i]]));
  const out: Violation[] = [];
  for (const p of policies) {
    const level = config.enforcement?.[p.name] ?? (p.enforcementLevel as Enforcement | undefined) ?? "mandatory";
    if (level === "disabled") continue;
    const args: StackValidationArgs = {
      resources: asPolicy,
      stackTags: new Map(),
      getConfig: <T extends object>() => (config[p.name] ?? {}) as T,
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

/** True when any violation blocks the deployment. */
export function hasMandatory(violations: Violation[]): boolean {
  return violations.some((v) => v.enforcement === "mandatory");
}
