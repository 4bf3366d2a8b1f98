/**
 * `kryonix-dr deploy`: the local deployer (a test and demo harness; the user's path is
 * `pulumi up`). Runs the stack's program in-process and creates each declared resource on the
 * local platform through its mapping.
 */
import { join, resolve } from "node:path";
import { parseFlags, required, type Command } from "../command.js";
import { readConfigFile } from "../config-file.js";
import { writeFileSync } from "node:fs";
import { deployInThisProcess, readState, statePath, DEPLOYMENTS_DIR } from "../../local/deployer.js";
import { redact } from "../../local/program.js";
import { localStackConfig } from "../../local/local-stack.js";
import { readPlatform } from "../../local/platform.js";

const USAGE = `Usage: kryonix-dr deploy --stack <name> [--platform] [--config-file <file.json>] [--project-dir <dir>] [--quiet]

Creates every resource the stack declares on the local platform (Docker Engine, S3/RGW,
PostgreSQL, local commands), in dependency order, and records them in
/var/lib/kryonix-dr/deployments/<stack>.json for 'kryonix-dr destroy'. On a deployed stack it
updates, as 'pulumi up' does: unchanged resources are left alone, changed ones updated in place
(Swarm services) or replaced, new ones created, ones no longer declared deleted. Changes made
outside it are not reconciled (no refresh): 'kryonix-dr drift' shows them. A test and demo
harness: production uses 'pulumi up'.
  --stack <name>             the stack (Pulumi.<name>.yaml)
  --platform                 point the stack at the local platform (regions, catalog, images from
                             platform.json) with real secrets: platform keys plus generated ones kept
                             0600 beside the state; on by default for the 'local' stack. A deployed
                             stack keeps the config it was deployed with: an update starts from it
  --config-file <file.json>  config overriding the stack file: {"key": {"value": ..., "secret": true}}
                             (secure: values in stack files cannot be decrypted without the Pulumi CLI)
  --project-dir <dir>        directory holding Pulumi.yaml (default: this repository)
  --no-platform              never apply the platform overrides (not even for 'local')
  --result-file <file>       also write the result (state, plan, difference; secrets redacted) as JSON
  --quiet                    no progress lines`;

export const command: Command = {
  name: "deploy",
  summary: "Create a stack's resources on the local platform (test/demo harness; production uses pulumi up)",
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, {
      stack: { type: "string" },
      "config-file": { type: "string" },
      "project-dir": { type: "string" },
      quiet: { type: "boolean" },
      platform: { type: "boolean" },
      "no-platform": { type: "boolean" },
      "result-file": { type: "string" },
    });
    const stack = required(values.stack, "stack");
    const fromFile = values["config-file"] ? readConfigFile(values["config-file"]) : undefined;
    const usePlatform = !values["no-platform"] && (values.platform ?? stack === "local");
    const projectDir = resolve(values["project-dir"] ?? join(__dirname, "..", ".."));
    // A deployed stack keeps the config it was deployed with (the deployer starts from it); only
    // a first deployment takes the platform's facts and generated secrets.
    const recorded = readState(stack)?.config;
    const config = !recorded && usePlatform ? { ...localStackConfig(readPlatform(), stack, DEPLOYMENTS_DIR, projectDir), ...(fromFile ?? {}) } : fromFile;
    const started = Date.now();
    const result = await deployInThisProcess({
      stack,
      projectDir,
      config,
      log: values.quiet ? undefined : (l) => process.stderr.write(`${l}\n`),
    });
    const { state, difference } = result;
    if (values["result-file"]) {
      const registrations = result.registrations.map((r) => ({ ...r, inputs: redact(r.inputs, r.secretPaths) }));
      writeFileSync(values["result-file"], JSON.stringify({ ...result, registrations }), { mode: 0o600 });
    }
    if (difference.missing.length || difference.extra.length) {
      process.stderr.write(`declared and deployed differ: not created ${JSON.stringify(difference.missing)}, not declared ${JSON.stringify(difference.extra)}\n`);
      return 1;
    }
    const u = result.update;
    const what = u ? `updated stack ${stack} in place: ${u.unchanged} unchanged, ${u.updated} updated, ${u.replaced} replaced, ${u.created} created, ${u.deleted} deleted; ` : `deployed stack ${stack}: `;
    process.stdout.write(`${what}${state.resources.length} resources in ${((Date.now() - started) / 1000).toFixed(1)} s (state: ${statePath(stack)})\n`);
    return 0;
  },
};
