/**
 * Runs a stack's Pulumi program in this process, with no Pulumi CLI and no provider plugins.
 *
 * The program is loaded exactly as the Node language host would load it (Pulumi.yaml `main`, else
 * package.json `main`), with the stack's config set through the SDK, under the SDK's own mock
 * monitor. Every registration reaches a ResourceHandler: the plan handler only records it, the
 * local deployer creates it for real. The stacks never know: only public @pulumi/pulumi runtime
 * APIs are used (setAllConfig, setMocks, getMonitor, runInPulumiStack, disconnect).
 *
 * What the mock monitor alone does not tell `Mocks.newResource` (checked in @pulumi/pulumi 3.276):
 * - Secrets. The SDK serializes a secret as `{<sig>: <secretSig>, value}` exactly where the
 *   program marked it, but the mock monitor's deserializeProperties pushes secretness up to the
 *   top-level property ("we can't set sub-properties to secret"), so `args.inputs.taskSpec` is
 *   wholly wrapped when one env var inside it is secret. The exact paths are read from the raw
 *   RegisterResourceRequest instead.
 * - Parent, dependencies and provider reference. They are only on the request
 *   (getParent, getDependenciesList, getProvider).
 * Both are captured by wrapping the mock monitor's registerResource/readResource, which call
 * `newResource` synchronously with the same request (MockMonitor.registerResource).
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import yaml from "js-yaml";

export interface Registration {
  type: string;
  name: string;
  /** false for component resources (and the root stack), which create nothing. */
  custom: boolean;
  /** Inputs with every secret unwrapped to its plain value; `secretPaths` says which were secret. */
  inputs: Record<string, unknown>;
  /** URN of the explicit provider resource, when the resource was given one. */
  provider?: string;
  /** URN of the parent (absent for the root stack). */
  parent?: string;
  /** URNs of the resources this one directly depends on (explicit dependsOn and inputs). */
  dependsOn?: string[];
  /** The id the handler returned (empty for components). */
  id: string;
  /** JSON Pointers (RFC 6901) into `inputs` of every value the program marked secret. */
  secretPaths: string[];
  urn: string;
  /** Set for `.get()` reads (e.g. StackReference): the id that was read, nothing is created. */
  readId?: string;
}

export interface ResourceHandler {
  create(r: Omit<Registration, "id">): Promise<{ id: string; state?: Record<string, unknown> }>;
}

export interface RunOptions {
  stack: string;
  /** Directory holding Pulumi.yaml; defaults to the repository root. */
  projectDir?: string;
  /**
   * Config that overrides the stack file, keyed `key` or `project:key`. The local stack's real
   * generated secrets come in this way, because `secure:` values in stack files cannot be
   * decrypted without the Pulumi CLI.
   */
  config?: Record<string, { value: unknown; secret?: boolean }>;
  /** Defaults to a handler that creates nothing (ids `<name>-id`, state = inputs). */
  handler?: ResourceHandler;
}

/** What a `secure:` config value becomes: it cannot be decrypted here, and it stays secret. */
export const REDACTED_SECRET = "[secret]";
export const ROOT_STACK_TYPE = "pulumi:pulumi:Stack";

const DEFAULT_PROJECT_DIR = resolve(__dirname, "..");
const SECRET_SIG = pulumi.runtime.specialSecretSig;
const SIG_KEY = pulumi.runtime.specialSigKey;

/** The handler used by `plan`: records, creates nothing. */
export const recordOnlyHandler: ResourceHandler = {
  async create(r) {
    return { id: r.readId ?? `${r.name}-id` };
  },
};

interface ProjectFile {
  name: string;
  main?: string;
  config?: Record<string, unknown>;
}

function readYaml(file: string): Record<string, unknown> {
  const doc = yaml.load(readFileSync(file, "utf8"));
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) throw new Error(`${file} must be a YAML mapping.`);
  return doc as Record<string, unknown>;
}

/** Replaces every `{secure: ...}` with the redacted placeholder; reports whether there was one. */
function redactSecure(v: unknown): { value: unknown; secret: boolean } {
  if (Array.isArray(v)) {
    let secret = false;
    const value = v.map((e) => {
      const r = redactSecure(e);
      secret ||= r.secret;
      return r.value;
    });
    return { value, secret };
  }
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    if (Object.keys(o).length === 1 && typeof o.secure === "string") return { value: REDACTED_SECRET, secret: true };
    let secret = false;
    const value: Record<string, unknown> = {};
    for (const [k, e] of Object.entries(o)) {
      const r = redactSecure(e);
      secret ||= r.secret;
      value[k] = r.value;
    }
    return { value, secret };
  }
  return { value: v, secret: false };
}

/** Config values reach the SDK as strings; structured values as JSON, as the CLI passes them. */
function configString(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

function qualify(project: string, key: string): string {
  return key.includes(":") ? key : `${project}:${key}`;
}

/**
 * Reads Pulumi.yaml and Pulumi.<stack>.yaml into the flat `project:key` map the SDK expects, and
 * the keys that are secret. Project-level `config:` entries with a `default` apply first.
 */
export function loadStackConfig(
  projectDir: string,
  stack: string,
  overrides: RunOptions["config"] = {},
): { project: ProjectFile; config: Record<string, string>; secretKeys: string[] } {
  const projectFile = join(projectDir, "Pulumi.yaml");
  if (!existsSync(projectFile)) throw new Error(`No Pulumi.yaml in ${projectDir}: run from the project root or pass its directory.`);
  const project = readYaml(projectFile) as unknown as ProjectFile;
  if (typeof project.name !== "string") throw new Error(`${projectFile} has no 'name'.`);
  const stackFile = join(projectDir, `Pulumi.${stack}.yaml`);
  if (!existsSync(stackFile)) {
    throw new Error(`Unknown stack '${stack}': ${stackFile} does not exist. Create it, or pick a stack that has a Pulumi.<stack>.yaml.`);
  }
  const config: Record<string, string> = {};
  const secret = new Set<string>();
  const put = (key: string, raw: unknown, isSecret = false) => {
    const k = qualify(project.name, key);
    const r = redactSecure(raw);
    config[k] = configString(r.value);
    if (r.secret || isSecret) secret.add(k);
    else secret.delete(k);
  };
  for (const [k, v] of Object.entries(project.config ?? {})) {
    // Project config is either `key: value` or a schema entry `{type, default, secret}`.
    if (v !== null && typeof v === "object" && !Array.isArray(v) && ("type" in v || "default" in v || "description" in v)) {
      const entry = v as { default?: unknown; secret?: boolean };
      if (entry.default !== undefined) put(k, entry.default, entry.secret === true);
    } else {
      put(k, v);
    }
  }
  const stackDoc = readYaml(stackFile);
  const stackConfig = (stackDoc.config ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(stackConfig)) put(k, v);
  for (const [k, v] of Object.entries(overrides ?? {})) put(k, v.value, v.secret === true);
  return { project, config, secretKeys: [...secret].sort() };
}

/** The program's entry, resolved as the Node language host does. */
export function programEntry(projectDir: string, project: ProjectFile): string {
  let main = project.main;
  if (!main) {
    const pkgFile = join(projectDir, "package.json");
    if (existsSync(pkgFile)) main = (JSON.parse(readFileSync(pkgFile, "utf8")) as { main?: string }).main;
  }
  let entry = resolve(projectDir, main ?? ".");
  if (existsSync(entry) && statSync(entry).isDirectory()) {
    const index = ["index.ts", "index.js"].map((f) => join(entry, f)).find(existsSync);
    if (!index) throw new Error(`No index.ts or index.js in ${entry} (the program's main).`);
    entry = index;
  }
  if (!existsSync(entry)) throw new Error(`The program's entry ${entry} does not exist.`);
  return entry;
}

function isSecretWrapper(v: unknown): v is { value: unknown } {
  return v !== null && typeof v === "object" && (v as Record<string, unknown>)[SIG_KEY] === SECRET_SIG;
}

function pointer(path: string[]): string {
  return path.map((p) => `/${p.replace(/~/g, "~0").replace(/\//g, "~1")}`).join("");
}

/** JSON Pointers of every secret in a serialized (raw request) property map. */
export function findSecretPaths(raw: unknown, path: string[] = [], out: string[] = []): string[] {
  if (isSecretWrapper(raw)) {
    out.push(pointer(path));
  } else if (Array.isArray(raw)) {
    raw.forEach((e, i) => findSecretPaths(e, [...path, String(i)], out));
  } else if (raw !== null && typeof raw === "object" && !(SIG_KEY in (raw as object))) {
    for (const [k, e] of Object.entries(raw as Record<string, unknown>)) findSecretPaths(e, [...path, k], out);
  }
  return out;
}

/** Removes every secret wrapper, leaving plain values. */
export function unwrapSecrets(v: unknown): unknown {
  if (isSecretWrapper(v)) return unwrapSecrets(v.value);
  if (Array.isArray(v)) return v.map(unwrapSecrets);
  if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    const o: Record<string, unknown> = {};
    for (const [k, e] of Object.entries(v as Record<string, unknown>)) o[k] = unwrapSecrets(e);
    return o;
  }
  return v;
}

/** A copy of `inputs` with the value at every secret path replaced by `replacement`. */
export function redact(inputs: Record<string, unknown>, secretPaths: string[], replacement: unknown = "[secret]"): Record<string, unknown> {
  const copy = structuredClone(inputs);
  for (const p of secretPaths) {
    const parts = p.split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
    if (parts.length === 0) continue;
    let node: unknown = copy;
    for (const part of parts.slice(0, -1)) node = node === null || typeof node !== "object" ? undefined : (node as Record<string, unknown>)[part];
    if (node !== null && typeof node === "object") (node as Record<string, unknown>)[parts[parts.length - 1]!] = replacement;
  }
  return copy;
}

interface RequestMeta {
  urn: string;
  parent?: string;
  provider?: string;
  dependsOn: string[];
  secretPaths: string[];
}

// Structural view of the gRPC request objects the monitor receives (generated protobuf classes).
interface RegisterRequestLike {
  getType(): string;
  getName(): string;
  getParent(): string;
  getProvider(): string;
  getObject?(): { toJavaScript(): unknown } | undefined;
  getProperties?(): { toJavaScript(): unknown } | undefined;
  getDependenciesList(): string[];
}
type MonitorMethod = (req: RegisterRequestLike, cb: (...args: unknown[]) => void) => unknown;

let used = false;

/**
 * Runs the stack program once (the SDK's runtime state is process-global, so a process runs one
 * program: `plan` and `deploy` start a fresh process for each).
 */
export async function runStackProgram(opts: RunOptions): Promise<{ registrations: Registration[]; outputs: Record<string, unknown> }> {
  if (used) throw new Error("runStackProgram runs one program per process; start a new process for another stack.");
  used = true;
  const projectDir = resolve(opts.projectDir ?? DEFAULT_PROJECT_DIR);
  const handler = opts.handler ?? recordOnlyHandler;
  const { project, config, secretKeys } = loadStackConfig(projectDir, opts.stack, opts.config);
  const entry = programEntry(projectDir, project);

  const registrations: Registration[] = [];
  const failures: unknown[] = [];
  // A handler's own error is the root cause; the SDK re-reports it, wrapped, through every
  // dependent ("error serializing property ..."), so it is the one to show.
  const rootCauses: unknown[] = [];
  const pending = new Map<string, RequestMeta[]>();
  const keyOf = (type: string, name: string) => `${type}\u0000${name}`;

  const mocks: pulumi.runtime.Mocks = {
    async newResource(args) {
      const queue = pending.get(keyOf(args.type, args.name));
      const meta = queue?.shift();
      if (!meta) throw new Error(`internal: no request captured for ${args.type} ${args.name}`);
      const base: Omit<Registration, "id"> = {
        type: args.type,
        name: args.name,
        custom: args.custom === true,
        inputs: unwrapSecrets(args.inputs) as Record<string, unknown>,
        ...(meta.provider ? { provider: meta.provider } : {}),
        ...(meta.parent ? { parent: meta.parent } : {}),
        dependsOn: meta.dependsOn,
        secretPaths: meta.secretPaths,
        urn: meta.urn,
        ...(args.id ? { readId: args.id } : {}),
      };
      if (!base.custom) {
        registrations.push({ ...base, id: "" });
        return { id: "", state: {} };
      }
      try {
        const res = await handler.create(base);
        registrations.push({ ...base, id: res.id });
        // Inputs (still secret-wrapped, so outputs stay secret) plus what the handler learned.
        return { id: res.id, state: { ...args.inputs, ...(res.state ?? {}) } };
      } catch (err) {
        rootCauses.push(err);
        throw err;
      }
    },
    call(args) {
      throw new Error(
        `The program calls the provider function ${args.token}, which the local runner does not support: read the value from config or a resource instead.`,
      );
    },
  };

  pulumi.runtime.setAllConfig(config, secretKeys);
  await pulumi.runtime.setMocks(mocks, project.name, opts.stack, false);
  const monitor = pulumi.runtime.getMonitor() as unknown as Record<string, MonitorMethod>;
  const urnOf = (parent: string, type: string, name: string) => {
    // MockMonitor.newUrn's rule (the SDK's dependency URNs are built by it): the parent's own
    // type, not its whole chain, qualifies the type.
    const qualified = parent ? `${parent.split("::")[2]!.split("$").pop()}$${type}` : type;
    return `urn:pulumi:${opts.stack}::${project.name}::${qualified}::${name}`;
  };
  for (const method of ["registerResource", "readResource"] as const) {
    const original = monitor[method]!.bind(monitor);
    monitor[method] = (req, cb) => {
      const raw = (req.getObject?.() ?? req.getProperties?.())?.toJavaScript() ?? {};
      const meta: RequestMeta = {
        urn: urnOf(req.getParent(), req.getType(), req.getName()),
        parent: req.getParent() || undefined,
        // A provider reference is "<urn>::<id>"; keep the URN.
        provider: req.getProvider() ? req.getProvider().replace(/::[^:]*$/, "") : undefined,
        dependsOn: method === "registerResource" ? [...new Set(req.getDependenciesList())] : [],
        secretPaths: findSecretPaths(raw),
      };
      const k = keyOf(req.getType(), req.getName());
      pending.set(k, [...(pending.get(k) ?? []), meta]);
      return original(req, cb);
    };
  }

  // The language host reports errors that surface as unhandled rejections (e.g. thrown inside
  // an apply); do the same, so a failing program fails the run instead of hanging or passing.
  const onUnhandled = (err: unknown) => failures.push(err);
  process.on("unhandledRejection", onUnhandled);
  const cwd = process.cwd();
  process.chdir(projectDir);
  let outputs: Record<string, unknown> = {};
  try {
    outputs =
      ((await pulumi.runtime.runInPulumiStack(async () => {
        const ns = (await import(pathToFileURL(entry).href)) as Record<string, unknown>;
        const exported = programExports(ns);
        return typeof exported === "function" ? await (exported as () => unknown)() : exported;
      })) as Record<string, unknown> | undefined) ?? {};
  } catch (err) {
    failures.unshift(err);
  } finally {
    // Registrations still in flight (inside applies, or independent of a failed one) finish
    // before the run ends, so a deployer never leaves something created but unrecorded.
    await pulumi.runtime.disconnect().catch((err: unknown) => failures.push(err));
    process.chdir(cwd);
    // Let the SDK's rejected promises surface before deciding the run succeeded.
    await new Promise((r) => setTimeout(r, 0));
    process.off("unhandledRejection", onUnhandled);
  }
  if (rootCauses.length > 0) throw asError(rootCauses[0]);
  if (failures.length > 0) throw asError(failures[0]);
  return { registrations, outputs };
}

/** What the module exports, as the language host reads it (a default function or named exports). */
function programExports(ns: Record<string, unknown>): unknown {
  let ex: unknown = ns;
  // CommonJS-interop namespaces put module.exports under `default`.
  const d = ns.default as Record<string, unknown> | undefined;
  if (d && typeof d === "object" && d.__esModule) ex = d;
  const e = ex as Record<string, unknown>;
  const named = Object.keys(e).filter((k) => k !== "default" && k !== "__esModule" && k !== "module.exports");
  if (typeof e.default === "function" && named.length === 0) return e.default;
  const out: Record<string, unknown> = {};
  for (const k of named) out[k] = e[k];
  return out;
}

function asError(err: unknown): Error {
  if (err instanceof Error) return err;
  return new Error(String(err));
}
