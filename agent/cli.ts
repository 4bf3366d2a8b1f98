/**
 * kdr-agent: the runtime inside backup sidecars and cron containers.
 * Bundled by esbuild into one CommonJS file; never imports @pulumi.
 */
export const AGENT_VERSION = "0.1.0";

const USAGE = `usage: kdr-agent <command> [options]
commands: backup, restore, verify, list, prune, health, serve, cron, replicate, migrate, healthz
options:  --version, --help`;

export async function main(argv: string[]): Promise<number> {
  const [cmd] = argv;
  if (cmd === "--version" || cmd === "version") {
    process.stdout.write(`kdr-agent ${AGENT_VERSION}\n`);
    return 0;
  }
  if (cmd === undefined || cmd === "--help" || cmd === "help") {
    process.stdout.write(USAGE + "\n");
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === "healthz") {
    process.stdout.write("ok\n");
    return 0;
  }
  process.stderr.write(`kdr-agent: command '${cmd}' is not implemented yet\n${USAGE}\n`);
  return 2;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`kdr-agent: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
