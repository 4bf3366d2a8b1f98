/**
 * @pulumi/command 1.2.1 `command:local:Command`: runs `create` as the provider does (through its
 * interpreter, default /bin/sh -c, with `environment` added to this process's environment and
 * `stdin` piped), records stdout/stderr as outputs, and runs `delete` on destroy. Changed inputs
 * run `update` (else `create`) in place; changed `triggers` replace it (create, then the old
 * one's `delete`), as with the provider.
 */
import { spawn } from "node:child_process";
import { bucketConfigTurns, type Mapping } from "./types.js";

type Obj = Record<string, any>;

export function runCommand(
  script: string,
  opts: { interpreter?: string[]; dir?: string; environment?: Record<string, string>; stdin?: string },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const [cmd, ...args] = opts.interpreter?.length ? opts.interpreter : ["/bin/sh", "-c"];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd!, [...args, script], {
      cwd: opts.dir,
      env: { ...process.env, ...(opts.environment ?? {}) },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    // A command that exits without reading stdin makes the write fail (EPIPE); that is not an error.
    child.stdin.on("error", () => {});
    child.stdin.end(opts.stdin ?? "");
  });
}

function tail(s: string): string {
  return s.trim().split("\n").slice(-20).join("\n");
}

export const localCommand: Mapping<Obj> = {
  plan: () => ({ stdout: "", stderr: "" }),
  type: "command:local:Command",
  async create(i, _ctx, reg) {
    if (i.assetPaths?.length || i.archivePaths?.length) throw new Error(`command.local.Command ${reg.name}: assetPaths/archivePaths are not supported by the local deployer.`);
    if (!i.create) return { id: reg.name, state: { stdout: "", stderr: "" }, record: record(i, reg.name, "") };
    // In turn with bucket configuration writes (see bucketConfigTurns).
    return run(i, i.create, reg.name, `${reg.name}-${Date.now().toString(36)}`);
  },
  replaces: (rec, i) => !("triggers" in rec) || JSON.stringify(rec.triggers ?? null) !== JSON.stringify(i.triggers ?? null),
  async update(rec, i, _ctx, reg) {
    const script = i.update || i.create;
    const id = typeof rec.id === "string" ? rec.id : `${reg.name}-${Date.now().toString(36)}`;
    if (!script) return { id, state: { stdout: "", stderr: "" }, record: record(i, id, "") };
    const env = { ...(i.environment ?? {}), ...(i.addPreviousOutputInEnv !== false ? { PULUMI_COMMAND_STDOUT: String(rec.stdout ?? "") } : {}) };
    return run({ ...i, environment: env }, script, reg.name, id, i.environment);
  },
  async destroy(rec) {
    if (!rec.delete) return;
    const env: Record<string, string> = { ...((rec.environment as Record<string, string>) ?? {}) };
    // addPreviousOutputInEnv (default true): delete sees create's output, as with the provider.
    if (rec.addPreviousOutputInEnv !== false) env.PULUMI_COMMAND_STDOUT = String(rec.stdout ?? "");
    const r = await runCommand(String(rec.delete), { interpreter: rec.interpreter as string[] | undefined, dir: rec.dir as string | undefined, environment: env });
    if (r.code !== 0) throw new Error(`delete of command ${rec.name ?? ""} failed with exit code ${r.code}: ${tail(r.stderr || r.stdout)}`);
  },
};

async function run(i: Obj, script: string, name: string, id: string, environment: Record<string, string> | undefined = i.environment) {
  const r = await bucketConfigTurns.run(() => runCommand(script, { interpreter: i.interpreter, dir: i.dir, environment: i.environment, stdin: i.stdin }));
  if (r.code !== 0) {
    // The provider does not record a failed run, so neither do we (no delete runs for a failed create).
    throw new Error(`command.local.Command ${name} failed with exit code ${r.code}: ${tail(r.stderr || r.stdout)}`);
  }
  // The provider trims one trailing newline from the outputs.
  const stdout = r.stdout.replace(/\r?\n$/, "");
  const stderr = r.stderr.replace(/\r?\n$/, "");
  return { id, state: { stdout, stderr }, record: record({ ...i, environment }, id, stdout) };
}

/**
 * Its id, triggers and stdout (an update keeps the id, sees the stdout; changed triggers replace
 * it); what `delete` needs only when it has one (its environment may hold credentials).
 */
function record(i: Obj, id: string, stdout: string): Record<string, unknown> {
  const base = { id, triggers: i.triggers ?? null, stdout };
  if (!i.delete) return base;
  return { ...base, delete: i.delete, interpreter: i.interpreter, dir: i.dir, environment: i.environment, addPreviousOutputInEnv: i.addPreviousOutputInEnv, stdout };
}

export const commandMappings: Mapping<any>[] = [localCommand];
