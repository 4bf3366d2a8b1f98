/**
 * The offline plan: a stack's program under mocks, recorded, secrets redacted. Shared by
 * `kryonix-dr plan` and by anything that needs the declared graph (the deployer's
 * "declared equals deployed" check, the drill).
 */
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { redact, ROOT_STACK_TYPE, runStackProgram, type Registration, type ResourceHandler, type RunOptions } from "./program.js";
import { MAPPINGS } from "./mappings/index.js";

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
  /** Names of the resources this one waits for (explicit dependsOn and inputs), when any. */
  dependsOn?: string[];
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
      ...(r.dependsOn?.length ? { dependsOn: r.dependsOn.map((u) => u.slice(u.lastIndexOf("::") + 2)) } : {}),
    }));
}

/**
 * Creates nothing. Answers what a provider would compute with the mapping's placeholders (so the
 * plan runs the same code paths as a deployment), and a StackReference with the referenced
 * stack's planned outputs (from a child plan of that stack).
 */
export function planHandler(projectDir: string | undefined, deployedOutputs?: (stack: string) => Record<string, unknown> | undefined): ResourceHandler {
  return {
    async create(r) {
      if (r.type === "pulumi:pulumi:StackReference") {
        const ref = String(r.inputs.name ?? r.readId ?? r.name).split("/").pop()!;
        // A deployment's plan reads what the deployment will read: the referenced stack's deployed
        // outputs, when it is deployed (and saves planning that stack in one more process).
        const outputs = deployedOutputs?.(ref) ?? (await planOutputsInChildProcess(ref, projectDir));
        return { id: String(r.inputs.name ?? r.name), state: { name: r.inputs.name, outputs, secretOutputNames: [] } };
      }
      if (r.type.startsWith("pulumi:providers:")) return { id: `${r.name}-provider` };
      const mapping = MAPPINGS.get(r.type);
      return { id: r.readId ?? `${r.name}-id`, state: mapping?.plan?.(r.inputs, r) ?? {} };
    },
  };
}

/** Plans in this process (one program per process: see runStackProgram). */
export async function planInProcess(
  opts: Omit<RunOptions, "handler"> & { deployedOutputs?: (stack: string) => Record<string, unknown> | undefined },
): Promise<{ resources: PlannedResource[]; outputs: Record<string, unknown> }> {
  const { deployedOutputs, ...run } = opts;
  const { registrations, outputs } = await runStackProgram({ ...run, handler: planHandler(opts.projectDir, deployedOutputs) });
  return { resources: toPlanned(registrations), outputs };
}

/** The stack outputs of a plan of `stack`, computed in a fresh process (`plan --outputs`). */
export async function planOutputsInChildProcess(stack: string, projectDir?: string): Promise<Record<string, unknown>> {
  return (await runPlanChild(["--stack", stack, "--outputs", ...(projectDir ? ["--project-dir", projectDir] : [])])) as Record<string, unknown>;
}

const BIN = resolve(__dirname, "..", "bin", "kryonix-dr.mjs");

/**
 * Plans in a fresh process (`kryonix-dr plan --json`), for callers that already ran a program or
 * will run another. Rejects with the plan's own error message on failure.
 */
export async function planInChildProcess(stack: string, projectDir?: string, configFile?: string, deploymentsDir?: string): Promise<PlannedResource[]> {
  return (await runPlanChild([
    "--stack",
    stack,
    "--json",
    ...(projectDir ? ["--project-dir", projectDir] : []),
    ...(configFile ? ["--config-file", configFile] : []),
    ...(deploymentsDir ? ["--deployments-dir", deploymentsDir] : []),
  ])) as PlannedResource[];
}

function runPlanChild(flags: string[]): Promise<unknown> {
  const args = [BIN, "plan", ...flags];
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
        resolvePromise(JSON.parse(out) as unknown);
      } catch (e) {
        reject(new Error(`kryonix-dr plan --json printed something that is not JSON: ${(e as Error).message}`));
      }
    });
  });
}
