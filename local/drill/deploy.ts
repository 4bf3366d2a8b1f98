/**
 * Deploying a drill's stacks in child processes, and reading back what they made: the Swarm
 * services of a stack, and each restore job's own summary.
 */
import type pg from "pg";
import * as cat from "../../catalog/queries.js";
import { declaredKeys, deploy, DEPLOYER_LABEL, deployedKeys, type DeployResult } from "../deployer.js";
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
 * Deploys a stack in a fresh `kryonix-dr deploy` process (the SDK runs one program per process and
 * the drill deploys two), its progress lines indented into the drill's. The config, secrets
 * included, goes through a 0600 file, never argv (deployer.deploy).
 */
export async function deployInChild(stack: string, projectDir: string, stateDir: string, config: Config, log: (l: string) => void): Promise<ChildDeploy> {
  let r: DeployResult;
  try {
    r = await deploy({ stack, projectDir, stateDir, config, log: (l) => log(`  ${l}`) });
  } catch (e) {
    throw new Error(`deploying stack ${stack} failed: ${(e as Error).message}`);
  }
  const declared = declaredKeys(r.planned);
  const deployed = deployedKeys(r.state, r.registrations);
  return {
    declared,
    deployed,
    missing: declared.filter((k) => !deployed.includes(k)),
    extra: deployed.filter((k) => !declared.includes(k)),
    resources: r.state.resources.map((e) => ({ type: e.type, name: e.name, id: e.id })),
  };
}

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
