/**
 * The CI pipelines as files: every workflow passes GitHub's schema (action-validator), calls only
 * scripts that exist and that the suite runs, keeps deploys serial and manual production changes
 * behind a protected environment and a typed confirmation, never splices an input into shell
 * text; and every command the README and the runbooks quote is a real command of this project
 * whose --help runs. The scripts themselves run against the local platform in
 * test/integration/ci-scripts.test.ts and drill.test.ts.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import yaml from "js-yaml";
import { describe, expect, it, vi } from "vitest";
import { runAsync } from "../support/spawn.js";

const ROOT = join(__dirname, "..", "..");
const WORKFLOWS = join(ROOT, ".github", "workflows");
const files = readdirSync(WORKFLOWS).filter((f) => f.endsWith(".yml"));
type Step = { uses?: string; run?: string; with?: Record<string, unknown>; env?: Record<string, string> };
type Job = { steps: Step[]; environment?: string; needs?: string | string[] };
type Workflow = { on: Record<string, unknown>; jobs: Record<string, Job>; concurrency?: { group: string; "cancel-in-progress": boolean } };
const load = (f: string) => yaml.load(readFileSync(join(WORKFLOWS, f), "utf8")) as Workflow;
const steps = (w: Workflow) => Object.values(w.jobs).flatMap((j) => j.steps);

function testSources(dir = join(ROOT, "test")): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? testSources(p) : p.endsWith(".test.ts") ? [readFileSync(p, "utf8")] : [];
  });
}

describe("the workflows", () => {
  it("are the pipelines the project promises", () => {
    expect(files.sort()).toEqual(["deploy.yml", "drift.yml", "drill.yml", "failover.yml", "pull-request.yml", "recovery.yml"]);
  });

  it.each(files)("%s passes GitHub's workflow schema (action-validator)", async (f) => {
    const r = await runAsync(process.execPath, [join(ROOT, "node_modules", "@action-validator", "cli", "cli.mjs"), join(WORKFLOWS, f)], { timeoutMs: 120_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it("call only scripts/ci scripts that exist, are executable and are run by the test suite", () => {
    const tests = testSources().join("\n");
    const called = new Set(files.flatMap((f) => steps(load(f)).flatMap((s) => [...(s.run ?? "").matchAll(/scripts\/(?:ci\/)?[\w.-]+\.sh/g)].map((m) => m[0]))));
    expect(called.size).toBeGreaterThan(5);
    for (const script of called) {
      const p = join(ROOT, script);
      expect(statSync(p).mode & 0o111, `${script} is not executable`).not.toBe(0);
      // Run, not merely named: through a test's ciScript("<name>.sh", ...) or ci(["scripts/ci/<name>.sh", ...]).
      const name = script.slice("scripts/ci/".length);
      if (script.startsWith("scripts/ci/")) expect(tests.includes(`ciScript("${name}"`) || tests.includes(`ci(["${script}"`), `${script} is not run by any test`).toBe(true);
    }
  });

  it("run every non-marketplace step through a script, never inline logic", () => {
    for (const f of files) {
      for (const s of steps(load(f))) {
        if (s.uses) continue;
        expect(s.run, `${f}: a step with neither uses nor run`).toBeDefined();
        expect(s.run!.trim(), `${f}: '${s.run}' is not a script or an install`).toMatch(/^(npm ci --ignore-scripts|(sudo( --preserve-env=\S+)? )?(bash )?scripts\/[\w/.-]+\.sh\b.*)$/s);
      }
    }
  });

  it("use the current major of pulumi/actions, with the policy pack and the PR comment on the preview", () => {
    const pulumi = files.flatMap((f) => steps(load(f))).filter((s) => s.uses?.startsWith("pulumi/actions@"));
    expect(pulumi.length).toBeGreaterThan(3);
    for (const s of pulumi) expect(s.uses).toBe("pulumi/actions@v7");
    const preview = pulumi.find((s) => s.with?.command === "preview")!;
    expect(preview.with).toMatchObject({ policyPacks: "policies", "comment-on-pr": true });
  });

  it("never splice an input or event field into shell text (they reach scripts as env)", () => {
    for (const f of files) for (const s of steps(load(f))) expect(s.run ?? "", f).not.toMatch(/\$\{\{\s*(inputs|github\.event)\./);
  });

  it("serialise everything that changes the stacks in one concurrency group that never cancels", () => {
    for (const f of ["deploy.yml", "drift.yml", "recovery.yml", "failover.yml"]) {
      expect(load(f).concurrency, f).toEqual({ group: "kryonix-dr-deploy", "cancel-in-progress": false });
    }
    expect(load("deploy.yml").jobs.dr!.needs).toBe("prod");
  });

  it.each([
    ["recovery.yml", "recover", "scripts/ci/recover.sh"],
    ["failover.yml", "failover", "scripts/ci/failover.sh"],
  ])("%s puts a manual production change behind a protected environment and a typed confirmation", (file, jobName, script) => {
    const w = load(file);
    expect(Object.keys(w.on)).toEqual(["workflow_dispatch"]);
    const job = w.jobs[jobName]!;
    expect(job.environment).toBe("recovery");
    const order = job.steps.map((s) => s.run ?? s.uses ?? "");
    const confirm = order.findIndex((r) => r.includes("scripts/ci/confirm.sh"));
    const change = order.findIndex((r) => r.includes(script));
    expect(confirm).toBeGreaterThanOrEqual(0);
    expect(confirm).toBeLessThan(change);
  });

  it("take stack names and the backend from repository variables, secrets from the secret store", () => {
    for (const f of files) {
      const text = readFileSync(join(WORKFLOWS, f), "utf8");
      expect(text, f).not.toMatch(/PULUMI_ACCESS_TOKEN:\s*[^$\s]/);
      expect(text, f).not.toMatch(/PULUMI_CONFIG_PASSPHRASE:\s*[^$\s]/);
      for (const m of text.matchAll(/stack-name:\s*(.+)/g)) expect(m[1], f).toMatch(/vars\.KDR_\w+_STACK/);
    }
  });
});

describe("the scripts in scripts/ci", () => {
  // Awaited, never spawnSync: a test of many synchronous runs blocks this worker's RPC with
  // vitest, which times out under load.
  vi.setConfig({ testTimeout: 240_000 });
  const ci = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    runAsync("bash", args, { cwd: ROOT, timeoutMs: 120_000, env: { ...process.env, GITHUB_STEP_SUMMARY: "", ...env } });

  it("confirm.sh refuses anything but the stack's name and changes nothing", async () => {
    const bad = await ci(["scripts/ci/confirm.sh", "recovery", "recovry"]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain("FAILED: the confirmation 'recovry' is not the stack name 'recovery': nothing was changed");
    expect(bad.stderr).toContain("to do:  run the workflow again and type recovery in the confirm field");
    const good = await ci(["scripts/ci/confirm.sh", "recovery", "recovery"]);
    expect(good.status).toBe(0);
    expect(good.stdout).toBe("confirmed: recovery\n");
  });

  it("refuse a bad stack name, an unknown engine and a missing pulumi CLI with the fix (exit 2)", async () => {
    const name = await ci(["scripts/ci/drift.sh", "prod; rm -rf /"]);
    expect(name.status).toBe(2);
    expect(name.stderr).toContain("is not a stack name");
    const engine = await ci(["scripts/ci/drift.sh", "prod"], { KDR_CI_ENGINE: "terraform" });
    expect(engine.status).toBe(2);
    expect(engine.stderr).toContain("KDR_CI_ENGINE='terraform' is not an engine");
    const cliMissing = await ci(["scripts/ci/deploy.sh", "prod"], { KDR_CI_ENGINE: "pulumi", PATH: "/usr/bin:/bin" });
    expect(cliMissing.status).toBe(2);
    expect(cliMissing.stderr).toContain("the pulumi CLI is not on PATH");
  });

  it("failover.sh names a bad input before touching anything", async () => {
    const r = await ci(["scripts/ci/failover.sh", "--force", "yes"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("FAILED: --force 'yes' is not true or false");
    expect((await ci(["scripts/ci/failover.sh", "--stack", "no good"])).stderr).toContain("'no good' is not a stack name");
  });

  it("recover.sh names a missing or bad input before touching anything", async () => {
    expect((await ci(["scripts/ci/recover.sh"])).stderr).toContain("FAILED: no --point");
    expect((await ci(["scripts/ci/recover.sh", "--point", "latest", "--source-region", "mars"])).stderr).toContain("--source-region 'mars' is not a region");
    expect((await ci(["scripts/ci/recover.sh", "--point", "latest", "--catalog", "guess"])).status).toBe(2);
  });
});

describe("every command the README and the runbooks quote", () => {
  const docs = ["README.md", "docs/runbooks.md", "docs/ci.md"].map((f) => readFileSync(join(ROOT, f), "utf8")).join("\n");
  // Shell code blocks only (any fence is matched, so another language's block never shifts the pairing).
  const blocks = [...docs.matchAll(/```([\w-]*)\n([\s\S]*?)```/g)].filter((m) => ["", "sh", "bash"].includes(m[1]!)).map((m) => m[2]!).join("\n");
  const cliCommands = [...new Set([...blocks.matchAll(/(?:^|\s|`)(?:npx )?kryonix-dr ([a-z][a-z0-9-]*)/gm)].map((m) => m[1]!))];
  const agentCommands = [...new Set([...docs.matchAll(/kdr-agent ([a-z][a-z-]*)/g)].map((m) => m[1]!))];
  const scripts = [...new Set([...blocks.matchAll(/(?:bash )?(scripts\/[\w/.-]+\.sh)/g)].map((m) => m[1]!))];

  it("finds the commands it checks", () => {
    expect(cliCommands.length).toBeGreaterThan(5);
    expect(agentCommands.length).toBeGreaterThan(4);
    expect(scripts.length).toBeGreaterThan(1);
  });

  it.each(cliCommands)("kryonix-dr %s --help runs", async (cmd) => {
    const r = await runAsync(process.execPath, [join(ROOT, "bin", "kryonix-dr.mjs"), cmd, "--help"], { timeoutMs: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: kryonix-dr ${cmd}`));
  });

  it("every kdr-agent command quoted is one the agent lists in its --help", async () => {
    const r = await runAsync(process.execPath, ["--import", "tsx", join(ROOT, "agent", "cli.ts"), "--help"], { cwd: ROOT, timeoutMs: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const listed = new Set([...r.stdout.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]!));
    expect(agentCommands.filter((c) => !listed.has(c))).toEqual([]);
  });

  it("every script quoted exists", () => {
    for (const s of scripts) expect(statSync(join(ROOT, s)).isFile(), s).toBe(true);
  });
});
