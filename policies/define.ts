/**
 * How a kryonix-dr policy is defined: a plain @pulumi/policy StackValidationPolicy built from a
 * `check` over the planned resources (model.ts), with its parameter defaults. Only types are
 * imported from @pulumi/policy, so loading this never starts the analyzer's gRPC server.
 */
import { UNKNOWN, isUnknown, obj, type PlannedResource } from "./model.js";
import type { PolicyConfigSchema, PolicyResource, StackValidationPolicy } from "@pulumi/policy";

export interface Finding {
  /** The resource the problem is on; stack-wide problems have none. */
  resource?: PlannedResource;
  message: string;
}

interface Definition<C extends object> {
  name: string;
  description: string;
  defaults: C;
  schema: PolicyConfigSchema["properties"];
  check(resources: PlannedResource[], config: C): Finding[];
}

/** A pack policy: a StackValidationPolicy that also carries its parameter defaults. */
export interface KdrPolicy extends StackValidationPolicy {
  readonly defaults: object;
}

// The values @pulumi/policy puts where a preview does not know a value yet (the engine's
// unknown sentinels); they become UNKNOWN so that no policy mistakes them for real settings.
const UNKNOWN_SENTINELS = new Set([
  "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",
  "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
  "04da6b54-80e4-46f7-96ec-b56ff0331ba9",
  "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
  "030794c1-ac77-496b-92df-f27374a8bd58",
  "e48ece36-62e2-4504-bad9-02848725956a",
  "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
]);

function plain(v: unknown): unknown {
  if (typeof v === "string") return UNKNOWN_SENTINELS.has(v) ? UNKNOWN : v;
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(v)) out[k] = plain(val);
    return out;
  }
  return v;
}

/**
 * Reads a PolicyResource's props past @pulumi/policy's unknown-checking proxy, which would
 * throw on the first unknown value and abort the whole policy during a preview.
 */
export function toPlanned(r: PolicyResource): PlannedResource {
  const props = r.props as Record<string, unknown>;
  const raw = (props as { __getSpecialProxyTarget?: unknown }).__getSpecialProxyTarget ?? props;
  const inputs = (obj(plain(raw)) ?? {}) as Record<string, unknown>;
  // A reference not known during preview (a new bucket's name) still says where it came from:
  // the engine lists the resource it depends on. Name that resource by its URN instead.
  for (const [key, deps] of Object.entries(r.propertyDependencies ?? {})) {
    if (isUnknown(inputs[key]) && deps.length === 1) inputs[key] = deps[0]!.urn;
  }
  return {
    type: r.type,
    name: r.name,
    urn: r.urn,
    inputs,
    parent: r.parent?.urn,
    provider: r.provider?.urn,
  };
}

export function define<C extends object>(def: Definition<C>): KdrPolicy {
  return {
    name: def.name,
    description: def.description,
    enforcementLevel: "mandatory",
    configSchema: { properties: def.schema },
    defaults: def.defaults,
    validateStack: (args, report) => {
      const config = { ...def.defaults, ...(args.getConfig<Partial<C>>() ?? {}) } as C;
      const resources = args.resources.map(toPlanned);
      for (const f of def.check(resources, config)) report(f.message, f.resource?.urn);
    },
  };
}
