/**
 * The scripts behind the pull-request workflow, run as a workflow runs them (job summary in
 * GITHUB_STEP_SUMMARY): check.sh (type check and tests without infrastructure) and preview.sh (the
 * in-process plan with the policy pack), on the real stack configs, passing and failing; and the
 * deploy workflow's scripts on the local stack with the local engine: deploy.sh deploys it,
 * drift.sh finds it clean, a change made outside the program (a sidecar scaled to 0 by hand) is
 * reported as drift and makes deploy.sh refuse. The drill and recovery scripts run in drill.test.ts.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DockerApi } from "../../local/docker-api.js";
import { runAsync } from "../support/spawn.js";

const ROOT = join(__dirname, "..", "..");
const tmp = mkdtempSync(join(tmpdir(), "kdrtest-ci-"));
const summaryFile = join(tmp, "summary.md");
const badStack = `kdrtest-badcron-${process.pid}`;

function ciScript(script: string, args: string[], timeoutMs: number) {
  writeFileSync(summaryFile, "");
  return runAsync("bash", [join(ROOT, "scripts", "ci", script), ...args], {
    timeoutMs,
    cwd: ROOT,
    env: { ...process.env, KDR_CI_ENGINE: "local", KDR_CI_OUT_DIR: join(tmp, "out"), GITHUB_STEP_SUMMARY: summaryFile },
  });
}
const summary = () => readFileSync(summaryFile, "utf8");

afterAll(async () => {
  await runAsync(process.execPath, [join(ROOT, "bin", "kryonix-dr.mjs"), "destroy", "--stack", "local", "--force", "--quiet"], { timeoutMs: 300_000, cwd: ROOT });
  rmSync(tmp, { recursive: true, force: true });
  rmSync(join(ROOT, `Pulumi.${badStack}.yaml`), { force: true });
});

describe("scripts/ci/preview.sh: the policy gate", () => {
  it.each(["prod", "dr"])("passes the %s stack, with the planned resources by type and the policy verdict in the job summary", async (stack) => {
    const r = await ciScript("preview.sh", [stack], 240_000);
    expect(r.status, r.stderr).toBe(0);
    expect(summary()).toMatch(new RegExp(`^### Policy gate: stack \`${stack}\`$`, "m"));
    expect(summary()).toMatch(new RegExp(`^\\d+ resources planned in-process from \`Pulumi\\.${stack}\\.yaml\`\\.$`, "m"));
    expect(summary()).toMatch(/^\| `docker:index\/service:Service` \| \d+ \|$/m);
    expect(summary()).toContain("policies: 0 violation(s), 0 mandatory");
    const plan = JSON.parse(readFileSync(join(tmp, "out", `plan-${stack}.json`), "utf8")) as unknown[];
    expect(plan.length).toBeGreaterThan(5);
  }, 300_000);

  it("fails a stack whose config is wrong, naming the key and the fix, and writes no verdict", async () => {
    copyFileSync(join(ROOT, "Pulumi.prod.yaml"), join(ROOT, `Pulumi.${badStack}.yaml`));
    const text = readFileSync(join(ROOT, `Pulumi.${badStack}.yaml`), "utf8").replace('incremental: "*/5 * * * *"', 'incremental: "*/5 * * *"');
    writeFileSync(join(ROOT, `Pulumi.${badStack}.yaml`), text);
    const r = await ciScript("preview.sh", [badStack], 240_000);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/redis.*schedules\.incremental.*\*\/5 \* \* \*/s);
    expect(r.stderr).toContain(`FAILED: the program of stack '${badStack}' did not plan (exit 1)`);
    expect(summary()).toBe("");
  }, 300_000);
});

describe("scripts/ci/check.sh: the pull request's check without infrastructure", () => {
  it("runs the type check and the tests it is given", async () => {
    const r = await ciScript("check.sh", ["test/unit/drift.test.ts"], 480_000);
    expect(r.status, r.stderr + r.stdout.slice(-2000)).toBe(0);
    expect(r.stdout).toContain("==> type check");
    expect(r.stdout.replace(/\x1b\[[0-9;]*m/g, "")).toMatch(/Tests {2}\d+ passed/);
    expect(summary()).toBe("check passed\n");
  }, 500_000);
});

describe("scripts/ci/deploy.sh and drift.sh on the local stack (local engine)", () => {
  it("deploy.sh deploys the stack and writes what it did to the job summary", async () => {
    const r = await ciScript("deploy.sh", ["local"], 600_000);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    expect(summary()).toMatch(/^deployed stack local: \d+ resources in [\d.]+ s/m);
  }, 620_000);

  it("drift.sh finds the fresh deployment clean, and deploy.sh then updates it in place, changing nothing", async () => {
    const d = await ciScript("drift.sh", ["local"], 180_000);
    expect(d.status, summary()).toBe(0);
    expect(summary()).toMatch(/^no drift: \d+ resources of stack 'local' match what was deployed$/m);
    const again = await ciScript("deploy.sh", ["local"], 180_000);
    expect(again.status, again.stderr).toBe(0);
    expect(summary()).toMatch(/^### `local` updated in place \(local deployer\)$/m);
    // The same program and config give the same inputs: every resource is left as it is.
    expect(summary()).toMatch(/^updated stack local in place: \d+ unchanged, 0 updated, 0 replaced, 0 created, 0 deleted; \d+ resources in [\d.]+ s/m);
  }, 400_000);

  it("a sidecar scaled to 0 by hand is reported as drift, naming the property, and deploy.sh refuses the drifted stack", async () => {
    const docker = new DockerApi();
    const svc = await docker.request<any>("GET", "/services/kdr-local-redis-backup");
    await docker.request("POST", `/services/${svc.ID}/update?version=${svc.Version.Index}`, { ...svc.Spec, Mode: { Replicated: { Replicas: 0 } } });
    const d = await ciScript("drift.sh", ["local"], 180_000);
    expect(d.status).toBe(1);
    expect(summary()).toMatch(/^### DRIFT on `local`$/m);
    expect(summary()).toMatch(new RegExp(`^CHANGED  docker:index/service:Service \\S+ \\(${svc.ID}\\)\\n {4}Mode\\.Replicated\\.Replicas: 1 -> 0$`, "m"));
    expect(summary()).toMatch(/^DRIFT: 1 of \d+ checked resources of stack 'local' differ from what was deployed$/m);
    const deploy = await ciScript("deploy.sh", ["local"], 180_000);
    expect(deploy.status).toBe(1);
    expect(deploy.stderr).toContain("FAILED: stack 'local' is deployed but differs from what was deployed");
    expect(deploy.stderr).toContain("to do:  the local deployer does not reconcile changes made outside the program: undo them (the drift above names each), or kryonix-dr destroy --stack local, then run this again");
  }, 400_000);
});
