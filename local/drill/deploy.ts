/**
 * Deploying a drill's stacks in child processes, and reading back what they made: the Swarm
 * services of a stack, and each restore job's own summary.
 */
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import * as cat from "../../catalog/queries.js";
import { DEPLOYER_LABEL } from "../deployer.js";
import { containerLogs, docker } from "./docker.js";
import type { Config } from "./stacks.js";
import type { RestoreResult } from "./verify.js";

export interface ChildDeploy {
  declared: string[];
  deployed: string[];
  missing: string[];
  extra: string[];
  resources: Array<{ type: string; name: string; id: string }>;
}

/**
 * Deploys a stack in a child process (the SDK runs one program per process and the drill deploys
 * two). The config, secrets included, goes through a 0600 file in a 0700 directory, never argv.
 */
export function deployInChild(stack: string, projectDir: string, stateDir: string, config: Config, log: (l: string) => void): Promise<ChildDeploy> {
  const dir = mkdtempSync(join(tmpdir(), "kdr-drill-"));
  chmodSync(dir, 0o700);
  const file = join(dir, "config.json");
  writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(__dirname, "deploy-child.ts"), stack, projectDir, stateDir, file], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let buf = "";
    const tail: string[] = [];
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim() === "" || NOISE.test(line)) continue;
        tail.push(line);
        if (tail.length > 20) tail.shift();
        log(`  ${line}`);
      }
    });
    child.on("error", reject);
    child.on("close", (code) => {
      rmSync(dir, { recursive: true, force: true });
      if (code !== 0) return reject(new Error(`deploying stack ${stack} failed: ${[...tail, buf].join("\n").trim()}`));
      try {
        resolvePromise(JSON.parse(out) as ChildDeploy);
      } catch (e) {
        reject(new Error(`deploying stack ${stack} printed no result (${(e as Error).message}): ${out.slice(0, 500)}`));
      }
    });
  });
}
/** The AWS SDK's Node-version notice, repeated by every process; not drill progress. */
const NOISE = /NodeVersionSupportWarning|versions published after|require node >=22|To continue receiving updates|and security updates please|More information can be found|node --trace-warnings|You are running node/;

/** Every Swarm service a stack's deployment made, by name. */
export async function stackServices(stack: string): Promise<Array<{ name: string; labels: Record<string, string> }>> {
  const filters = encodeURIComponent(JSON.stringify({ label: [`${DEPLOYER_LABEL}=${stack}`] }));
  const list = await docker.request<Array<{ Spec: { Name: string; Labels?: Record<string, string> } }>>("GET", `/services?filters=${filters}`);
  return list.map((s) => ({ name: s.Spec.Name, labels: s.Spec.Labels ?? {} }));
}

/** What each restore job did, from its container's own summary (kept by the deployment). */
export async function restoreResults(r: ChildDeploy, db: pg.Pool): Promise<Record<string, RestoreResult>> {
  const out: Record<string, RestoreResult> = {};
  for (const e of r.resources.filter((x) => x.type === "docker:index/container:Container")) {
    const logs = await containerLogs(e.id);
    const m = /restore of (\S+) completed from backup ([0-9a-f-]{36})[\s\S]*?reaches (\S+?);/.exec(logs);
    if (!m) throw new Error(`restore container ${e.name} (${e.id.slice(0, 12)}) printed no restore summary:\n${logs.slice(-2000)}`);
    const row = await cat.getBackup(db, m[2]!);
    out[m[1]!] = { backupId: m[2]!, reaches: new Date(m[3]!), snapshotStart: row?.recoveryPointStart ?? undefined, snapshotEnd: row?.recoveryPointEnd ?? undefined };
  }
  return out;
}
