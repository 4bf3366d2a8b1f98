/**
 * The local deployer: a test and demo harness, not the user's path (that stays `pulumi up`).
 *
 * It runs a stack's program in-process (local/program.ts) and, as each registration reaches the
 * mock monitor, creates it for real through the mapping for its type (local/mappings/). The SDK
 * delivers registrations in dependency order and the ids a mapping returns flow into the
 * dependents' inputs, exactly as provider ids do under the engine.
 *
 * - Only declared resources are created; a type without a mapping fails the deployment, naming it.
 * - Every created object is written to the stack's state file before the next one starts, so a
 *   failed deployment can always be destroyed.
 * - Deploying a deployed stack again updates it, as `pulumi up` does: a resource whose inputs are
 *   the same is left alone, a changed one is updated in place where its mapping can (a Swarm
 *   service) and replaced otherwise, a new one is created, and what the program no longer
 *   declares is destroyed at the end. Changes made outside the deployer are not looked at (there
 *   is no refresh): `kryonix-dr drift` reports them.
 * - Destroy removes them in reverse dependency order (local/destroy.ts). The state file
 *   (local/state.ts) also holds the provider connection settings destroy needs.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { TOOL_ENV } from "../contract/index.js";
import { tmpdir } from "node:os";
import { spawn } from "node:child_process";
import { join, resolve } from "node:path";
import { planInChildProcess, type PlannedResource } from "./plan.js";
import { loadStackConfig, runStackProgram, type Registration, type ResourceHandler, type RunOptions } from "./program.js";
import { MAPPINGS, packageOf, providerSettings, unsupported } from "./mappings/index.js";
import { type DeployContext } from "./mappings/types.js";
import { observeEntries } from "./observe.js";
import { destroyEntries } from "./destroy.js";
import { DEPLOYMENTS_DIR, deployingElsewhere, readState, statePath, writeState, type DeploymentState, type StateEntry } from "./state.js";

export { destroy, type DestroyOptions } from "./destroy.js";
export { DEPLOYMENTS_DIR, readState, statePath, type DeploymentState, type StateEntry } from "./state.js";

export const STACK_REFERENCE_TYPE = "pulumi:pulumi:StackReference";
/** Label on every Docker object the deployer creates: which stack's deployment made it. */
export const DEPLOYER_LABEL = "kryonix.dr.local-deployer.stack";

/** The stack name a StackReference names ("org/project/stack" or "stack"). */
export function referencedStack(name: string): string {
  return name.split("/").pop()!;
}

/** Provider settings for resources without an explicit provider: the `<pkg>:*` stack config. */
function defaultProviders(config: Record<string, string>): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [k, v] of Object.entries(config)) {
    const [pkg, key] = k.split(":");
    if (!pkg || !key || !MAPPINGS_PACKAGES.has(pkg)) continue;
    let value: unknown = v;
    try {
      value = JSON.parse(v);
    } catch {
      /* a plain string */
    }
    (out[`default:${pkg}`] ??= {})[key] = value;
  }
  for (const [key, settings] of Object.entries(out)) out[key] = providerSettings(key.slice("default:".length), settings);
  return out;
}
const MAPPINGS_PACKAGES = new Set([...MAPPINGS.keys()].map(packageOf));

export interface DeployOptions extends Omit<RunOptions, "handler"> {
  /** Where state files live (default /var/lib/kryonix-dr/deployments). */
  stateDir?: string;
  log?: (line: string) => void;
}

export interface DeployResult {
  state: DeploymentState;
  registrations: Registration[];
  /** The plan of the same program and config, taken before anything was created. */
  planned: PlannedResource[];
  /** Declared (planned) resources that were not created, and created ones that were not declared. */
  difference: { missing: string[]; extra: string[] };
  /** An update of a deployed stack: what happened to each resource (absent on a first deployment). */
  update?: { unchanged: number; updated: number; replaced: number; created: number; deleted: number };
}

/** `type name` of every resource that a deployment creates or records (providers included). */
export function declaredKeys(planned: PlannedResource[]): string[] {
  return planned.filter((p) => p.custom).map((p) => `${p.type} ${p.name}`).sort();
}
export function deployedKeys(state: DeploymentState, registrations: Registration[]): string[] {
  const providers = registrations.filter((r) => r.custom && r.type.startsWith("pulumi:providers:")).map((r) => `${r.type} ${r.name}`);
  const refs = registrations.filter((r) => r.type === STACK_REFERENCE_TYPE).map((r) => `${r.type} ${r.name}`);
  // A kept volume (no longer declared, still in the state so that destroy removes it) is not a difference.
  return [...state.resources.filter((e) => e.record.retained !== true).map((e) => `${e.type} ${e.name}`), ...providers, ...refs].sort();
}

/** Fails before anything is created when the program declares a type without a mapping. */
function checkSupported(planned: PlannedResource[]): void {
  const bad = planned.filter(
    (p) => p.custom && !MAPPINGS.has(p.type) && p.type !== STACK_REFERENCE_TYPE && !(p.type.startsWith("pulumi:providers:") && MAPPINGS_PACKAGES.has(p.type.slice(17))),
  );
  if (bad.length > 0) {
    const list = bad.map((b) => `${b.type} (resource '${b.name}')`).join(", ");
    throw new Error(`The local deployer does not support resource type(s) ${list}; nothing was created. Supported types: ${[...MAPPINGS.keys()].sort().join(", ")}.`);
  }
}

/** Plans the same program with the same config in a fresh process (config passed in a 0600 temp file). */
async function planFirst(stack: string, projectDir: string, config: RunOptions["config"], deploymentsDir: string): Promise<PlannedResource[]> {
  if (!config) return planInChildProcess(stack, projectDir, undefined, deploymentsDir);
  const dir = mkdtempSync(join(tmpdir(), "kdr-plan-"));
  const file = join(dir, "config.json");
  try {
    writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
    return await planInChildProcess(stack, projectDir, file, deploymentsDir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Deploys a stack in a fresh process (`kryonix-dr deploy`), so a caller can deploy several stacks
 * (the drill: local, then recovery): the Pulumi runtime runs one program per process. Progress
 * lines reach `log`; the result comes back through a 0600 temp file, secrets redacted.
 */
export async function deploy(opts: DeployOptions): Promise<DeployResult> {
  const dir = opts.stateDir ?? DEPLOYMENTS_DIR;
  const tmp = mkdtempSync(join(tmpdir(), "kdr-deploy-"));
  const resultFile = join(tmp, "result.json");
  const args = [BIN, "deploy", "--stack", opts.stack, "--no-platform", "--result-file", resultFile];
  if (opts.projectDir) args.push("--project-dir", opts.projectDir);
  if (!opts.log) args.push("--quiet");
  try {
    if (opts.config) {
      const configFile = join(tmp, "config.json");
      writeFileSync(configFile, JSON.stringify(opts.config), { mode: 0o600 });
      args.push("--config-file", configFile);
    }
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolvePromise, reject) => {
      const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, [TOOL_ENV.deploymentsDir]: dir } });
      let err = "";
      let partial = "";
      child.stderr.on("data", (d: Buffer) => {
        partial += d.toString();
        const lines = partial.split("\n");
        partial = lines.pop()!;
        for (const line of lines) {
          if (line.startsWith("kryonix-dr deploy:") || err) err += `${line}\n`;
          else if (line.trim()) opts.log?.(line);
        }
      });
      child.on("error", reject);
      child.on("close", (c) => resolvePromise({ code: c, stderr: err + partial }));
    });
    if (existsSync(resultFile)) return JSON.parse(readFileSync(resultFile, "utf8")) as DeployResult;
    throw new Error(stderr.replace(/^kryonix-dr deploy: /, "").trim() || `kryonix-dr deploy exited with ${code}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

const BIN = join(__dirname, "..", "bin", "kryonix-dr.mjs");

/**
 * Deploys a stack in THIS process (what `kryonix-dr deploy` runs). The Pulumi runtime allows one
 * program per process, so other callers use deploy(). On failure the state keeps what was
 * created and the error says how to clean up.
 */
export async function deployInThisProcess(opts: DeployOptions): Promise<DeployResult> {
  const dir = opts.stateDir ?? DEPLOYMENTS_DIR;
  const log = opts.log ?? (() => {});
  const existing = readState(opts.stack, dir);
  if (existing && deployingElsewhere(existing)) {
    throw new Error(`Stack '${opts.stack}' is being deployed right now by process ${existing.pid}: wait for it to finish (or stop it).`);
  }
  if (existing && existing.status !== "deployed" && existing.resources.length > 0) {
    throw new Error(
      `Stack '${opts.stack}' holds ${existing.resources.length} resources of a deployment that ${existing.status === "failed" ? `failed (${existing.error ?? "see its state file"})` : "did not finish"}: ` +
        `an update needs a complete deployment to start from; run 'kryonix-dr destroy --stack ${opts.stack}' first.`,
    );
  }
  /** The resources of the deployment being updated, by URN; each one the program declares again is taken out. */
  const prior = new Map((existing?.status === "deployed" ? existing.resources : []).map((e) => [e.urn, e]));
  const updating = prior.size > 0;
  const projectDir = resolve(opts.projectDir ?? join(__dirname, ".."));
  // The stack's config, as Pulumi keeps it with the stack: what it was deployed with, changed
  // only by what this deployment gives (`pulumi config set` and then `pulumi up`).
  const overrides = updating && existing!.config ? { ...existing!.config, ...(opts.config ?? {}) } : opts.config;
  const { project, config } = loadStackConfig(projectDir, opts.stack, overrides);
  // The plan (a separate process: one program per process) runs while this process loads and
  // runs the program itself; nothing is created or changed before the plan has passed. In a
  // failover (kryonix-dr:active) that is seconds off the time clients wait.
  const planning = planFirst(opts.stack, projectDir, overrides, dir).then((p) => {
    checkSupported(p);
    log(`planned ${p.filter((x) => x.custom).length} resources`);
    return p;
  });
  planning.catch(() => undefined);
  const state: DeploymentState = {
    stack: opts.stack,
    project: project.name,
    projectDir,
    status: "deploying",
    pid: process.pid,
    startedAt: new Date().toISOString(),
    providers: { ...(updating ? existing!.providers : {}), ...defaultProviders(config) },
    // Until the update is over, the state holds every object that exists: the old ones too.
    resources: updating ? [...existing!.resources] : [],
    outputs: updating ? existing!.outputs : {},
    ...(overrides ? { config: overrides } : {}),
  };
  writeState(state, dir);
  const counts = { unchanged: 0, updated: 0, replaced: 0, created: 0, deleted: 0 };
  /** Replaced objects whose successors were created first; deleted with what is no longer declared. */
  const superseded: StateEntry[] = [];

  const byType = new Map<string, Record<string, unknown>[]>();
  const handler: ResourceHandler = {
    async create(r) {
      await planning;
      const pkg = packageOf(r.type);
      if (r.type.startsWith("pulumi:providers:")) {
        const p = r.type.slice("pulumi:providers:".length);
        if (!MAPPINGS_PACKAGES.has(p)) throw unsupported(r.type, r.name);
        state.providers[r.urn] = providerSettings(p, r.inputs);
        writeState(state, dir);
        return { id: `${r.name}-provider` };
      }
      if (r.type === STACK_REFERENCE_TYPE) {
        const ref = referencedStack(String(r.inputs.name ?? r.readId ?? r.name));
        const other = readState(ref, dir);
        if (!other || other.status !== "deployed") {
          throw new Error(`StackReference ${r.name} reads stack '${ref}', which is not deployed locally: run 'kryonix-dr deploy --stack ${ref}' first.`);
        }
        return { id: String(r.inputs.name ?? r.name), state: { name: r.inputs.name, outputs: other.outputs, secretOutputNames: [] } };
      }
      if (r.readId) throw new Error(`${r.type} ${r.name}: reading existing resources (.get) is not supported by the local deployer.`);
      const mapping = MAPPINGS.get(r.type);
      if (!mapping) throw unsupported(r.type, r.name);
      const providerKey = r.provider ?? `default:${pkg}`;
      const ctx: DeployContext = {
        stack: opts.stack,
        provider: state.providers[providerKey] ?? {},
        labels: { [DEPLOYER_LABEL]: opts.stack },
        lookup: (type, pred) => (byType.get(type) ?? []).find(pred),
        log,
      };
      const entry = (id: string, record: Record<string, unknown>): StateEntry => ({
        type: r.type,
        name: r.name,
        urn: r.urn,
        id,
        provider: providerKey,
        dependsOn: r.dependsOn ?? [],
        ...(r.parent ? { parent: r.parent } : {}),
        record,
      });
      const started = Date.now();
      const inputsHash = createHash("sha256").update(JSON.stringify({ provider: providerKey, inputs: r.inputs })).digest("hex");
      const old = prior.get(r.urn);
      prior.delete(r.urn);
      const keep = (e: StateEntry) => {
        const i = old && !superseded.includes(old) ? state.resources.indexOf(old) : -1;
        if (i >= 0) state.resources[i] = e;
        else state.resources.push(e);
        writeState(state, dir);
      };
      try {
        if (old && old.type === r.type && old.inputsHash === inputsHash) {
          // Declared again: a kept volume is the program's once more.
          const { retained: _kept, ...record } = old.record;
          keep({ ...old, record, dependsOn: r.dependsOn ?? [] });
          byType.set(r.type, [...(byType.get(r.type) ?? []), { ...r.inputs, ...(old.outputs ?? {}) }]);
          counts.unchanged++;
          return { id: old.id, state: old.outputs };
        }
        let created;
        const inPlace = !!old && old.type === r.type && !!mapping.update && !mapping.replaces?.(old.record, r.inputs);
        if (old && inPlace && mapping.update) {
          created = await mapping.update(old.record, r.inputs, ctx, r);
          counts.updated++;
        } else {
          if (old && r.inputs.name === undefined) {
            // Replaced, create first: an auto-named object (a Swarm secret) gets a new name, and
            // the old one, still in use until its users are updated, goes at the end.
            superseded.push(old);
          } else if (old) {
            // Replaced, delete first: an object with a fixed name cannot exist twice.
            await mapping.destroy(old.record, state.providers[old.provider] ?? {});
            state.resources = state.resources.filter((e) => e !== old);
            writeState(state, dir);
          }
          created = await mapping.create(r.inputs, ctx, r);
          counts[old ? "replaced" : "created"]++;
          if (old && superseded.includes(old) && old.id === created.id) {
            // The new object is the old one (a bucket's one lifecycle or policy, named by the
            // bucket): deleting "the old one" at the end would delete what was just written.
            superseded.splice(superseded.indexOf(old), 1);
            state.resources = state.resources.filter((e) => e !== old);
          }
        }
        keep({ ...entry(created.id, created.record), inputsHash, ...(created.state ? { outputs: created.state } : {}) });
        byType.set(r.type, [...(byType.get(r.type) ?? []), { ...r.inputs, ...(created.state ?? {}) }]);
        log(`${old ? (inPlace ? "updated" : "replaced") : "created"} ${r.type} ${r.name} (${created.id}) in ${Date.now() - started} ms`);
        return { id: created.id, state: created.state };
      } catch (err) {
        // A mapping that made something before failing says so; keep it so destroy removes it.
        const made = (err as { created?: Record<string, unknown> }).created;
        if (made) {
          state.resources.push(entry(String(made.id ?? r.name), made));
          writeState(state, dir);
        }
        const msg = describeError(err);
        throw new Error(msg.includes(r.name) ? msg : `${r.type} ${r.name}: ${msg}`);
      }
    },
  };

  try {
    const { registrations, outputs } = await runStackProgram({ ...opts, config: overrides, projectDir, handler });
    const planned = await planning;
    if (prior.size > 0 || superseded.length > 0) {
      // What the program no longer declares goes last, dependents first (as `pulumi up` deletes).
      // A volume that holds a service's data is kept (as Pulumi's retainOnDelete would): after a
      // failback the old primary's, a timeline behind, is the operator's to remove once sure.
      // It stays in the state, so `kryonix-dr destroy` removes it with the stack.
      const retained = [...prior.values()].filter((e) => e.record.stateful === true);
      for (const e of retained.filter((x) => !x.record.retained)) {
        e.record.retained = true;
        log(`kept volume ${e.id} (${e.name}): it holds a service's data and is no longer declared; remove it once you no longer need it: docker volume rm ${e.id}`);
      }
      const gone = [...prior.values(), ...superseded].filter((e) => !retained.includes(e));
      const failed = await destroyEntries(gone, state, dir, (e) => log(`deleted ${e.type} ${e.name} (${e.id}): no longer declared`));
      counts.deleted += gone.length - failed.length;
      if (failed.length) throw new Error(`could not delete what the program no longer declares:\n${failed.map((f) => `  ${f.entry.type} ${f.entry.name}: ${f.error}`).join("\n")}`);
    }
    if (updating) log(`update of stack '${opts.stack}': ${counts.unchanged} unchanged, ${counts.updated} updated in place, ${counts.replaced} replaced, ${counts.created} created, ${counts.deleted} deleted`);
    // Everything as it is now that the whole program ran (a later command may have configured
    // an earlier resource): the baseline `kryonix-dr drift` compares against.
    for (const [entry, seen] of await observeEntries(state.resources, state.providers)) if (seen) entry.observed = seen;
    state.status = "deployed";
    delete state.pid;
    state.outputs = outputs;
    state.finishedAt = new Date().toISOString();
    writeState(state, dir);
    const want = declaredKeys(planned);
    const got = deployedKeys(state, registrations);
    const difference = { missing: want.filter((k) => !got.includes(k)), extra: got.filter((k) => !want.includes(k)) };
    return { state, registrations, planned, difference, ...(updating ? { update: counts } : {}) };
  } catch (err) {
    // A plan that failed stopped everything before anything was made: the state is as it was,
    // and its error (the program's, or an unsupported type) is the one to show.
    const refused = await planning.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (refused) {
      if (existing) writeState(existing, dir);
      else rmSync(statePath(opts.stack, dir), { force: true });
      throw refused;
    }
    // A failed update leaves a stack that still works, and whose state says what exists: the
    // next deploy carries on from it (as after a failed `pulumi up`). A failed first deployment
    // is half a stack: destroy it.
    state.status = updating ? "deployed" : "failed";
    delete state.pid;
    state.error = err instanceof Error ? err.message : String(err);
    state.finishedAt = new Date().toISOString();
    writeState(state, dir);
    throw new Error(
      updating
        ? `${state.error}\n(the update stopped there: what it changed is recorded; fix the cause and deploy again, it carries on from here.)`
        : `${state.error}\n(${state.resources.length} resources were created before the failure; remove them with 'kryonix-dr destroy --stack ${opts.stack}'.)`,
    );
  }
}

/**
 * An error's message, with the HTTP status an S3 call failed with: the SDK names a response it
 * cannot parse "UnknownError", which says nothing. A 403 is the provider's keys being refused.
 */
export function describeError(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  const status = (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  if (!status || msg.includes(String(status))) return msg;
  const hint =
    status === 403
      ? ": the S3 server refused the provider's credentials (an access key removed or a secret key changed on the server?); give the stack the keys the server has (`pulumi config set --secret kryonix-dr:<region>AccessKey/<region>SecretKey`) and deploy again"
      : "";
  return `${msg} (HTTP ${status}${hint})`;
}
