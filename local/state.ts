/**
 * A local deployment's state file: what exists, made from what, with the provider settings
 * destroy needs (as a local Terraform state does), so it is written 0600 in a 0700 directory,
 * atomically. The deployer (local/deployer.ts) and destroy (local/destroy.ts) share it.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TOOL_ENV } from "../contract/index.js";
import type { Observed } from "./observe.js";
import type { RunOptions } from "./program.js";

export const DEPLOYMENTS_DIR = process.env[TOOL_ENV.deploymentsDir] ?? "/var/lib/kryonix-dr/deployments";

export interface StateEntry {
  type: string;
  name: string;
  urn: string;
  id: string;
  /** Key into `providers`: the explicit provider's URN, or `default:<pkg>`. */
  provider: string;
  dependsOn: string[];
  parent?: string;
  /** What the mapping needs to destroy it. */
  record: Record<string, unknown>;
  /** The object as observed when the deployment completed (local/observe.ts), for drift checks. */
  observed?: Observed;
  /** SHA-256 of the inputs it was made from: an update leaves it alone while they are the same. */
  inputsHash?: string;
  /** What the mapping computed (generated names, keys), handed back when it is left alone. */
  outputs?: Record<string, unknown>;
}

export interface DeploymentState {
  stack: string;
  project: string;
  projectDir: string;
  status: "deploying" | "deployed" | "failed";
  /** The deploying process, while status is "deploying". */
  pid?: number;
  startedAt: string;
  finishedAt?: string;
  error?: string;
  providers: Record<string, Record<string, unknown>>;
  /**
   * The config overrides the stack was deployed with (secrets included: the file is 0600 in a
   * 0700 directory), which a later deployment starts from.
   */
  config?: RunOptions["config"];
  /** In creation order. */
  resources: StateEntry[];
  outputs: Record<string, unknown>;
}

export function statePath(stack: string, dir: string = DEPLOYMENTS_DIR): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(stack)) throw new Error(`'${stack}' is not a stack name (letters, digits, '.', '_' and '-').`);
  return join(dir, `${stack}.json`);
}

export function readState(stack: string, dir: string = DEPLOYMENTS_DIR): DeploymentState | undefined {
  const file = statePath(stack, dir);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, "utf8")) as DeploymentState;
}

/** Atomic write (temp file + rename): a crash never leaves half a state file. */
export function writeState(state: DeploymentState, dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = statePath(state.stack, dir);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

/** A deployment still running in another live process. */
export function deployingElsewhere(state: DeploymentState): boolean {
  if (state.status !== "deploying" || !state.pid || state.pid === process.pid) return false;
  try {
    process.kill(state.pid, 0);
    return true;
  } catch {
    return false;
  }
}
