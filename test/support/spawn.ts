import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TOOL_ENV } from "../../contract/index.js";

/**
 * Runs a program without blocking this worker (a synchronous spawn starves vitest's RPC for
 * minutes) and collects its output.
 */
export function runAsync(
  cmd: string,
  args: string[],
  opts: { timeoutMs: number; env?: NodeJS.ProcessEnv; cwd?: string },
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ["ignore", "pipe", "pipe"], timeout: opts.timeoutMs, env: opts.env ?? process.env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (status) => resolvePromise({ status, stdout, stderr }));
  });
}

/**
 * `kryonix-dr <command>` for tests of its command line: no platform (its facts file is pointed
 * away) and an empty deployments directory of the test's own (`dir`; `remove()` it afterwards).
 */
export function isolatedCli(command: string): { dir: string; run: (...args: string[]) => ReturnType<typeof runAsync>; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `kdrtest-${command}-cli-`));
  const cli = join(__dirname, "..", "..", "bin", "kryonix-dr.mjs");
  return {
    dir,
    run: (...args) =>
      runAsync(process.execPath, [cli, command, ...args], {
        timeoutMs: 180_000,
        env: { ...process.env, [TOOL_ENV.deploymentsDir]: dir, [TOOL_ENV.platformFile]: join(dir, "no-platform.json") },
      }),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
