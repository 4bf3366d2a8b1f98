/** Finding and versioning the external tools the engines drive. */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { AGENT_ENV } from "../../contract/index.js";

/** PATH with PostgreSQL's versioned bin dir first (Debian puts pg_verifybackup only there). */
export function toolPath(env: NodeJS.ProcessEnv = process.env): string {
  const dirs = [env[AGENT_ENV.pgBin], "/usr/lib/postgresql/15/bin"].filter((d): d is string => !!d && existsSync(d));
  return [...dirs, env.PATH ?? "/usr/bin:/bin"].join(path.delimiter);
}

const versions = new Map<string, string>();

/** First line of `<tool> --version` (or `version`), cached. */
export function toolVersion(tool: string, args: string[] = ["--version"]): string {
  const k = tool + args.join(" ");
  const hit = versions.get(k);
  if (hit) return hit;
  const r = spawnSync(tool, args, { encoding: "utf8", env: { ...process.env, PATH: toolPath() } });
  if (r.error) throw new Error(`${tool} is not installed (not found on PATH): install it in the agent image.`);
  const v = (r.stdout || r.stderr).split("\n")[0]!.trim();
  versions.set(k, v);
  return v;
}
