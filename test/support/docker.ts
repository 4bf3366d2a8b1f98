/**
 * Test support: the Docker CLI against the local engine (no SDK: the CLI is what people use and
 * what platform-up checks). Every call throws with the command and its stderr when it fails.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";

/** Runs `docker ...args` and returns its trimmed stdout; throws on a non-zero exit. */
export function docker(args: string[], opts: { input?: string; timeoutMs?: number } = {}): string {
  const r = spawnSync("docker", args, { encoding: "utf8", input: opts.input, timeout: opts.timeoutMs ?? 120_000 });
  if (r.error) throw new Error(`docker ${args.join(" ")}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`docker ${args.join(" ")} exited ${r.status}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

/** Like docker() but returns the exit status and output instead of throwing. */
export function dockerTry(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync("docker", args, { encoding: "utf8", timeout: 120_000 });
  return { status: r.status, stdout: (r.stdout ?? "").trim(), stderr: (r.stderr ?? "").trim() };
}

/** Non-empty lines of a docker listing. */
export function lines(out: string): string[] {
  return out.split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
}

export function engineUp(): boolean {
  return spawnSync("docker", ["info"], { stdio: "ignore" }).status === 0;
}

export interface TaskOutcome {
  state: string;
  exitCode: number | null;
  error: string;
}

/**
 * Waits until the (single) task of a service with restart condition "none" reaches a terminal
 * state, and returns that state and the container's exit code as Swarm recorded them.
 */
export async function waitForTask(service: string, timeoutMs = 120_000): Promise<TaskOutcome> {
  const terminal = new Set(["complete", "failed", "rejected", "shutdown", "orphaned"]);
  const deadline = Date.now() + timeoutMs;
  let last: TaskOutcome = { state: "none", exitCode: null, error: "" };
  while (Date.now() < deadline) {
    const ids = lines(docker(["service", "ps", "-q", "--no-trunc", service]));
    if (ids.length > 0) {
      const task = JSON.parse(docker(["inspect", ids[0]!]))[0] as {
        Status: { State: string; Err?: string; ContainerStatus?: { ExitCode?: number } };
      };
      last = {
        state: task.Status.State,
        exitCode: task.Status.ContainerStatus?.ExitCode ?? null,
        error: task.Status.Err ?? "",
      };
      if (terminal.has(last.state)) return last;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`service ${service}: task not finished after ${timeoutMs} ms (last state ${last.state})`);
}

/** Removes services/networks by name, ignoring the ones already gone. */
export function removeQuietly(kind: "service" | "network" | "secret" | "volume" | "container", names: string[]): void {
  if (names.length === 0) return;
  const args = kind === "container" ? ["rm", "-f", "-v", ...names] : [kind, "rm", ...names];
  spawnSync("docker", args, { stdio: "ignore" });
}

/** Ids of running processes whose command line contains `needle` (read from /proc). */
export function processesMatching(needle: string): { pid: number; cmd: string }[] {
  const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
  return lines(out)
    .map((l) => {
      const m = /^(\d+)\s+(.*)$/.exec(l);
      return m ? { pid: Number(m[1]), cmd: m[2]! } : null;
    })
    .filter((p): p is { pid: number; cmd: string } => p !== null && p.cmd.includes(needle) && p.pid !== process.pid);
}

/**
 * Runs a script (bash) without blocking the event loop: vitest's worker must keep answering its
 * RPC while platform-up or platform-down takes minutes.
 */
export function runScript(script: string, timeoutMs: number): Promise<{ status: number | null; stdout: string; stderr: string; seconds: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const p = spawn("bash", [script], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d));
    p.stderr.on("data", (d: Buffer) => (stderr += d));
    const t = setTimeout(() => {
      p.kill("SIGTERM");
      reject(new Error(`${script} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    p.on("error", reject);
    p.on("close", (status) => {
      clearTimeout(t);
      resolve({ status, stdout, stderr, seconds: (Date.now() - started) / 1000 });
    });
  });
}
