/**
 * All four stacks pass the pack, judged on the plan the program really declares
 * (`kryonix-dr plan --stack <s> --json --policy`, the program under Pulumi mocks with its
 * Pulumi.<s>.yaml). And the pass is not vacuous: the pack sees every sidecar, bucket and
 * sidecar user of those plans, and breaking one of them in the real plan is caught.
 */
import { join, resolve } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { runAsync } from "../../support/spawn.js";
import { AGENT_ENV } from "../../../contract/index.js";
import { evaluatePolicies, type PlannedResource } from "../../../policies/evaluate.js";
import { buckets, defaultRetentions, protections, services, TYPES } from "../../../policies/model.js";

const ROOT = resolve(__dirname, "..", "..", "..");
const STACKS = ["prod", "dr", "recovery", "local"] as const;
const plans: Record<string, PlannedResource[]> = {};
const verdicts: Record<string, { status: number | null; stderr: string }> = {};

// Each plan is awaited: a synchronous spawn blocks this worker's RPC with vitest, which times out under load.
beforeAll(async () => {
  for (const stack of STACKS) {
    const r = await runAsync(process.execPath, [join(ROOT, "bin", "kryonix-dr.mjs"), "plan", "--stack", stack, "--json", "--policy"], { cwd: ROOT, timeoutMs: 180_000 });
    verdicts[stack] = { status: r.status, stderr: r.stderr };
    try {
      plans[stack] = JSON.parse(r.stdout) as PlannedResource[];
    } catch {
      throw new Error(`kryonix-dr plan --stack ${stack} printed no JSON (exit ${r.status}): ${r.stderr}`);
    }
  }
}, 720_000);

function sidecarEnv(r: PlannedResource): Record<string, unknown> {
  return ((r.inputs.taskSpec as Record<string, unknown>).containerSpec as Record<string, unknown>).env as Record<string, unknown>;
}

describe.each(STACKS)("stack %s", (stack) => {
  it("passes the pack through `kryonix-dr plan --policy` (exit 0, no violation)", () => {
    expect(verdicts[stack]!.stderr).toContain("policies: 0 violation(s), 0 mandatory");
    expect(verdicts[stack]!.status).toBe(0);
    expect(evaluatePolicies(plans[stack]!)).toEqual([]);
  });

  it("is seen whole by the pack: every sidecar protects something, every bucket has its own versioning, lifecycle and retention", () => {
    const plan = plans[stack]!;
    const sidecarComponents = plan.filter((r) => r.type === "kryonix:backup:BackupSidecar").length;
    expect(protections(services(plan))).toHaveLength(sidecarComponents);
    const locks = defaultRetentions(plan);
    for (const b of buckets(plan)) {
      expect(b.versioning, `versioning of ${b.resource.name}`).toHaveLength(1);
      expect(b.ilm, `lifecycle of ${b.resource.name}`).toHaveLength(1);
      expect(locks.filter((l) => l.bucket === b.name).length, `retention of ${b.resource.name}`).toBeGreaterThanOrEqual(1);
    }
  });
});

describe("breaking the real plans is caught", () => {
  it("local: removing a sidecar leaves its stateful service unprotected", () => {
    const plan = plans.local!;
    const sidecar = protections(services(plan)).find((p) => p.target !== undefined)!;
    const broken = plan.filter((r) => r !== sidecar.sidecar.resource);
    const v = evaluatePolicies(broken).filter((x) => x.policy === "stateful-service-has-backup-sidecar");
    expect(v.map((x) => x.resourceName)).toEqual([sidecar.target!.resource.name]);
  });

  it("prod: a DR bucket without lock, a plain key in a sidecar env, and a critical bucket without replication", () => {
    const plan = structuredClone(plans.prod!);
    const drBucket = buckets(plan).filter((b) => b.resource.name.startsWith("dr-"))[0]!;
    delete drBucket.resource.inputs.objectLocking;
    const sidecar = protections(services(plan))[0]!.sidecar.resource;
    sidecarEnv(sidecar).AWS_SECRET_ACCESS_KEY = "plaintext";
    const critical = protections(services(plan)).find((p) => p.sidecar.env[AGENT_ENV.tier] === "critical")!;
    const bucketName = String(critical.sidecar.env[AGENT_ENV.s3Bucket]);
    const broken = plan.filter((r) => !(r.type === TYPES.command && String(r.inputs.create ?? "").includes("replicate") && String(r.inputs.create).includes(bucketName)));
    const v = evaluatePolicies(broken);
    expect(v.map((x) => [x.policy, x.resourceName]).sort()).toEqual(
      [
        ["backup-bucket-private-versioned-locked", drBucket.resource.name],
        ["no-plaintext-credentials", sidecar.name],
        ["critical-bucket-replicated", buckets(plan).find((b) => b.name === bucketName && !b.resource.name.startsWith("dr-"))!.resource.name],
      ].sort(),
    );
  });
});
