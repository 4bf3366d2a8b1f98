/**
 * `kryonix-dr`: a registry of subcommands. Each file in cli/commands/ exports one Command whose
 * name equals the file name, so a lane adds a command by adding a file, and a call loads only
 * the command it runs (plan/deploy pull in @pulumi, which is slow to load).
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { UsageError, type Command } from "./command.js";
import { TOOL_ENV } from "../contract/index.js";

const COMMANDS_DIR = join(__dirname, "commands");

/** Names of the available commands, from the files in cli/commands/. */
export function commandNames(): string[] {
  return readdirSync(COMMANDS_DIR)
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts") && !f.startsWith("_"))
    .map((f) => f.slice(0, -3))
    .sort();
}

/** Loads one command module and checks it has the shape of a Command. */
export async function loadCommand(name: string): Promise<Command> {
  const mod = await import(pathToFileURL(join(COMMANDS_DIR, `${name}.ts`)).href);
  const cmd: unknown = mod.command ?? mod.default?.command ?? mod.default;
  const c = cmd as Partial<Command> | undefined;
  if (!c || c.name !== name || typeof c.run !== "function" || typeof c.usage !== "string") {
    throw new Error(
      `cli/commands/${name}.ts must export \`command\`: { name: "${name}", summary, usage, run(argv) }.`,
    );
  }
  return c as Command;
}

async function topUsage(): Promise<string> {
  const lines = ["Usage: kryonix-dr <command> [flags]", "", "Commands:"];
  const cmds = await Promise.all(commandNames().map(loadCommand));
  const width = Math.max(...cmds.map((c) => c.name.length), 8);
  for (const c of cmds) lines.push(`  ${c.name.padEnd(width)}  ${c.summary}`);
  lines.push("", "Run 'kryonix-dr <command> --help' for a command's flags.");
  return lines.join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    const usage = await topUsage();
    if (name === undefined) {
      process.stderr.write(`${usage}\n`);
      return 2;
    }
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const names = commandNames();
  if (!names.includes(name)) {
    process.stderr.write(
      `kryonix-dr: unknown command '${name}'. Available commands: ${names.join(", ")}. Run 'kryonix-dr --help'.\n`,
    );
    return 2;
  }
  const cmd = await loadCommand(name);
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`${cmd.usage}\n`);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`kryonix-dr ${name}: ${err.message}\n\n${cmd.usage}\n`);
      return 2;
    }
    process.stderr.write(`kryonix-dr ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
    if (process.env[TOOL_ENV.debug] && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}
