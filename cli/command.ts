/**
 * What every `kryonix-dr` subcommand is, and the one flag parser they share, so that every
 * command rejects unknown flags and missing values the same way.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { isIsoTimeWithZone } from "../contract/index.js";

export interface Command {
  /** The word after `kryonix-dr`; equals the file name in cli/commands/. */
  readonly name: string;
  /** One line for `kryonix-dr --help`. */
  readonly summary: string;
  /** The full usage text printed by `kryonix-dr <name> --help` and after a usage error. */
  readonly usage: string;
  /** Runs the command; resolves to the process exit code. */
  run(argv: string[]): Promise<number>;
}

/** A mistake in how the command was called; main prints it with the command's usage. */
export class UsageError extends Error {
  override name = "UsageError";
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * Parses flags strictly: unknown flags, missing values and stray positionals become a
 * UsageError that names the flag. `--help` is always accepted and reported as `help: true`.
 */
export function parseFlags<O extends Options>(
  argv: string[],
  options: O,
  allowPositionals = false,
): { values: { [K in keyof O]?: O[K]["type"] extends "boolean" ? boolean : string } & { help?: boolean }; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ...options, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals,
    });
    return { values: values as never, positionals };
  } catch (err) {
    // node's messages already name the flag ("Unknown option '--x'"); drop its hint about "--"
    // which is not how our commands take values.
    const msg = (err as Error).message.replace(/\. To specify a positional argument.*$/s, ".");
    throw new UsageError(msg);
  }
}

/** Returns the flag's value or throws a UsageError naming it. */
export function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === "") throw new UsageError(`Missing required flag --${flag}.`);
  return value;
}

/** An ISO time with its zone (2026-01-02T03:04:05Z), or a UsageError naming the flag. */
export function parseIsoTime(raw: string, flag: string): Date {
  if (!isIsoTimeWithZone(raw)) {
    throw new UsageError(`${flag} '${raw}' is not an ISO time with a zone: give e.g. 2026-01-02T03:04:05Z.`);
  }
  return new Date(raw);
}
