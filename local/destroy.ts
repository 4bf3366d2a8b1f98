/**
 * Destroying a local deployment, or the part of it an update no longer declares: in reverse
 * dependency order (dependents first, independent ones together), each removal written to the
 * state file at once, so a failure leaves a state that destroy can simply run again on.
 */
import { rmSync } from "node:fs";
import { forgetGeneratedSecrets } from "./local-stack.js";
import { MAPPINGS } from "./mappings/index.js";
import { mapLimit } from "./mappings/types.js";
import { DEPLOYMENTS_DIR, deployingElsewhere, readState, statePath, writeState, type DeploymentState, type StateEntry } from "./state.js";

const DESTROY_CONCURRENCY = 8;

export interface DestroyOptions {
  stack: string;
  stateDir?: string;
  /** Empty buckets even when their S3Bucket has no forceDestroy (the drill's clean-up). */
  force?: boolean;
  log?: (line: string) => void;
}

/**
 * Destroys in reverse dependency order. A failure does not stop the rest: what could not be
 * removed stays in the state file and the error lists it, so destroy can simply be run again.
 */
export async function destroy(opts: DestroyOptions): Promise<{ destroyed: StateEntry[] }> {
  const dir = opts.stateDir ?? DEPLOYMENTS_DIR;
  const log = opts.log ?? (() => {});
  const state = readState(opts.stack, dir);
  if (!state) throw new Error(`Stack '${opts.stack}' has no local deployment (${statePath(opts.stack, dir)} does not exist): nothing to destroy.`);
  if (deployingElsewhere(state)) {
    throw new Error(`Stack '${opts.stack}' is being deployed right now by process ${state.pid}: wait for it to finish (or stop it), then destroy.`);
  }
  const destroyed: StateEntry[] = [];
  const failed = await destroyEntries(state.resources, state, dir, (e) => {
    destroyed.push(e);
    log(`destroyed ${e.type} ${e.name} (${e.id})`);
  }, opts.force);
  if (failed.length > 0) {
    throw new Error(
      `Destroy of stack '${opts.stack}' left ${failed.length} resource(s); fix the cause and run destroy again:\n${failed
        .map((f) => `  ${f.entry.type} ${f.entry.name}: ${f.error}`)
        .join("\n")}`,
    );
  }
  rmSync(statePath(opts.stack, dir), { force: true });
  forgetGeneratedSecrets(opts.stack, dir);
  return { destroyed };
}

/**
 * Destroys `entries` of a deployment in waves, as the engine does: everything that nothing left
 * depends on goes at once. Entries whose dependents could not be removed are never ready, and
 * are reported as blocked. Each one removed leaves the state file at once. Returns the failures.
 */
export async function destroyEntries(
  entries: StateEntry[],
  state: DeploymentState,
  dir: string,
  done: (e: StateEntry) => void,
  force = false,
): Promise<Array<{ entry: StateEntry; error: string }>> {
  const failed: Array<{ entry: StateEntry; error: string }> = [];
  const opts = { force };
  const remaining = new Set(entries);
  const stuck = new Set<StateEntry>();
  for (;;) {
    const ready = [...remaining].filter((e) => !stuck.has(e) && ![...remaining].some((o) => o !== e && o.dependsOn.includes(e.urn)));
    if (ready.length === 0) break;
    await mapLimit(ready, DESTROY_CONCURRENCY, async (entry) => {
      const mapping = MAPPINGS.get(entry.type);
      const record = opts.force && entry.type === "minio:index/s3Bucket:S3Bucket" ? { ...entry.record, forceDestroy: true } : entry.record;
      try {
        if (!mapping) throw new Error(`no mapping for ${entry.type}`);
        await mapping.destroy(record, state.providers[entry.provider] ?? {});
        remaining.delete(entry);
        state.resources = state.resources.filter((e) => e !== entry);
        writeState(state, dir);
        done(entry);
      } catch (err) {
        stuck.add(entry);
        failed.push({ entry, error: err instanceof Error ? err.message : String(err) });
      }
    });
  }
  for (const entry of remaining) {
    if (stuck.has(entry)) continue;
    const blocker = [...remaining].find((o) => o.dependsOn.includes(entry.urn));
    failed.push({ entry, error: `still needed by ${blocker?.type} ${blocker?.name}, which could not be destroyed` });
  }
  return failed;
}
