/** `kryonix-dr drift`: what was changed outside the program since a local deployment completed. */
import { parseFlags, required, type Command } from "../command.js";
import { detectDrift, formatDrift } from "../../local/drift.js";

const USAGE = `Usage: kryonix-dr drift --stack <name> [--json]

Observes every resource the local deployer created for the stack (Swarm services and containers,
secrets, networks, volumes; buckets' versioning, object lock, lifecycle, policy and encryption;
S3 users' keys and policies; catalog roles, databases and replication slots) and compares each
with what it was when the deployment completed: the local counterpart of
'pulumi refresh --preview-only --expect-no-changes'. Types it cannot observe are listed as not checked.
  --stack <name>   the stack
  --json           print the report as JSON ({stack, checked, notChecked, drifted[]})
Exit status: 0 no drift, 1 drift found (or the check could not run: the message says why), 2 usage.`;

export const command: Command = {
  name: "drift",
  summary: "Report changes made outside the program to a locally deployed stack",
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, { stack: { type: "string" }, json: { type: "boolean" } });
    const stack = required(values.stack, "stack");
    const report = await detectDrift(stack);
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDrift(report)}\n`);
    return report.drifted.length === 0 ? 0 : 1;
  },
};
