/**
 * `kryonix-dr recover`: the recovery stack on the local platform, from the local stack's backups,
 * to the latest point or a moment (the local counterpart of runbook §2/§3's `pulumi up` on the
 * recovery stack). Prints what each restore job reached.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseFlags, parseIsoTime, UsageError, type Command } from "../command.js";
import { DEPLOYMENTS_DIR, readState, statePath } from "../../local/deployer.js";
import { secretsPath } from "../../local/local-stack.js";
import { readPlatform } from "../../local/platform.js";
import { containerLogs } from "../../local/drill/docker.js";
import { deployInChild } from "../../local/drill/deploy.js";
import { drillRecoveryConfig, LOCAL_STACK, localStackServices, RECOVERY_STACK } from "../../local/drill/stacks.js";

const USAGE = `Usage: kryonix-dr recover [--point latest|<ISO time>] [--source-region primary|dr] [--catalog existing|rebuild|restore] [--service NAME]... [--json]

Deploys the recovery stack on the local platform from the local stack's backups (the local
deployer; production runs 'pulumi up' on the recovery stack, runbook §2 and §3): a restore job per
service to the point, then the service under its own name and a new sidecar. Needs the
local stack's keys (a local deployment, kept or destroyed) and no recovery stack deployed.
  --point latest|<ISO>     the newest backups (default), or a moment with its zone
                           (2026-01-02T03:04:05Z): PostgreSQL replays WAL to it, Redis and volumes
                           take their newest snapshot at or before it
  --source-region R        primary (default) or dr: the region whose buckets are read
  --catalog MODE           existing (default), rebuild or restore: how the catalog is got back
                           first (see runbook §4)
  --service NAME           recover only this service (repeatable; default: every service)
  --json                   print the result as JSON ({point, sourceRegion, restores[]})
Progress goes to stderr. Exit status: 0 every restore completed, 1 a restore or the deployment
failed (the message names the service and the cause), 2 usage.`;

export interface RecoverResult {
  point: string;
  sourceRegion: string;
  seconds: number;
  restores: Array<{ service: string; backupId: string; reaches: string }>;
}

function parsePoint(raw: string): Date | "latest" {
  if (raw === "latest") return "latest";
  const at = parseIsoTime(raw, "--point");
  if (at.getTime() > Date.now()) throw new UsageError(`--point ${raw} is in the future: nothing has been backed up at that moment yet.`);
  return at;
}

export const command: Command = {
  name: "recover",
  summary: "Rebuild the local stack's services from its backups (latest or a point in time) on the local platform",
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, {
      point: { type: "string" },
      "source-region": { type: "string" },
      catalog: { type: "string" },
      service: { type: "string", multiple: true },
      json: { type: "boolean" },
    });
    const point = parsePoint(values.point ?? "latest");
    const source = values["source-region"] ?? "primary";
    if (source !== "primary" && source !== "dr") throw new UsageError(`--source-region '${source}' is not a region: use primary or dr.`);
    const catalog = values.catalog ?? "existing";
    if (!["existing", "rebuild", "restore"].includes(catalog)) throw new UsageError(`--catalog '${catalog}' is not a way to get the catalog: use existing, rebuild or restore.`);
    const projectDir = resolve(join(__dirname, "..", ".."));
    const wanted = (values.service as string[] | undefined) ?? [];
    const names = localStackServices(projectDir).map((s) => s.name);
    const unknown = wanted.filter((w) => !names.includes(w));
    if (unknown.length > 0) throw new UsageError(`--service ${unknown.join(", ")}: not a service of the local stack (its services: ${names.join(", ")}).`);
    if (!existsSync(secretsPath(LOCAL_STACK, DEPLOYMENTS_DIR))) {
      throw new Error(`no keys of the local stack in ${secretsPath(LOCAL_STACK, DEPLOYMENTS_DIR)}: its backups cannot be decrypted. Deploy it first ('kryonix-dr deploy --stack local', or 'kryonix-dr drill --keep').`);
    }
    if (readState(RECOVERY_STACK)) {
      throw new Error(`the recovery stack is already deployed (${statePath(RECOVERY_STACK)}): remove it first with 'kryonix-dr destroy --stack ${RECOVERY_STACK}'.`);
    }
    const config = drillRecoveryConfig(readPlatform(), projectDir, point, DEPLOYMENTS_DIR, source, catalog as "existing");
    if (wanted.length > 0) config.services = { value: (config.services!.value as Array<{ name: string }>).filter((s) => wanted.includes(s.name)) };
    const log = (l: string) => process.stderr.write(`${l}\n`);
    const started = Date.now();
    log(`recovering ${wanted.length > 0 ? wanted.join(", ") : "every service"} to ${point === "latest" ? "the latest point" : point.toISOString()} from the ${source} region`);
    const deployed = await deployInChild(RECOVERY_STACK, projectDir, DEPLOYMENTS_DIR, config, log);
    const result: RecoverResult = { point: point === "latest" ? "latest" : point.toISOString(), sourceRegion: source, seconds: 0, restores: [] };
    for (const e of deployed.resources.filter((x) => x.type === "docker:index/container:Container")) {
      const logs = await containerLogs(e.id);
      const m = /restore of (\S+) completed from backup ([0-9a-f-]{36})[\s\S]*?reaches (\S+?);/.exec(logs);
      if (m) result.restores.push({ service: m[1]!, backupId: m[2]!, reaches: m[3]! });
    }
    result.seconds = Math.round((Date.now() - started) / 100) / 10;
    if (values.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      for (const r of result.restores) process.stdout.write(`${r.service}: restored from backup ${r.backupId}, reaches ${r.reaches}\n`);
      process.stdout.write(`recovered ${result.restores.length} service(s) in ${result.seconds} s; the services run under their own names again, with sidecars kdr-recovery-<service>-backup; to undo with 'kryonix-dr destroy --stack ${RECOVERY_STACK}'\n`);
    }
    return 0;
  },
};
