/**
 * A read-only view of a planned resource graph for the policies: Swarm services, MinIO buckets
 * and IAM, and the local.Command resources that fill the minio provider's gaps. Every policy
 * reads the graph through these helpers, so the in-process plan (`kryonix-dr plan`) and the
 * Pulumi CLI (`pulumi preview --policy-pack policies`) are judged by the same code.
 *
 * This module imports nothing from @pulumi: constructing a PolicyPack starts a gRPC server, so
 * the pack entry (index.ts) is the only place that touches it at run time.
 */
import { AGENT_ENV, LABELS } from "../contract/index.js";

/** One resource of a plan, as `kryonix-dr plan --json` prints it. */
export interface PlannedResource {
  type: string;
  name: string;
  urn?: string;
  inputs: Record<string, unknown>;
  parent?: string;
  provider?: string;
}

/**
 * How a secret input value reaches the policies. The in-process plan redacts secrets to this
 * string; under the Pulumi CLI, index.ts makes @pulumi/policy present them the same way.
 */
export const SECRET = "[secret]";
/** How a value that is not known until the update reaches the policies. */
export const UNKNOWN = "[unknown]";

export const TYPES = {
  service: "docker:index/service:Service",
  container: "docker:index/container:Container",
  dockerSecret: "docker:index/secret:Secret",
  bucket: "minio:index/s3Bucket:S3Bucket",
  versioning: "minio:index/s3BucketVersioning:S3BucketVersioning",
  ilm: "minio:index/ilmPolicy:IlmPolicy",
  bucketPolicy: "minio:index/s3BucketPolicy:S3BucketPolicy",
  iamUser: "minio:index/iamUser:IamUser",
  iamPolicy: "minio:index/iamPolicy:IamPolicy",
  iamUserPolicyAttachment: "minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment",
  iamServiceAccount: "minio:index/iamServiceAccount:IamServiceAccount",
  iamGroupPolicy: "minio:index/iamGroupPolicy:IamGroupPolicy",
  iamGroupPolicyAttachment: "minio:index/iamGroupPolicyAttachment:IamGroupPolicyAttachment",
  iamGroupUserAttachment: "minio:index/iamGroupUserAttachment:IamGroupUserAttachment",
  command: "command:local:Command",
} as const;

/**
 * Roles of kryonix-dr's own services; they are the protection, not the protected. A DR region's
 * standby (and its WAL follower) holds a copy of the primary's data, which the primary's sidecars
 * protect; once promoted (role "promoted") it is judged like any service and needs its own.
 */
export const OWN_ROLES = ["sidecar", "cron", "replicator", "restore", "standby"];

/** Whether a role label is one of OWN_ROLES, also in its qualified form ("cron-prune"). */
export function isOwnRole(role: string | undefined): boolean {
  return role !== undefined && OWN_ROLES.some((r) => role === r || role.startsWith(`${r}-`));
}

export function isSecret(v: unknown): boolean {
  return v === SECRET;
}
export function isUnknown(v: unknown): boolean {
  return v === UNKNOWN;
}

export function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

export function obj(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

export function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** A resource as messages name it: `<type> "<name>"`. */
export function describe(r: PlannedResource): string {
  return `${r.type} "${r.name}"`;
}

/** Reads docker's `[{label, value}]` lists (and plain maps, in case a mapping flattens them). */
function labelMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of arr(v)) {
    const o = obj(item);
    const k = str(o?.label);
    if (k !== undefined && o?.value !== undefined) out[k] = String(o.value);
  }
  const m = obj(v);
  if (m) for (const [k, val] of Object.entries(m)) if (val !== undefined) out[k] = String(val);
  return out;
}

export interface Mount {
  type: string;
  source?: string;
  target?: string;
}

export interface ServiceView {
  resource: PlannedResource;
  /** The Swarm service name (inputs.name, else the resource name). */
  name: string;
  /** Service labels merged over container labels. */
  labels: Record<string, string>;
  image: string;
  /** The container env; `undefined` values are absent keys. A wholly secret env is `SECRET`. */
  env: Record<string, unknown>;
  /**
   * The task spec, container spec or env is a secret (or unknown) as a whole, so none of the
   * settings inside can be read; policies say so rather than report them missing.
   */
  opaque: boolean;
  args: unknown[];
  commands: unknown[];
  mounts: Mount[];
  /** Swarm placement constraints (taskSpec.placement.constraints). */
  constraints: string[];
  /** The logical name other services refer to it by (LABELS.service, else its name). */
  logicalName: string;
  role?: string;
}

export function serviceView(r: PlannedResource): ServiceView {
  const taskSpec = obj(r.inputs.taskSpec);
  const spec = obj(taskSpec?.containerSpec);
  const labels = { ...labelMap(spec?.labels), ...labelMap(r.inputs.labels) };
  const name = str(r.inputs.name) ?? r.name;
  const envRaw = spec?.env;
  return {
    resource: r,
    name,
    labels,
    image: str(spec?.image) ?? "",
    env: obj(envRaw) ?? {},
    opaque: [r.inputs.taskSpec, taskSpec?.containerSpec, envRaw].some((v) => isSecret(v) || isUnknown(v)),
    args: arr(spec?.args),
    commands: arr(spec?.commands),
    mounts: arr(spec?.mounts).map((m) => {
      const o = obj(m) ?? {};
      return { type: str(o.type) ?? "", source: str(o.source), target: str(o.target) };
    }),
    constraints: arr(obj(taskSpec?.placement)?.constraints).filter((c): c is string => typeof c === "string"),
    logicalName: labels[LABELS.service] ?? name,
    role: labels[LABELS.role],
  };
}

export function services(resources: PlannedResource[]): ServiceView[] {
  return resources.filter((r) => r.type === TYPES.service).map(serviceView);
}

/** Services that protect `target`: LABELS.protects equals its logical name or its Swarm name. */
export function sidecarsOf(target: ServiceView, all: ServiceView[]): ServiceView[] {
  return all.filter((s) => {
    const p = s.labels[LABELS.protects];
    return s !== target && p !== undefined && (p === target.logicalName || p === target.name);
  });
}

/** A setting read from the sidecar env first, then from a label on the protected service. */
export function setting(
  envKey: string,
  labelKey: string | undefined,
  sidecar: ServiceView | undefined,
  protectedSvc: ServiceView | undefined,
): string | undefined {
  const fromEnv = sidecar ? sidecar.env[envKey] : undefined;
  if (fromEnv !== undefined && fromEnv !== "") return String(fromEnv);
  if (labelKey && protectedSvc?.labels[labelKey] !== undefined) return protectedSvc.labels[labelKey];
  if (labelKey && sidecar?.labels[labelKey] !== undefined) return sidecar.labels[labelKey];
  return undefined;
}

/** A unit of protection: a sidecar and the service it protects (when that is in the stack). */
export interface Protection {
  sidecar: ServiceView;
  /** LABELS.protects of the sidecar. */
  protects: string;
  target?: ServiceView;
}

export function protections(all: ServiceView[]): Protection[] {
  const out: Protection[] = [];
  for (const s of all) {
    const p = s.labels[LABELS.protects];
    if (p === undefined) continue;
    const target = all.find((t) => t !== s && (t.logicalName === p || t.name === p));
    out.push({ sidecar: s, protects: p, target });
  }
  return out;
}

export function engineOf(p: Protection): string | undefined {
  return setting(AGENT_ENV.engine, LABELS.engine, p.sidecar, p.target)?.toLowerCase();
}

// ---- regions ---------------------------------------------------------------------------

/**
 * Which S3 endpoint a resource acts on. A stack may declare a primary and a DR bucket with the
 * same name behind two providers, so a bucket's versioning, lifecycle, retention and writers
 * are matched by name AND endpoint: minio resources through their provider (`minioServer`),
 * commands and services through their KDR_S3_ENDPOINT.
 */
export interface Scope {
  endpoint?: string;
  provider?: string;
}

/** "host:port", lower case, with the scheme's default port when none is given. */
export function hostPort(endpoint: string, ssl?: boolean): string | undefined {
  if (isSecret(endpoint) || isUnknown(endpoint) || endpoint === "") return undefined;
  try {
    const url = new URL(endpoint.includes("://") ? endpoint : `${ssl === false ? "http" : "https"}://${endpoint}`);
    const port = url.port || (url.protocol === "http:" ? "80" : "443");
    return `${url.hostname.toLowerCase()}:${port}`;
  } catch {
    return undefined;
  }
}

export function scopeOf(r: PlannedResource, all: PlannedResource[]): Scope {
  if (r.provider) {
    // A provider reference is its URN, or "<urn>::<id>" as the engine writes it.
    const p = all.find((x) => x.urn !== undefined && (r.provider === x.urn || r.provider!.startsWith(`${x.urn}::`)));
    const server = str(p?.inputs.minioServer);
    const ssl = p?.inputs.minioSsl;
    return { provider: p?.urn ?? r.provider, endpoint: server ? hostPort(server, ssl === undefined ? undefined : String(ssl) === "true") : undefined };
  }
  const env = r.type === TYPES.service ? obj(obj(obj(r.inputs.taskSpec)?.containerSpec)?.env) : obj(r.inputs.environment);
  const e = str(env?.[AGENT_ENV.s3Endpoint]) ?? str(env?.AWS_ENDPOINT_URL);
  return { endpoint: e ? hostPort(e) : undefined };
}

/** Same endpoint when both are known; same provider when both are known; otherwise no evidence against. */
export function sameScope(a: Scope, b: Scope): boolean {
  if (a.endpoint && b.endpoint) return a.endpoint === b.endpoint;
  if (a.provider && b.provider) return a.provider === b.provider;
  return true;
}

// ---- buckets ---------------------------------------------------------------------------

export interface BucketView {
  resource: PlannedResource;
  scope: Scope;
  /** The S3 bucket name (inputs.bucket, else the resource name). */
  name: string;
  acl?: string;
  objectLocking: unknown;
  versioning: PlannedResource[];
  ilm: PlannedResource[];
  policies: PlannedResource[];
}

/**
 * Whether a `bucket` input of a versioning/ILM/policy resource points at this bucket. The
 * input is normally the bucket's `bucket` output (its name); when that is not known yet (a
 * preview of a new bucket), the only bucket under the same parent component is taken.
 */
function pointsAt(ref: unknown, b: PlannedResource, bucketName: string, siblings: PlannedResource[], from: PlannedResource): boolean {
  if (typeof ref === "string" && !isUnknown(ref)) {
    return ref === bucketName || ref === b.name || ref === b.urn;
  }
  const sameParent = siblings.filter((s) => s.parent !== undefined && s.parent === from.parent);
  return sameParent.length === 1 && sameParent[0] === b;
}

export function bucketName(r: PlannedResource): string {
  const b = str(r.inputs.bucket);
  return b && !isUnknown(b) ? b : r.name;
}

export function buckets(resources: PlannedResource[]): BucketView[] {
  const bucketResources = resources.filter((r) => r.type === TYPES.bucket);
  const related = (type: string, b: PlannedResource, name: string) =>
    resources.filter((r) => r.type === type && pointsAt(r.inputs.bucket, b, name, bucketResources, r) && sameScope(scopeOf(r, resources), scopeOf(b, resources)));
  return bucketResources.map((r) => {
    const name = bucketName(r);
    return {
      resource: r,
      scope: scopeOf(r, resources),
      name,
      acl: str(r.inputs.acl),
      objectLocking: r.inputs.objectLocking,
      versioning: related(TYPES.versioning, r, name),
      ilm: related(TYPES.ilm, r, name),
      policies: related(TYPES.bucketPolicy, r, name),
    };
  });
}

/** Parses an ILM `expiration` such as "30d" into days; dates and other forms give undefined. */
export function expirationDays(v: unknown): number | undefined {
  const m = typeof v === "string" ? /^\s*(\d+)\s*d\s*$/i.exec(v) : null;
  return m ? Number(m[1]) : typeof v === "number" ? v : undefined;
}

export interface IlmRule {
  id: string;
  filter?: string;
  enabled: boolean;
  expirationDays?: number;
  noncurrentDays?: number;
  resource: PlannedResource;
}

export function ilmRules(b: BucketView): IlmRule[] {
  return b.ilm.flatMap((r) =>
    arr(r.inputs.rules).map((rule) => {
      const o = obj(rule) ?? {};
      const status = str(o.status);
      return {
        id: str(o.id) ?? "",
        filter: str(o.filter),
        // The provider's default status is Enabled.
        enabled: status === undefined || status.toLowerCase() === "enabled",
        expirationDays: expirationDays(o.expiration),
        noncurrentDays: typeof o.noncurrentVersionExpirationDays === "number" ? o.noncurrentVersionExpirationDays : undefined,
        resource: r,
      };
    }),
  );
}

// ---- commands --------------------------------------------------------------------------

/** The shell text a local.Command runs (create and update); SECRET when it is a secret. */
export function commandText(r: PlannedResource): string {
  return [r.inputs.create, r.inputs.update].filter((v): v is string => typeof v === "string").join("\n");
}

/** Reads `--flag value` or `--flag=value` from a command line. */
export function flagValue(text: string, flag: string): string | undefined {
  const re = new RegExp(`(?:^|\\s)--${flag}(?:=|\\s+)(?:'([^']*)'|"([^"]*)"|(\\S+))`);
  const m = re.exec(text);
  return m ? (m[1] ?? m[2] ?? m[3]) : undefined;
}

export interface DefaultRetention {
  bucket: string;
  mode?: string;
  days: number;
  resource: PlannedResource;
}

/**
 * Default object-lock retention set by a local.Command: `kryonix-dr s3 put-default-retention
 * --bucket B --mode M --days N` (this project's CLI), `mc retention set --default MODE Nd
 * ALIAS/B`, or `aws s3api put-object-lock-configuration --bucket B ... "Days": N`.
 */
export function defaultRetentions(resources: PlannedResource[]): DefaultRetention[] {
  const out: DefaultRetention[] = [];
  for (const r of resources) {
    if (r.type !== TYPES.command) continue;
    const text = commandText(r);
    if (/put-default-retention/.test(text)) {
      const bucket = flagValue(text, "bucket");
      const days = Number(flagValue(text, "days"));
      if (bucket && Number.isFinite(days)) out.push({ bucket, mode: flagValue(text, "mode"), days, resource: r });
      continue;
    }
    const mc = /\bmc\s+retention\s+set\s+--default\s+(\w+)\s+(\d+)d\s+\S*?([^/\s]+)\/?(?:\s|$)/.exec(text);
    if (mc) {
      out.push({ bucket: mc[3], mode: mc[1], days: Number(mc[2]), resource: r });
      continue;
    }
    if (/put-object-lock-configuration/.test(text)) {
      const bucket = flagValue(text, "bucket");
      const days = /"Days"\s*:\s*(\d+)/.exec(text);
      const mode = /"Mode"\s*:\s*"(\w+)"/.exec(text);
      if (bucket && days) out.push({ bucket, mode: mode?.[1], days: Number(days[1]), resource: r });
    }
  }
  return out;
}

/** Words of a command line or env value, for "does it name this bucket" checks. */
export function namesToken(text: string, token: string): boolean {
  const esc = token.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(^|[\\s/=:,'"])${esc}($|[\\s/,'":])`).test(text);
}
