/**
 * `kryonix-dr plan`: every resource a stack declares, from its program run under Pulumi mocks
 * with the stack's config file. No Pulumi CLI, no providers, nothing created.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseFlags, required, type Command } from "../command.js";
import { planInProcess, type PlannedResource } from "../../local/plan.js";
import { readState } from "../../local/deployer.js";
import { readConfigFile } from "../config-file.js";

const USAGE = `Usage: kryonix-dr plan --stack <name> [--json | --outputs] [--policy] [--config-file <file.json>] [--project-dir <dir>] [--deployments-dir <dir>]

Runs the stack's program in-process under Pulumi mocks with Pulumi.<name>.yaml and prints every
declared resource. Secret inputs are shown as "[secret]"; values only a provider computes (generated names, keys) are placeholders.
  --stack <name>        the stack (prod, dr, recovery, local)
  --json                print a JSON array of {type, name, urn, custom, inputs, parent?, provider?}
  --outputs             print the stack's planned outputs as JSON instead of the resources
  --policy              also evaluate the policies (policies/evaluate.ts); exit 1 on a mandatory violation
  --config-file <file>  config overriding the stack file: {"key": {"value": ..., "secret": true}}
  --project-dir <dir>   directory holding Pulumi.yaml (default: this repository)
  --deployments-dir <dir>  a StackReference to a stack deployed there reads its deployed outputs (what
                        a deployment reads) instead of planning that stack too
Exit status: 0 planned, 1 the program or its config failed (the message says which key and how to fix it), 2 usage.`;

interface Violation {
  policy: string;
  enforcement: string;
  resourceType?: string;
  resourceName?: string;
  message: string;
}

function table(resources: PlannedResource[]): string {
  const nameOf = (urn?: string) => (urn ? urn.slice(urn.lastIndexOf("::") + 2) : "");
  const rows = resources.map((r) => [r.type, r.name, nameOf(r.parent)]);
  const head = ["TYPE", "NAME", "PARENT"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]) => row.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  const custom = resources.filter((r) => r.custom).length;
  return [fmt(head), ...rows.map(fmt), "", `${resources.length} resources (${custom} custom, ${resources.length - custom} components)`].join("\n");
}

/** The pack that ships with kryonix-dr judges any program it plans (fixtures included). */
async function evaluate(resources: PlannedResource[]): Promise<Violation[]> {
  const file = join(__dirname, "..", "..", "policies", "evaluate.ts");
  if (!existsSync(file)) throw new Error(`--policy needs ${file}, which does not exist yet.`);
  const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  const fn = (mod.evaluatePolicies ?? (mod.default as Record<string, unknown> | undefined)?.evaluatePolicies) as
    | ((r: PlannedResource[]) => Violation[] | Promise<Violation[]>)
    | undefined;
  if (typeof fn !== "function") throw new Error(`${file} does not export evaluatePolicies(resources).`);
  return await fn(resources);
}

export const command: Command = {
  name: "plan",
  summary: "Print every resource a stack declares (offline, under Pulumi mocks)",
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, {
      stack: { type: "string" },
      json: { type: "boolean" },
      policy: { type: "boolean" },
      outputs: { type: "boolean" },
      "config-file": { type: "string" },
      "project-dir": { type: "string" },
      "deployments-dir": { type: "string" },
    });
    const stack = required(values.stack, "stack");
    const projectDir = resolve(values["project-dir"] ?? join(__dirname, "..", ".."));
    const config = values["config-file"] ? readConfigFile(values["config-file"]) : undefined;
    // A deployment plans first: a StackReference then reads the other stack's deployed outputs.
    const deployments = values["deployments-dir"];
    const deployedOutputs = deployments
      ? (ref: string) => {
          const st = readState(ref, deployments);
          return st?.status === "deployed" ? st.outputs : undefined;
        }
      : undefined;
    const { resources, outputs } = await planInProcess({ stack, projectDir, config, deployedOutputs });
    if (values.outputs) {
      process.stdout.write(`${JSON.stringify(outputs, null, 2)}\n`);
      return 0;
    }
    if (values.json) process.stdout.write(`${JSON.stringify(resources, null, 2)}\n`);
    else process.stdout.write(`${table(resources)}\n`);
    if (!values.policy) return 0;
    const violations = await evaluate(resources);
    // With --json stdout stays pure JSON; the verdict goes to stderr.
    const out = values.json ? process.stderr : process.stdout;
    for (const v of violations) {
      const where = v.resourceType ? ` ${v.resourceType} "${v.resourceName ?? ""}"` : "";
      out.write(`[${v.enforcement}] ${v.policy}:${where} ${v.message}\n`);
    }
    const mandatory = violations.filter((v) => v.enforcement === "mandatory").length;
    out.write(`policies: ${violations.length} violation(s), ${mandatory} mandatory\n`);
    return mandatory > 0 ? 1 : 0;
  },
};
