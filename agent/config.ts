/**
 * Settings: every AGENT_ENV name can also be given as a flag (`--target-host`), so the same CLI
 * runs in a container (env + Swarm secret files) and on a host (flags, KDR_SECRET_DIR).
 * Secrets are only ever read from files.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { cronError } from "../contract/schedule.js";
import { AGENT_ENV, ENGINES, flagName, SECRET_FILES, SETTINGS, TARGET_DEFAULTS, TIERS, type Engine, type SettingDef, type SettingKey, type Tier } from "../contract/index.js";

export { flagName, type SettingKey };
export type SecretKey = keyof typeof SECRET_FILES;

/** Thrown for anything the operator must fix; the CLI prints only the message. */
export class ConfigError extends Error {}

/** Why a value does not fit its setting's kind, or undefined when it does. */
export function settingProblem(def: SettingDef, v: string): string | undefined {
  switch (def.kind) {
    case "name":
      return /^[a-z0-9][a-z0-9._-]{0,62}$/.test(v) ? undefined : "is not a valid service name: use lower-case letters, digits, '.', '_' or '-' (it becomes an object key prefix)";
    case "uuid":
      return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v) ? undefined : "is not a UUID: give the catalog tenant id, e.g. 00000000-0000-0000-0000-000000000001";
    case "url":
      try {
        new URL(v);
        return undefined;
      } catch {
        return "is not a URL: give e.g. http://10.0.0.5:7480";
      }
    case "port":
      return /^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 65535 ? undefined : "is not a TCP port: give a number from 1 to 65535";
    case "seconds":
    case "days":
      return /^\d+$/.test(v) ? undefined : `is not a whole number >= 0: give a number of ${def.kind}, such as 60`;
    case "enum":
      return def.values!.includes(v) ? undefined : `is not one of ${def.values!.join(", ")}`;
    case "cron": {
      const e = cronError(v);
      return e ? `is not a valid cron expression (${e}): use 5 or 6 fields, e.g. '0 2 * * *'` : undefined;
    }
    case "json":
      try {
        JSON.parse(v);
        return undefined;
      } catch (e) {
        return `is not valid JSON (${(e as Error).message})`;
      }
    case "rate":
      return /^\d+[kM]?$/.test(v) ? undefined : "is not a rate: give kB/s as a number, optionally with k or M, e.g. 50M";
    default:
      return undefined;
  }
}

export interface ParsedArgs {
  positional: string[];
  flags: Map<string, string | true>;
}

/** `--a b`, `--a=b` and bare boolean flags (when the next word is another flag or absent). */
export function parseArgs(argv: string[], booleans: ReadonlySet<string> = new Set()): ParsedArgs {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    if (eq > 0) flags.set(a.slice(0, eq), a.slice(eq + 1));
    else if (booleans.has(a) || i + 1 >= argv.length || argv[i + 1]!.startsWith("--")) flags.set(a, true);
    else flags.set(a, argv[++i]!);
  }
  return { positional, flags };
}

export class Settings {
  constructor(
    private readonly flags: Map<string, string | true> = new Map(),
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  /** The raw value from flag or env, without the table's default. */
  private given(key: SettingKey): string | undefined {
    const f = this.flags.get(flagName(key));
    if (typeof f === "string" && f !== "") return f;
    const e = this.env[AGENT_ENV[key]];
    return e === undefined || e === "" ? undefined : e;
  }

  /**
   * Checks every setting that was given against its kind, all at once, so a container with a
   * bad setting stops at start with every problem named (not hours later at the first run that
   * reads it). Returns the given values, frozen.
   */
  check(): Readonly<Partial<Record<SettingKey, string>>> {
    const problems: string[] = [];
    const out: Partial<Record<SettingKey, string>> = {};
    for (const key of Object.keys(SETTINGS) as SettingKey[]) {
      const v = this.given(key);
      if (v === undefined) continue;
      const p = settingProblem(SETTINGS[key], v);
      if (p) problems.push(`${AGENT_ENV[key]}='${v}' ${p}`);
      out[key] = v;
    }
    if (problems.length) throw new ConfigError(problems.length === 1 ? `${problems[0]}.` : `bad settings:\n  ${problems.join("\n  ")}`);
    return Object.freeze(out);
  }

  /** Value from flag or env, else the table's default, or undefined. */
  get(key: SettingKey): string | undefined {
    const v = this.given(key);
    if (v !== undefined) return v;
    const d = (SETTINGS[key] as SettingDef).default;
    return d === undefined ? undefined : String(d);
  }

  require(key: SettingKey): string {
    const v = this.get(key);
    if (v === undefined) {
      throw new ConfigError(`${AGENT_ENV[key]} is not set: set the environment variable ${AGENT_ENV[key]} or pass ${flagName(key)} <value>.`);
    }
    return v;
  }

  int(key: SettingKey, fallback?: number): number {
    const v = this.get(key);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      return this.int(key, Number.NaN);
    }
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) {
      throw new ConfigError(`${AGENT_ENV[key]}='${v}' is not a whole number >= 0: give a number such as 60.`);
    }
    return n;
  }

  requireInt(key: SettingKey): number {
    this.require(key);
    return this.int(key);
  }

  get service(): string {
    const s = this.require("service");
    const p = settingProblem(SETTINGS.service, s);
    if (p) throw new ConfigError(`${AGENT_ENV.service}='${s}' ${p}.`);
    return s;
  }

  get engine(): Engine {
    const e = this.require("engine");
    if (!(ENGINES as readonly string[]).includes(e)) {
      throw new ConfigError(`${AGENT_ENV.engine}='${e}' is not an engine: use one of ${ENGINES.join(", ")}.`);
    }
    return e as Engine;
  }

  get tier(): Tier {
    const t = this.get("tier")!;
    if (!(TIERS as readonly string[]).includes(t)) {
      throw new ConfigError(`${AGENT_ENV.tier}='${t}' is not a tier: use one of ${TIERS.join(", ")}.`);
    }
    return t as Tier;
  }

  get tenantId(): string {
    const t = this.require("tenantId");
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(t)) {
      throw new ConfigError(`${AGENT_ENV.tenantId}='${t}' is not a UUID: give the catalog tenant id, e.g. 00000000-0000-0000-0000-000000000001.`);
    }
    return t;
  }

  /** The service's RPO; unset, the program's default for its tier (never one of the agent's own). */
  get rpoSeconds(): number {
    return this.int("rpoSeconds", TARGET_DEFAULTS.rpoSeconds[this.tier]);
  }

  get rtoSeconds(): number {
    return this.int("rtoSeconds");
  }

  get walSwitchSeconds(): number {
    const n = this.int("walSwitchSeconds");
    if (n < 1) throw new ConfigError(`${AGENT_ENV.walSwitchSeconds} must be at least 1 second.`);
    return n;
  }

  get metricsPort(): number {
    return this.int("metricsPort");
  }

  get lockMode(): "GOVERNANCE" | "COMPLIANCE" | undefined {
    const m = this.get("lockMode");
    if (m === undefined) return undefined;
    if (m !== "GOVERNANCE" && m !== "COMPLIANCE") {
      throw new ConfigError(`${AGENT_ENV.lockMode}='${m}' is not an object-lock mode: use GOVERNANCE or COMPLIANCE (or leave it unset to rely on the bucket default).`);
    }
    return m;
  }

  get stateDir(): string {
    return this.get("stateDir")!;
  }

  retentionDays(cls: "full" | "incremental" | "wal"): number {
    const key = cls === "full" ? "retentionFullDays" : cls === "incremental" ? "retentionIncrementalDays" : "retentionWalDays";
    return this.int(key);
  }

  /** Secret directory: /run/secrets in containers; another with --secret-dir (or its env name) on a host. */
  get secretDir(): string {
    return this.get("secretDir")!;
  }

  secretPath(key: SecretKey): string {
    return path.join(this.secretDir, path.basename(SECRET_FILES[key]));
  }

  /** Reads a secret file (trimmed), or throws an error naming the file and how to provide it. */
  secret(key: SecretKey): string {
    const file = this.secretPath(key);
    let v: string;
    try {
      v = readFileSync(file, "utf8").trim();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ConfigError(
        `secret ${path.basename(file)} ${code === "ENOENT" ? "is missing" : `cannot be read (${code})`}: expected the file ${file}. ` +
          `Attach the Swarm secret '${path.basename(file)}' to this service (or, on a host, set ${AGENT_ENV.secretDir} to a directory holding it).`,
      );
    }
    if (v === "") throw new ConfigError(`secret file ${file} is empty: put the value in the Swarm secret '${path.basename(file)}'.`);
    return v;
  }
}
