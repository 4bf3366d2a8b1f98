/** `kryonix-dr destroy`: removes what `kryonix-dr deploy` created, in reverse dependency order. */
import { parseFlags, required, type Command } from "../command.js";
import { destroy } from "../../local/deployer.js";

const USAGE = `Usage: kryonix-dr destroy --stack <name> [--force] [--quiet]

Removes every resource the local deployer created for the stack, dependents first, and deletes
its state file. Re-run it after a partial failure: it continues with what is left.
  --stack <name>   the stack
  --force          empty buckets even when their S3Bucket has no forceDestroy (governance locks are
                   bypassed; objects under COMPLIANCE retention still cannot be deleted)
  --quiet          no progress lines`;

export const command: Command = {
  name: "destroy",
  summary: "Remove what 'kryonix-dr deploy' created for a stack",
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, { stack: { type: "string" }, force: { type: "boolean" }, quiet: { type: "boolean" } });
    const stack = required(values.stack, "stack");
    const { destroyed } = await destroy({ stack, force: values.force, log: values.quiet ? undefined : (l) => process.stderr.write(`${l}\n`) });
    process.stdout.write(`destroyed stack ${stack}: ${destroyed.length} resources\n`);
    return 0;
  },
};
