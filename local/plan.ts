/**
 * The offline plan: a stack's program under mocks, recorded, secrets redacted. Shared by
 * `kryonix-dr plan` and by anything that needs the declared graph (the deployer's
 * "declared equals deployed" check, the drill).
 */
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { redact, ROOT_STACK_TYPE, runStackProgram, type Registration, type RunOptions } from "./program.js";

/** One declared resource as `plan --json` prints it. */
export interface PlannedResource {
  type: string;
  name: string;
  urn: string;
  /** false for component resources, which group others and create nothing themselves. */
  custom: boolean;
  /** Inputs with every secret value replaced by "[secret]". */
  inputs: Record<string, unknown>;
  parent?: string;
  provider?: string;
}

export const SECRET_PLACEHOLDER = "[secret]";

/** The redacted view of recorded registrations, without the root stack resource. */
export function toPlanned(registrations: Registration[]): PlannedResource[] {
  return registrations
    .filter((r) => r.type !== ROOT_STACK_TYPE)
    .map((r) => ({
      type: r.type,
      name: r.name,
      urn: r.urn,
      custom: r.custom,
      inputs: redact(r.inputs, r.secretPaths, SECRET_PLACEHOLDER),
      ...(r.parent && !r.parent.includes(`::${ROOT_STACK_TYPE}::`) ? { parent: r.parent } : {}),
      ...(r.provider ? { provider: r.provider } : {}),
    }));
}

/** Plans in this process (one program per process: see runStackProgram). */
export async function planInProcess(opts: Omit<RunOptions, "handler">): Promise<PlannedResource[]> {
  const { registrations } = await runStackProgram(opts);
  return toPlanned(registrations);
}

const BIN = resolve(__dirname, "..", "bin", "kryonix-dr.mjs");

/**
 * Plans in a fresh process (`kryonix-dr plan --json`), for callers that already ran a program or
 * will run another. Rejects with the plan's own error message on failure.
 */
export function planInChildProcess(stack: string, projectDir?: string): Promise<PlannedResource[]> {
  const args = [BIN, "plan", "--stack", stack, "--json", ...(projectDir ? ["--project-dir", projectDir] : [])];
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(err.trim() || `kryonix-dr plan exited with ${code}`));
      try {
        resolvePromise(JSON.parse(out) as PlannedResource[]);
      } catch (e) {
        reject(new Error(`kryonix-dr plan --json printed something that is not JSON: ${(e as Error).message}`));
      }
    });
  });
}
