/**
 * `kryonix-dr plan` end to end (a fresh CLI process per stack, as a user runs it) on a small
 * fixture program, plus the secret-path helpers it relies on.
 */
import { join } from "node:path";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { runAsync } from "../support/spawn.js";
import { findSecretPaths, redact, unwrapSecrets, loadStackConfig, REDACTED_SECRET } from "../../local/program.js";

const ROOT = join(__dirname, "..", "..");
const FIXTURE = join(ROOT, "test", "fixtures", "plan-fixture");
const SIG = "4dabf18193072939515e22adb298388d";
const SECRET = "1b47061264138c4ac30d75fd1eb44270";

// Each CLI run is a process of its own, awaited (a synchronous spawn would block this worker's
// RPC with vitest, which times out under load); on a loaded machine one takes well over a minute.
vi.setConfig({ testTimeout: 240_000, hookTimeout: 240_000 });

async function cli(...args: string[]) {
  const r = await runAsync(process.execPath, [join(ROOT, "bin", "kryonix-dr.mjs"), ...args], { timeoutMs: 180_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("plan --json on a fixture program", () => {
  let r!: Awaited<ReturnType<typeof cli>>;
  let plan!: Array<{ type: string; name: string; urn: string; custom: boolean; inputs: any; parent?: string }>;
  beforeAll(async () => {
    r = await cli("plan", "--stack", "dev", "--project-dir", FIXTURE, "--json");
    plan = JSON.parse(r.stdout) as typeof plan;
  });
  const byName = (n: string) => plan.find((p) => p.name === n)!;

  it("lists every declared resource, components included, and not the root stack", () => {
    expect(r.code).toBe(0);
    expect(plan.map((p) => `${p.type} ${p.name}`)).toEqual([
      "kdrtest:plan:App demo",
      "docker:index/network:Network demo-net",
      "docker:index/secret:Secret demo-sec",
      "docker:index/service:Service demo-svc",
    ]);
    expect(byName("demo").custom).toBe(false);
    expect(byName("demo-svc").custom).toBe(true);
  });

  it("gives each child its parent's URN", () => {
    for (const n of ["demo-net", "demo-sec", "demo-svc"]) expect(byName(n).parent).toBe(byName("demo").urn);
    expect(byName("demo").parent).toBeUndefined();
  });

  it("replaces exactly the secret values with [secret] and keeps plain ones", () => {
    const env = byName("demo-svc").inputs.taskSpec.containerSpec.env;
    expect(env).toEqual({ PLAIN: "visible", PASSWORD: "[secret]" });
    expect(byName("demo-sec").inputs.data).toBe("[secret]");
    // Ids of dependencies flow into dependents' inputs.
    expect(byName("demo-svc").inputs.taskSpec.networksAdvanceds[0].name).toBe("demo-net-id");
    expect(byName("demo-svc").inputs.taskSpec.containerSpec.secrets[0]).toMatchObject({ secretId: "demo-sec-id", secretName: "demo-sec" });
    expect(byName("demo-net").inputs.labels).toEqual([{ label: "kdr.greeting", value: "hello" }]);
    // The ciphertext of the secure value never appears.
    expect(r.stdout).not.toContain("c2VjcmV0LWNpcGhlcnRleHQ");
  });

  it("prints a table by default", async () => {
    const t = await cli("plan", "--stack", "dev", "--project-dir", FIXTURE);
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/^TYPE\s+NAME\s+PARENT$/m);
    expect(t.stdout).toMatch(/^docker:index\/service:Service\s+demo-svc\s+demo$/m);
    expect(t.stdout).toContain("4 resources (3 custom, 1 components)");
  });

  it("prints the stack outputs with --outputs", async () => {
    const o = await cli("plan", "--stack", "dev", "--project-dir", FIXTURE, "--outputs");
    expect(o.code).toBe(0);
    expect(JSON.parse(o.stdout)).toEqual({ labels: { team: "dr" } });
  });
});

describe("plan on bad config", () => {
  it.each([
    ["bad", "kdrtest-plan:greeting must not be 'bad'"],
    ["badres", "kdrtest-plan:greeting 'badres' is rejected by the component"],
    ["badapply", "kdrtest-plan:password was rejected inside an apply"],
    ["nopass", "Missing required configuration variable 'kdrtest-plan:password'"],
  ])("stack %s exits 1 with the program's message", async (stack, message) => {
    const r = await cli("plan", "--stack", stack, "--project-dir", FIXTURE, "--json");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(message);
    expect(r.stdout).toBe("");
  });

  it("names a missing stack file and how to fix it", async () => {
    const r = await cli("plan", "--stack", "nosuch", "--project-dir", FIXTURE);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("Unknown stack 'nosuch'");
    expect(r.stderr).toContain("Pulumi.nosuch.yaml does not exist");
  });

  it("rejects unknown flags and a missing --stack with usage (exit 2)", async () => {
    const a = await cli("plan", "--stack", "dev", "--bogus");
    expect(a.code).toBe(2);
    expect(a.stderr).toContain("Unknown option '--bogus'");
    expect(a.stderr).toContain("Usage: kryonix-dr plan");
    const b = await cli("plan");
    expect(b.code).toBe(2);
    expect(b.stderr).toContain("Missing required flag --stack");
  });
});

describe("secret paths", () => {
  const wrap = (value: unknown) => ({ [SIG]: SECRET, value });

  it("finds secrets where the program put them, as JSON Pointers", () => {
    const raw = { a: "x", env: { K: wrap("v"), "x/y": wrap("w") }, list: [1, wrap([2])], whole: wrap({ n: 1 }) };
    expect(findSecretPaths(raw).sort()).toEqual(["/env/K", "/env/x~1y", "/list/1", "/whole"]);
  });

  it("unwraps and redacts by those paths", () => {
    const raw = { env: { K: wrap("v"), P: "p" }, list: [wrap("s"), "t"] };
    const plain = unwrapSecrets(raw) as Record<string, unknown>;
    expect(plain).toEqual({ env: { K: "v", P: "p" }, list: ["s", "t"] });
    expect(redact(plain, findSecretPaths(raw))).toEqual({ env: { K: "[secret]", P: "p" }, list: ["[secret]", "t"] });
    expect(plain.env).toEqual({ K: "v", P: "p" }); // redact copies
  });

  it("marks secure: config secret with a placeholder, and lets the caller supply real values", () => {
    const c = loadStackConfig(FIXTURE, "dev");
    expect(c.config["kdrtest-plan:password"]).toBe(REDACTED_SECRET);
    expect(c.config["kdrtest-plan:greeting"]).toBe("hello");
    expect(JSON.parse(c.config["kdrtest-plan:labels"]!)).toEqual({ team: "dr" });
    expect(c.secretKeys).toEqual(["kdrtest-plan:password"]);
    const o = loadStackConfig(FIXTURE, "dev", { password: { value: "real", secret: true }, greeting: { value: "hi" } });
    expect(o.config["kdrtest-plan:password"]).toBe("real");
    expect(o.config["kdrtest-plan:greeting"]).toBe("hi");
    expect(o.secretKeys).toEqual(["kdrtest-plan:password"]);
  });
});

describe("the kryonix-dr command registry", () => {
  it("lists every command in --help", async () => {
    const r = await cli("--help");
    expect(r.code).toBe(0);
    for (const name of ["plan", "deploy", "destroy", "s3", "migrate"]) expect(r.stdout).toMatch(new RegExp(`^  ${name}\\s+\\S`, "m"));
  });

  it("rejects an unknown command, listing the known ones", async () => {
    const r = await cli("nosuch");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command 'nosuch'\. Available commands: .*plan/);
  });

  it("validates s3 put-default-retention's flags before touching anything", async () => {
    const a = await cli("s3", "put-default-retention", "--bucket", "b", "--mode", "LOCKED", "--days", "1");
    expect(a.code).toBe(2);
    expect(a.stderr).toContain("--mode must be GOVERNANCE or COMPLIANCE, not 'LOCKED'.");
    const b = await cli("s3", "put-default-retention", "--bucket", "b", "--mode", "GOVERNANCE", "--days", "0");
    expect(b.code).toBe(2);
    expect(b.stderr).toContain("--days must be a whole number of days of at least 1, not '0'.");
    const c = await cli("s3", "nosuch");
    expect(c.code).toBe(2);
    expect(c.stderr).toContain("Unknown subcommand 'nosuch'");
  });
});

describe("plan --policy", () => {
  it("passes a compliant program", async () => {
    const r = await cli("plan", "--stack", "dev", "--project-dir", FIXTURE, "--policy");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("policies: 0 violation(s), 0 mandatory");
  });

  it("exits 1 on a mandatory violation, naming the policy, the resource and the fix", async () => {
    const r = await cli("plan", "--stack", "unprotected", "--project-dir", FIXTURE, "--policy");
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^\[mandatory\] stateful-service-has-backup-sidecar: docker:index\/service:Service "unprotected-db" .*Fix: /m);
    expect(r.stdout).toMatch(/policies: \d+ violation\(s\), [1-9]\d* mandatory/);
  });

  it("keeps stdout pure JSON with --json and reports violations on stderr", async () => {
    const r = await cli("plan", "--stack", "unprotected", "--project-dir", FIXTURE, "--policy", "--json");
    expect(r.code).toBe(1);
    expect((JSON.parse(r.stdout) as Array<{ name: string }>).map((x) => x.name)).toContain("unprotected-db");
    expect(r.stderr).toContain("[mandatory] stateful-service-has-backup-sidecar");
  });
});
