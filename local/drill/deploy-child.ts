/**
 * Runs one local deployment in its own process: the SDK runs one stack program per process, and
 * the drill deploys two stacks. Reads {stack, projectDir, stateDir, configFile} from argv (the
 * config, secrets included, stays in the caller's 0600 file), logs to stderr, and prints the
 * declared-vs-deployed comparison as JSON on stdout.
 */
import { readFileSync } from "node:fs";
import { declaredKeys, deploy, deployedKeys } from "../deployer.js";

async function main(): Promise<void> {
  const [stack, projectDir, stateDir, configFile] = process.argv.slice(2);
  if (!stack || !projectDir || !stateDir || !configFile) throw new Error("usage: deploy-child <stack> <projectDir> <stateDir> <configFile>");
  const config = JSON.parse(readFileSync(configFile, "utf8"));
  const r = await deploy({ stack, projectDir, stateDir, config, log: (l) => process.stderr.write(`${l}\n`) });
  const declared = declaredKeys(r.planned);
  const deployed = deployedKeys(r.state, r.registrations);
  process.stdout.write(
    `${JSON.stringify({
      declared,
      deployed,
      missing: declared.filter((k) => !deployed.includes(k)),
      extra: deployed.filter((k) => !declared.includes(k)),
      resources: r.state.resources.map((e) => ({ type: e.type, name: e.name, id: e.id })),
    })}\n`,
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
