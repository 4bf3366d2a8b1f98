/**
 * `kryonix-dr plan --json` on the four real stacks (prod, dr, recovery, local), each in a fresh
 * process as a user runs it: it succeeds, lists the graph with parents, and never prints a
 * credential. The graph's contents are asserted by the stacks' own tests; this checks the plan.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { runAsync } from "../support/spawn.js";

const ROOT = join(__dirname, "..", "..");
type Planned = { type: string; name: string; urn: string; custom: boolean; inputs: Record<string, any>; parent?: string; provider?: string };

// Each plan is a CLI process, awaited (a synchronous spawn blocks this worker's RPC with vitest,
// which times out under load); on a loaded machine one takes over a minute.
vi.setConfig({ testTimeout: 240_000, hookTimeout: 240_000 });

async function plan(...args: string[]) {
  const r = await runAsync(process.execPath, [join(ROOT, "bin", "kryonix-dr.mjs"), "plan", ...args], { timeoutMs: 180_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const tmp = mkdtempSync(join(tmpdir(), "kdrtest-plan-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.each(["prod", "dr", "recovery", "local"])("plan --stack %s --json", (stack) => {
  let r!: Awaited<ReturnType<typeof plan>>;
  let resources: Planned[] = [];
  beforeAll(async () => {
    r = await plan("--stack", stack, "--json");
    resources = r.code === 0 ? (JSON.parse(r.stdout) as Planned[]) : [];
  });
  const stackFile = readFileSync(join(ROOT, `Pulumi.${stack}.yaml`), "utf8");

  it("succeeds and lists custom resources under their components", () => {
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(resources.filter((x) => x.custom).length).toBeGreaterThan(5);
    const urns = new Set(resources.map((x) => x.urn));
    for (const x of resources) {
      expect(x.urn).toContain(`::${x.name}`);
      if (x.parent) expect(urns.has(x.parent), `${x.name}'s parent ${x.parent} is listed`).toBe(true);
      if (x.provider) expect(urns.has(x.provider), `${x.name}'s provider ${x.provider} is listed`).toBe(true);
    }
    expect(resources.some((x) => x.custom && x.parent !== undefined)).toBe(true);
  });

  it("prints no credential: secret inputs are [secret], secure: values never appear", () => {
    for (const m of stackFile.matchAll(/secure:\s*([^\s}]+)/g)) expect(r.stdout).not.toContain(m[1]!);
    for (const x of resources) {
      if (x.type === "docker:index/secret:Secret") expect(x.inputs.data, `${x.name}.data`).toBe("[secret]");
      if (x.type === "pulumi:providers:minio") {
        expect(x.inputs.minioPassword).toBe("[secret]");
        expect(x.inputs.minioUser).toBe("[secret]");
      }
      if (x.type === "pulumi:providers:postgresql") expect(x.inputs.password).toBe("[secret]");
      if (x.type === "postgresql:index/role:Role" && x.inputs.password !== undefined) expect(x.inputs.password).toBe("[secret]");
      if (x.type === "minio:index/iamUser:IamUser" && x.inputs.secret !== undefined) expect(x.inputs.secret).toBe("[secret]");
      if (x.type === "command:local:Command") {
        for (const k of ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "PGPASSWORD"]) {
          if (x.inputs.environment?.[k] !== undefined) expect(x.inputs.environment[k], `${x.name} ${k}`).toBe("[secret]");
        }
      }
    }
  });
});

describe("plan of the dr stack", () => {
  it("resolves its StackReference from a plan of the primary stack", async () => {
    const r = await plan("--stack", "dr", "--json");
    const resources = JSON.parse(r.stdout) as Planned[];
    const ref = resources.find((x) => x.type === "pulumi:pulumi:StackReference");
    expect(ref?.inputs.name).toMatch(/\/prod$/);
  });
});

describe("plan of a real stack with bad config", () => {
  it("exits 1 with the stack's validation message naming the key and the fix", async () => {
    const file = join(tmp, "bad.json");
    writeFileSync(file, JSON.stringify({ services: { value: [{ name: "pg", engine: "postgres", tier: "critical" }, { name: "pg", engine: "postgres", tier: "critical" }] } }));
    const r = await plan("--stack", "local", "--json", "--config-file", file);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("kryonix-dr:services[1].name: duplicate service name \"pg\"");
    expect(r.stderr).toContain("rename or remove one");
  });

  it("rejects a malformed --config-file with usage", async () => {
    const file = join(tmp, "malformed.json");
    writeFileSync(file, JSON.stringify({ services: [1, 2] }));
    const r = await plan("--stack", "local", "--config-file", file);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`entry 'services' must be {"value": ..., "secret": bool}`);
  });
});
