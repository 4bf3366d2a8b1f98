/**
 * The kryonix-dr policies. Each is a plain @pulumi/policy StackValidationPolicy: the pack entry
 * (index.ts) hands them to `new PolicyPack`, and `evaluatePolicies` (evaluate.ts) calls the very
 * same `validateStack` on an in-process plan. Only types are imported from @pulumi/policy, so
 * loading this module never starts the analyzer's gRPC server.
 *
 * Every check reads the graph through model.ts and reports one message per problem; each
 * message names the resource and says how to fix it.
 */
import type { PolicyConfigSchema, PolicyResource, StackValidationPolicy } from "@pulumi/policy";
import { AGENT_ENV, LABELS } from "../contract/index.js";
import {
  isOwnRole,
  SECRET,
  TYPES,
  UNKNOWN,
  arr,
  buckets,
  commandText,
  defaultRetentions,
  describe,
  engineOf,
  hostPort,
  ilmRules,
  isSecret,
  isUnknown,
  namesToken,
  obj,
  protections,
  sameScope,
  scopeOf,
  services,
  setting,
  sidecarsOf,
  str,
  type BucketView,
  type PlannedResource,
  type Protection,
  type ServiceView,
} from "./model.js";
import { cronError, humanDuration as human, worstGapSeconds } from "../contract/schedule.js";

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

function define<C extends object>(def: Definition<C>): KdrPolicy {
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

// ---- shared judgements ---------------------------------------------------------------------

export const DEFAULT_ENGINES = [
  "postgres", "postgis", "timescale", "redis", "valkey", "keydb", "minio", "mysql", "mariadb",
  "percona", "mongo", "elasticsearch", "opensearch", "cassandra", "scylla", "influxdb",
  "clickhouse", "etcd", "rabbitmq", "nats", "kafka", "zookeeper", "couchdb", "neo4j", "questdb",
];

/** The engine an image names: any word of any path segment (tag and digest dropped) that starts with one. */
export function imageEngine(image: string, engines: string[]): string | undefined {
  const path = image.split("@")[0].toLowerCase();
  const segments = path.split("/");
  segments[segments.length - 1] = segments[segments.length - 1].split(":")[0];
  for (const word of segments.flatMap((s) => s.split(/[-_.]/))) {
    const e = engines.find((eng) => word.startsWith(eng.toLowerCase()));
    if (e) return e;
  }
  return undefined;
}

function isOwnService(s: ServiceView): boolean {
  return isOwnRole(s.role) || s.labels[LABELS.protects] !== undefined;
}

interface StatefulConfig {
  engines: string[];
  statefulMountTypes: string[];
  exclude: string[];
}

/** Why a service holds state, or undefined when it does not. */
function statefulReason(s: ServiceView, cfg: StatefulConfig): string | undefined {
  if (isOwnService(s) || cfg.exclude.includes(s.name) || cfg.exclude.includes(s.logicalName)) return undefined;
  const mount = s.mounts.find((m) => cfg.statefulMountTypes.includes(m.type));
  if (mount) return `mounts ${mount.type} "${mount.source ?? "(anonymous)"}" at ${mount.target ?? "?"}`;
  if (s.labels[LABELS.engine]) return `its label ${LABELS.engine}=${s.labels[LABELS.engine]} names an engine`;
  if (s.labels[LABELS.stateful] === "true") return `it is labelled ${LABELS.stateful}=true`;
  const e = imageEngine(s.image, cfg.engines);
  if (e) return `its image "${s.image}" is a ${e} engine`;
  return undefined;
}

function svcName(s: ServiceView): string {
  return `Swarm service "${s.name}" (${describe(s.resource)})`;
}

/** The finding for a sidecar whose settings cannot be read at all. */
function opaqueFinding(p: Protection): Finding {
  return {
    resource: p.sidecar.resource,
    message:
      `Backup sidecar "${p.sidecar.name}" (${describe(p.sidecar.resource)}) of "${p.protects}" has a task spec or env that is a secret or unknown as a whole, ` +
      `so its schedule, retention and RPO cannot be checked. Fix: keep secrets out of taskSpec (mount them as Swarm secrets) so the settings stay plain.`,
  };
}

function bucketLabel(b: BucketView): string {
  return `Bucket "${b.name}" (${describe(b.resource)})`;
}

/** Protections that take backups: sidecars, not cron/replicator/restore jobs that also name a service. */
function backupProtections(all: ServiceView[]): Protection[] {
  return protections(all).filter((p) => p.sidecar.role === undefined || p.sidecar.role === "sidecar");
}

function positiveNumber(v: string | undefined): number | undefined {
  if (v === undefined || v === "" || isSecret(v) || isUnknown(v)) return undefined;
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

// ---- IAM / bucket policy documents ----------------------------------------------------------

interface Statement {
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

function glob(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, "i");
}

function actionMatches(pattern: string, action: string): boolean {
  return glob(pattern).test(action);
}

function isPublicPrincipal(p: unknown): boolean {
  if (p === "*") return true;
  const o = obj(p);
  if (!o) return false;
  return Object.values(o).some((v) => v === "*" || (Array.isArray(v) && v.includes("*")));
}

const PUBLIC_ACLS = /^public/i;
const PUBLIC_MC = /\bmc\s+(?:policy\s+set|anonymous\s+set)\s+(download|upload|public|readonly|readwrite|writeonly)\b/;

// ---- 1 ---------------------------------------------------------------------------------------

export const statefulServiceHasSidecar = define<StatefulConfig>({
  name: "stateful-service-has-backup-sidecar",
  description:
    "Every stateful Swarm service (mounts a volume, or its image or labels name a known engine) is covered by a backup sidecar.",
  defaults: { engines: DEFAULT_ENGINES, statefulMountTypes: ["volume"], exclude: [] },
  schema: {
    engines: { type: "array", items: { type: "string" }, description: "Image words that mark a stateful engine." },
    statefulMountTypes: { type: "array", items: { type: "string" }, description: "Mount types that hold state." },
    exclude: { type: "array", items: { type: "string" }, description: "Service names whose data is disposable." },
  },
  check(resources, cfg) {
    const all = services(resources);
    return all.flatMap((s) => {
      const why = statefulReason(s, cfg);
      if (!why || sidecarsOf(s, all).length > 0) return [];
      return [
        {
          resource: s.resource,
          message:
            `${svcName(s)} holds state (${why}) but no backup sidecar protects it. ` +
            `Fix: add a backup sidecar for it (a Swarm service labelled ${LABELS.protects}=${s.logicalName}), ` +
            `or, if its data is disposable, list "${s.name}" under "exclude" in this policy's config.`,
        },
      ];
    });
  },
});

// ---- 2 ---------------------------------------------------------------------------------------

export const backupBucketIsSafe = define<{ exclude: string[] }>({
  name: "backup-bucket-private-versioned-locked",
  description: "Every backup bucket is private, versioned and object-locked, and has lifecycle rules.",
  defaults: { exclude: [] },
  schema: { exclude: { type: "array", items: { type: "string" }, description: "Bucket names that hold no backups." } },
  check(resources, cfg) {
    const out: Finding[] = [];
    for (const b of buckets(resources)) {
      if (cfg.exclude.includes(b.name)) continue;
      const who = bucketLabel(b);
      if (b.acl !== undefined && b.acl !== "private") {
        out.push({ resource: b.resource, message: `${who} has acl "${b.acl}", so it is not private. Fix: set acl: "private" (or leave it unset).` });
      }
      for (const p of b.policies) {
        const doc = parsePolicyDocument(p.inputs.policy);
        if ("statements" in doc && doc.statements.some((s) => s.effect === "Allow" && isPublicPrincipal(s.principal))) {
          out.push({
            resource: b.resource,
            message: `${who} is not private: ${describe(p)} allows anonymous access (Principal "*"). Fix: remove that bucket policy; give each client its own IAM user instead.`,
          });
        }
      }
      const enabled = b.versioning.filter((v) => str(obj(v.inputs.versioningConfiguration)?.status) === "Enabled");
      if (enabled.length === 0) {
        const state = b.versioning.length === 0 ? "has no S3BucketVersioning" : `has versioning status "${str(obj(b.versioning[0].inputs.versioningConfiguration)?.status) ?? "unset"}"`;
        out.push({
          resource: b.resource,
          message: `${who} is not versioned (it ${state}). Fix: declare a minio.S3BucketVersioning for it with versioningConfiguration.status "Enabled".`,
        });
      }
      if (b.objectLocking !== true) {
        out.push({
          resource: b.resource,
          message:
            `${who} is not object-locked (objectLocking is ${b.objectLocking === undefined ? "unset" : JSON.stringify(b.objectLocking)}). ` +
            `Fix: set objectLocking: true on the bucket (MinIO only enables it at creation, so the bucket is replaced) and give it a default retention.`,
        });
      }
      const rules = ilmRules(b).filter((r) => r.enabled && (r.expirationDays !== undefined || r.noncurrentDays !== undefined));
      if (rules.length === 0) {
        out.push({
          resource: b.resource,
          message: `${who} has no lifecycle rule that expires anything. Fix: declare a minio.IlmPolicy for it with one enabled rule per backup class prefix (for example filter "full/", expiration "30d").`,
        });
      }
    }
    return out;
  },
});

// ---- 3 ---------------------------------------------------------------------------------------

/** Default retentions from local.Command resources or from a resource that declares one. */
function lockRetentions(resources: PlannedResource[]): { bucket: string; days: number; resource: PlannedResource }[] {
  const fromCommands = defaultRetentions(resources);
  const fromResources = resources
    .filter((r) => r.type !== TYPES.command && /retention/i.test(`${r.type} ${r.name}`))
    .flatMap((r) => {
      const bucket = str(r.inputs.bucket);
      const days = [r.inputs.days, r.inputs.retentionDays, r.inputs.validityDays].find((d) => typeof d === "number") as number | undefined;
      return bucket && days !== undefined ? [{ bucket, days, resource: r }] : [];
    });
  return [...fromCommands, ...fromResources];
}

export const lockCoversLifecycle = define<object>({
  name: "lock-retention-covers-lifecycle",
  description: "A bucket's object-lock retention is no shorter than the lifecycle expiry it protects.",
  defaults: {},
  schema: {},
  check(resources) {
    const out: Finding[] = [];
    const locks = lockRetentions(resources);
    for (const b of buckets(resources)) {
      const rules = ilmRules(b).filter((r) => r.enabled && r.expirationDays !== undefined);
      if (rules.length === 0) continue;
      const longestRule = rules.reduce((a, r) => (r.expirationDays! > a.expirationDays! ? r : a));
      const longest = { id: longestRule.id, expirationDays: longestRule.expirationDays! };
      const lock = locks.filter((l) => (l.bucket === b.name || l.bucket === b.resource.name) && sameScope(scopeOf(l.resource, resources), b.scope));
      if (lock.length === 0) {
        out.push({
          resource: b.resource,
          message:
            `${bucketLabel(b)} expires objects after up to ${longest.expirationDays} days (rule "${longest.id}") but has no default lock retention, ` +
            `so backups can be deleted before they expire. Fix: set a default retention of at least ${longest.expirationDays} days ` +
            `(kryonix-dr s3 put-default-retention --bucket ${b.name} --mode GOVERNANCE --days ${longest.expirationDays}).`,
        });
        continue;
      }
      const days = Math.min(...lock.map((l) => l.days));
      if (days < longest.expirationDays) {
        const l = lock.find((x) => x.days === days)!;
        out.push({
          resource: l.resource,
          message:
            `${bucketLabel(b)} has a default lock retention of ${days} days (${describe(l.resource)}) but its lifecycle rule "${longest.id}" ` +
            `keeps objects ${longest.expirationDays} days, so for ${longest.expirationDays - days} days they are unlocked and deletable. ` +
            `Fix: raise the retention to at least ${longest.expirationDays} days, or shorten the rule's expiration.`,
        });
      }
    }
    return out;
  },
});

// ---- 4 ---------------------------------------------------------------------------------------

export const retentionCoversFulls = define<{ minFullBackups: number }>({
  name: "retention-covers-two-full-backups",
  description: "Each service's retention covers at least two full-backup intervals.",
  defaults: { minFullBackups: 2 },
  schema: { minFullBackups: { type: "number", minimum: 1, description: "Full backups the retention must keep." } },
  check(resources, cfg) {
    const out: Finding[] = [];
    for (const p of backupProtections(services(resources))) {
      if (p.sidecar.opaque) {
        out.push(opaqueFinding(p));
        continue;
      }
      const who = `Backup sidecar "${p.sidecar.name}" (${describe(p.sidecar.resource)}) of "${p.protects}"`;
      const schedule = p.sidecar.env[AGENT_ENV.scheduleFull];
      const retention = p.sidecar.env[AGENT_ENV.retentionFullDays];
      if (typeof schedule !== "string" || schedule === "" || isSecret(schedule)) {
        out.push({
          resource: p.sidecar.resource,
          message: `${who} has no full-backup schedule (${AGENT_ENV.scheduleFull} is ${schedule === undefined ? "unset" : JSON.stringify(schedule)}). Fix: set ${AGENT_ENV.scheduleFull} to a cron expression, e.g. "0 2 * * *".`,
        });
        continue;
      }
      const err = cronError(schedule);
      if (err) {
        out.push({ resource: p.sidecar.resource, message: `${who} has an invalid ${AGENT_ENV.scheduleFull} "${schedule}": ${err}. Fix: use a 5- or 6-field cron expression.` });
        continue;
      }
      const days = positiveNumber(typeof retention === "string" ? retention : retention === undefined ? undefined : String(retention));
      if (days === undefined) {
        out.push({
          resource: p.sidecar.resource,
          message: `${who} declares no full-backup retention (${AGENT_ENV.retentionFullDays} is ${retention === undefined ? "unset" : JSON.stringify(retention)}). Fix: set ${AGENT_ENV.retentionFullDays} to a whole number of days.`,
        });
        continue;
      }
      const interval = worstGapSeconds([schedule]);
      const need = cfg.minFullBackups * interval;
      if (days * 86400 < need) {
        out.push({
          resource: p.sidecar.resource,
          message:
            `${who} keeps full backups ${days} days but "${schedule}" runs every ${human(interval)} at worst, so fewer than ${cfg.minFullBackups} full backups are kept. ` +
            `Fix: set ${AGENT_ENV.retentionFullDays} to at least ${Math.ceil(need / 86400)}, or schedule full backups more often.`,
        });
      }
    }
    return out;
  },
});

// ---- 5 ---------------------------------------------------------------------------------------

export const scheduleMeetsRpo = define<{ walMarginSeconds: number }>({
  name: "schedule-meets-rpo",
  description: "Each service's backup schedule or continuous mechanism can meet its declared RPO.",
  defaults: { walMarginSeconds: 30 },
  schema: {
    walMarginSeconds: { type: "number", minimum: 0, description: `Time to ship a switched WAL segment, added to ${AGENT_ENV.walSwitchSeconds}.` },
  },
  check(resources, cfg) {
    const out: Finding[] = [];
    for (const p of backupProtections(services(resources))) {
      const rpo = positiveNumber(setting(AGENT_ENV.rpoSeconds, LABELS.rpoSeconds, p.sidecar, p.target));
      if (rpo === undefined) continue; // protected-service-declares-rpo-rto reports it
      if (p.sidecar.opaque) {
        out.push(opaqueFinding(p));
        continue;
      }
      const who = `Backup sidecar "${p.sidecar.name}" (${describe(p.sidecar.resource)}) of "${p.protects}"`;
      const engine = engineOf(p);
      const wal = positiveNumber(str(p.sidecar.env[AGENT_ENV.walSwitchSeconds]));
      if (engine === "postgres" && wal !== undefined) {
        if (wal + cfg.walMarginSeconds > rpo) {
          out.push({
            resource: p.sidecar.resource,
            message:
              `${who} switches WAL every ${wal} s; with ${cfg.walMarginSeconds} s to ship a segment that is ${wal + cfg.walMarginSeconds} s of possible loss, over its RPO of ${rpo} s. ` +
              `Fix: set ${AGENT_ENV.walSwitchSeconds} to at most ${Math.max(1, rpo - cfg.walMarginSeconds)}, or raise the RPO.`,
          });
        }
        continue;
      }
      const patterns: string[] = [];
      for (const key of [AGENT_ENV.scheduleFull, AGENT_ENV.scheduleIncremental]) {
        const v = p.sidecar.env[key];
        if (typeof v === "string" && v !== "" && !isSecret(v) && cronError(v) === undefined) patterns.push(v);
      }
      const walHint = engine === "postgres" ? `set ${AGENT_ENV.walSwitchSeconds} (continuous WAL) to at most ${Math.max(1, rpo - cfg.walMarginSeconds)}, or ` : "";
      if (patterns.length === 0) {
        out.push({
          resource: p.sidecar.resource,
          message: `${who} has no valid backup schedule, so nothing meets its RPO of ${rpo} s. Fix: ${walHint}set ${AGENT_ENV.scheduleFull} / ${AGENT_ENV.scheduleIncremental} to cron expressions that run at least every ${human(rpo)}.`,
        });
        continue;
      }
      const gap = worstGapSeconds(patterns);
      if (gap > rpo) {
        out.push({
          resource: p.sidecar.resource,
          message:
            `${who} can go ${human(gap)} between backups (${patterns.map((x) => `"${x}"`).join(" + ")}), over its RPO of ${human(rpo)}. ` +
            `Fix: ${walHint}schedule ${AGENT_ENV.scheduleIncremental} at least every ${human(rpo)}, or raise the RPO.`,
        });
      }
    }
    return out;
  },
});

// ---- 6 ---------------------------------------------------------------------------------------

function tierOf(p: Protection): string | undefined {
  return setting(AGENT_ENV.tier, LABELS.tier, p.sidecar, p.target)?.toLowerCase();
}

/** What replicates a bucket: a native replication command, or a replicator service naming it. */
function replicators(resources: PlannedResource[], all: ServiceView[], bucket: string): PlannedResource[] {
  const commands = resources.filter((r) => r.type === TYPES.command && /replicat/i.test(commandText(r)) && namesToken(commandText(r), bucket));
  const svc = all.filter((s) => {
    if (s.role !== "replicator" && !s.role?.startsWith("replicator-")) return false;
    // A copy to the same endpoint is no copy in another region.
    const from = hostPort(str(s.env[AGENT_ENV.s3Endpoint]) ?? "");
    const to = hostPort(str(s.env[AGENT_ENV.replicaEndpoint]) ?? "");
    if (from !== undefined && from === to) return false;
    const words = [...Object.values(s.env), ...s.args, ...s.commands, ...Object.values(s.labels)].filter((x): x is string => typeof x === "string");
    return words.some((w) => w === bucket || namesToken(w, bucket) || w.split(",").map((x) => x.trim()).includes(bucket));
  });
  return [...commands, ...svc.map((s) => s.resource)];
}

export const criticalBucketReplicated = define<{ criticalBuckets: string[] }>({
  name: "critical-bucket-replicated",
  description: "Every critical-tier bucket is replicated to the DR region.",
  defaults: { criticalBuckets: [] },
  schema: { criticalBuckets: { type: "array", items: { type: "string" }, description: "Buckets that are critical whatever the tiers of their services." } },
  check(resources, cfg) {
    const out: Finding[] = [];
    const all = services(resources);
    const prots = backupProtections(all);
    for (const b of buckets(resources)) {
      const critical = prots.filter(
        (p) => p.sidecar.env[AGENT_ENV.s3Bucket] === b.name && tierOf(p) === "critical" && sameScope(scopeOf(p.sidecar.resource, resources), b.scope),
      );
      if (critical.length === 0 && !cfg.criticalBuckets.includes(b.name)) continue;
      if (replicators(resources, all, b.name).some((r) => sameScope(scopeOf(r, resources), b.scope))) continue;
      const why = critical.length > 0 ? `holds critical-tier backups (of ${critical.map((p) => `"${p.protects}"`).join(", ")})` : "is listed in criticalBuckets";
      out.push({
        resource: b.resource,
        message:
          `${bucketLabel(b)} ${why} but nothing replicates it to the DR region. ` +
          `Fix: declare its native replication (a local.Command that configures bucket replication for "${b.name}") or a replicator service (${LABELS.role}=replicator) that names "${b.name}".`,
      });
    }
    return out;
  },
});

// ---- 7 ---------------------------------------------------------------------------------------

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

// ---- 8 ---------------------------------------------------------------------------------------

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

/** restic must remove its own lock files; that is the one delete a backup writer may do. */
const RESTIC_LOCKS = /^arn:aws:s3:::[^/]+\/restic\/[^/*]+\/g\*\/locks\/\*$/;

/** A sidecar user is tagged role=sidecar, or named like one (the components name them `<prefix>-sidecar-<service>`). */
function isSidecarUser(u: PlannedResource, pattern: string): boolean {
  const tags = obj(u.inputs.tags) ?? {};
  const role = str(tags[LABELS.role]) ?? str(tags.role);
  if (role !== undefined) return role === "sidecar";
  const re = new RegExp(pattern, "i");
  return re.test(str(u.inputs.name) ?? "") || re.test(u.name);
}

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

// ---- 9 ---------------------------------------------------------------------------------------

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

// ---- 10 --------------------------------------------------------------------------------------

export const declaresTargets = define<object>({
  name: "protected-service-declares-rpo-rto",
  description: "Every protected service declares RPO and RTO targets.",
  defaults: {},
  schema: {},
  check(resources) {
    const out: Finding[] = [];
    const byTarget = new Map<string, Protection[]>();
    for (const p of backupProtections(services(resources))) byTarget.set(p.protects, [...(byTarget.get(p.protects) ?? []), p]);
    for (const [name, ps] of byTarget) {
      const target = ps.find((p) => p.target)?.target;
      const resource = target?.resource ?? ps[0].sidecar.resource;
      const read = (env: string, label: string) => ps.map((p) => setting(env, label, p.sidecar, p.target)).find((v) => v !== undefined);
      for (const [what, env, label] of [
        ["RPO", AGENT_ENV.rpoSeconds, LABELS.rpoSeconds],
        ["RTO", AGENT_ENV.rtoSeconds, LABELS.rtoSeconds],
      ] as const) {
        const v = read(env, label);
        if (positiveNumber(v) !== undefined) continue;
        const state = v === undefined ? "declares none" : `declares ${JSON.stringify(v)}, which is not a positive number of seconds`;
        out.push({
          resource,
          message:
            `Protected service "${name}" (${describe(resource)}) ${state} for its ${what}. ` +
            `Fix: set the label ${label} on the service (or ${env} on its sidecar) to the target in seconds.`,
        });
      }
    }
    return out;
  },
});

// ---- 11 --------------------------------------------------------------------------------------

export const volumeSidecarOnDataNode = define<object>({
  name: "volume-sidecar-on-the-data-node",
  description:
    "A volume backup sidecar is pinned by placement constraints to the node that holds the volume: the protected service's own constraints, and some at all.",
  defaults: {},
  schema: {},
  check(resources) {
    const out: Finding[] = [];
    for (const p of backupProtections(services(resources))) {
      if (engineOf(p) !== "volume") continue;
      const who = `Backup sidecar "${p.sidecar.name}" (${describe(p.sidecar.resource)}) of "${p.protects}"`;
      const fix = `Fix: set kryonix-dr:services[].placement of "${p.protects}" (e.g. ["node.labels.kryonix.${p.protects} == true"], with that label on the one node that holds its data); the service and its sidecar both get it.`;
      if (p.sidecar.constraints.length === 0) {
        out.push({
          resource: p.sidecar.resource,
          message: `${who} has no placement constraint: on a multi-node swarm it can start on a node where its volume is empty (a local volume lives on one node) and back up nothing. ${fix}`,
        });
        continue;
      }
      if (!p.target) continue;
      if (p.target.constraints.length === 0) {
        out.push({
          resource: p.target.resource,
          message: `Protected service "${p.protects}" (${describe(p.target.resource)}) keeps its data on a volume but has no placement constraint, so its data is wherever it last ran and its sidecar cannot follow. ${fix}`,
        });
        continue;
      }
      const missing = p.target.constraints.filter((c) => !p.sidecar.constraints.includes(c));
      if (missing.length) {
        out.push({
          resource: p.sidecar.resource,
          message: `${who} lacks the protected service's placement constraint(s) ${missing.map((c) => JSON.stringify(c)).join(", ")}, so it can run on another node than the data. ${fix}`,
        });
      }
    }
    return out;
  },
});

/** Every policy, in the order the issue lists them. */
export const policies: KdrPolicy[] = [
  statefulServiceHasSidecar,
  backupBucketIsSafe,
  lockCoversLifecycle,
  retentionCoversFulls,
  scheduleMeetsRpo,
  criticalBucketReplicated,
  noPlainCredentials,
  sidecarCannotDelete,
  noPublicBucket,
  declaresTargets,
  volumeSidecarOnDataNode,
];
