/**
 * The settings table (contract/settings.ts) is the one place a setting exists: every env var and
 * argv flag the program writes into a container, from each stack's real plan, parses back with
 * the agent's own parser and checks, value for value; the table is consistent with itself; and
 * no KDR_ name is spelled in the product's source outside contract/.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { runAsync } from "../support/spawn.js";
import { AGENT_ENV, SETTINGS, agentFlags, flagName, type SettingDef, type SettingKey } from "../../contract/index.js";
import { parseArgs, Settings, settingProblem } from "../../agent/config.js";

const ROOT = resolve(__dirname, "..", "..");
const STACKS = ["prod", "dr", "recovery", "local"] as const;
const KEYS = Object.keys(SETTINGS) as SettingKey[];
const BOOLEANS = new Set(["--json", "--yes", "--force-overwrite-source", "--clean-target", "--logical", "--no-logical", "--once", "--all"]);

interface Container {
  stack: string;
  name: string;
  env: Record<string, string>;
  /** Agent argv after the command word, for containers and cron jobs that pass flags. */
  argvs: string[][];
}

const containers: Container[] = [];

// Each plan is awaited: a synchronous spawn blocks this worker's RPC with vitest, which times out under load.
beforeAll(async () => {
  for (const stack of STACKS) {
    const r = await runAsync(process.execPath, [join(ROOT, "bin", "kryonix-dr.mjs"), "plan", "--stack", stack, "--json"], { cwd: ROOT, timeoutMs: 180_000 });
    if (r.status !== 0) throw new Error(`plan --stack ${stack} failed (exit ${r.status}):\n${r.stderr.slice(-3000)}`);
    const plan = JSON.parse(r.stdout) as Array<{ type: string; name: string; inputs: Record<string, unknown> }>;
    for (const res of plan) {
      let env: Record<string, string> | undefined;
      let args: string[] | undefined;
      if (res.type === "docker:index/service:Service") {
        const cs = (res.inputs.taskSpec as { containerSpec: { env?: Record<string, string>; args?: string[] } }).containerSpec;
        env = cs.env;
        args = cs.args;
      } else if (res.type === "docker:index/container:Container") {
        env = Object.fromEntries(((res.inputs.envs as string[] | undefined) ?? []).map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));
        args = res.inputs.command as string[] | undefined;
      }
      if (!env || !Object.keys(env).some((k) => k.startsWith("KDR_"))) continue;
      const argvs: string[][] = [];
      if (args && args.length > 1) argvs.push(args.slice(1));
      if (env[AGENT_ENV.cronJobs]) for (const j of JSON.parse(env[AGENT_ENV.cronJobs]) as { command: string[] }[]) argvs.push(j.command.slice(1));
      containers.push({ stack, name: res.name, env, argvs });
    }
  }
}, 720_000);

describe("every generated container's settings round-trip through the agent's parser", () => {
  it("finds the agent containers of all four stacks", () => {
    for (const stack of STACKS) expect(containers.filter((c) => c.stack === stack).length, stack).toBeGreaterThan(0);
  });

  it("uses only names from the table, and each value passes the agent's checks and reads back unchanged", () => {
    const known = new Set(Object.values(AGENT_ENV));
    let checked = 0;
    for (const c of containers) {
      const kdr = Object.entries(c.env).filter(([k]) => k.startsWith("KDR_"));
      for (const [k] of kdr) expect(known.has(k as never), `${c.stack}/${c.name}: ${k} is not in contract/settings.ts`).toBe(true);
      const s = new Settings(new Map(), c.env);
      expect(() => s.check(), `${c.stack}/${c.name}`).not.toThrow();
      for (const key of KEYS) {
        const v = c.env[AGENT_ENV[key]];
        if (v !== undefined && v !== "") {
          expect(s.get(key), `${c.stack}/${c.name} ${AGENT_ENV[key]}`).toBe(v);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(100);
  });

  it("every agent flag in a container's command or cron job is a table setting (or a command option), checks, and reads back", () => {
    let flags = 0;
    for (const c of containers) {
      for (const argv of c.argvs) {
        const { flags: parsed } = parseArgs(argv, BOOLEANS);
        const s = new Settings(parsed, c.env);
        expect(() => s.check(), `${c.stack}/${c.name}: ${argv.join(" ")}`).not.toThrow();
        for (const key of KEYS) {
          const v = parsed.get(flagName(key));
          if (typeof v === "string") {
            expect(s.get(key)).toBe(v);
            flags++;
          }
        }
      }
    }
    expect(flags).toBeGreaterThan(20);
  });
});

describe("the table", () => {
  it("has unique env names and flags, and every default passes its own check", () => {
    expect(new Set(KEYS.map((k) => SETTINGS[k].env)).size).toBe(KEYS.length);
    expect(new Set(KEYS.map(flagName)).size).toBe(KEYS.length);
    for (const k of KEYS) {
      const d: SettingDef = SETTINGS[k];
      if (d.default !== undefined) expect(settingProblem(SETTINGS[k], String(d.default)), k).toBeUndefined();
    }
  });

  it("agentFlags writes flags the agent reads back", () => {
    const argv = agentFlags({ service: "pg-main", rpoSeconds: 60, lockMode: "GOVERNANCE" });
    expect(argv).toEqual(["--service", "pg-main", "--rpo-seconds", "60", "--lock-mode", "GOVERNANCE"]);
    const s = new Settings(parseArgs(argv).flags, {});
    expect(s.check()).toEqual({ service: "pg-main", rpoSeconds: "60", lockMode: "GOVERNANCE" });
  });

  it("the agent stops at start naming every bad setting and its fix", () => {
    const s = new Settings(new Map(), { [AGENT_ENV.rpoSeconds]: "5m", [AGENT_ENV.scheduleFull]: "0 25 * * *", [AGENT_ENV.engine]: "mysql" });
    expect(() => s.check()).toThrow(/KDR_ENGINE='mysql' is not one of postgres, redis, volume[\s\S]*KDR_SCHEDULE_FULL='0 25 \* \* \*' is not a valid cron expression[\s\S]*KDR_RPO_SECONDS='5m' is not a whole number >= 0/);
  });
});

/** Every TypeScript file of the product (tests aside). */
function productSources(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith(".ts")) out.push(p);
    }
  };
  for (const d of ["agent", "components", "stacks", "local", "cli", "policies", "catalog", "bench", "contract"]) walk(join(ROOT, d));
  return out;
}

describe("no KDR_ name is spelled outside contract/", () => {
  it("in the product's TypeScript (comments aside)", () => {
    const offenders: string[] = [];
    for (const p of productSources().filter((f) => !f.startsWith(join(ROOT, "contract")))) {
      readFileSync(p, "utf8").split("\n").forEach((line, i) => {
        const code = line.replace(/\/\/.*$/, "");
        if (/^\s*(\*|\/\*)/.test(code)) return;
        if (/KDR_[A-Z]/.test(code)) offenders.push(`${p.slice(ROOT.length + 1)}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(offenders).toEqual([]);
  });
});

describe("the product's source files stay small enough to hold in one's head", () => {
  it("no TypeScript file outside test/ is over 520 lines", () => {
    const big = productSources()
      .map((p) => ({ p, lines: readFileSync(p, "utf8").split("\n").length }))
      .filter((f) => f.lines > 520)
      .map((f) => `${f.p.slice(ROOT.length + 1)}: ${f.lines} lines`);
    expect(big).toEqual([]);
  });
});
