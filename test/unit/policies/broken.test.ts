/**
 * The three broken configurations issue #6 names, each failing with a message that names the
 * resource and the fix: a service with a volume but no sidecar, a bucket without lock, and a
 * key in env. First on plans built like the components' output, then end to end: a real Pulumi
 * program (@pulumi/docker and @pulumi/minio resources) through `kryonix-dr plan --policy`, the
 * command users run, which must exit non-zero.
 */
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { runAsync } from "../../support/spawn.js";
import { AGENT_ENV, LABELS } from "../../../contract/index.js";
import { evaluatePolicies, hasMandatory } from "../../../policies/evaluate.js";
import { compliantPlan, containerSpec, copy, envOf, find, T, without } from "./fixtures.js";

const ROOT = resolve(__dirname, "..", "..", "..");

describe("broken plans (component-shaped)", () => {
  it("a service with a volume but no sidecar", () => {
    const plan = without(compliantPlan(), (r) => r.name.startsWith("grafana-sidecar"));
    const v = evaluatePolicies(plan);
    expect(hasMandatory(v)).toBe(true);
    expect(v).toEqual([
      {
        policy: "stateful-service-has-backup-sidecar",
        enforcement: "mandatory",
        resourceType: T.service,
        resourceName: "grafana-service",
        message:
          `Swarm service "grafana" (docker:index/service:Service "grafana-service") holds state (mounts volume "grafana-data" at /var/lib/grafana) but no backup sidecar protects it. ` +
          `Fix: add a backup sidecar for it (a Swarm service labelled ${LABELS.protects}=grafana), or, if its data is disposable, list "grafana" under "exclude" in this policy's config.`,
      },
    ]);
  });

  it("a bucket without lock", () => {
    const plan = copy(compliantPlan());
    delete find(plan, T.bucket, "storage-important").inputs.objectLocking;
    const v = evaluatePolicies(plan);
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ policy: "backup-bucket-private-versioned-locked", enforcement: "mandatory", resourceType: T.bucket, resourceName: "storage-important" });
    expect(v[0]!.message).toContain('Bucket "kryonix-backups-important"');
    expect(v[0]!.message).toContain("Fix: set objectLocking: true");
  });

  it("a key in env", () => {
    const plan = copy(compliantPlan());
    envOf(plan, "redis-sidecar-service").KDR_S3_SECRET_KEY = "9f8e7d6c5b4a";
    const v = evaluatePolicies(plan);
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ policy: "no-plaintext-credentials", enforcement: "mandatory", resourceType: T.service, resourceName: "redis-sidecar-service" });
    expect(v[0]!.message).toContain("environment variable KDR_S3_SECRET_KEY");
    expect(v[0]!.message).toContain("Fix: deliver it as a Swarm secret file");
    // The message must never repeat the credential it found.
    expect(v[0]!.message).not.toContain("9f8e7d6c5b4a");
    // An unrelated key setting of the agent is not a credential.
    expect(containerSpec(plan, "redis-sidecar-service").env).toHaveProperty(AGENT_ENV.s3Bucket);
  });
});

describe("broken program through `kryonix-dr plan --policy`", () => {
  // A plan is a CLI process; on a loaded machine one takes over a minute.
  vi.setConfig({ testTimeout: 240_000 });
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** A throwaway Pulumi project whose `policies/` and `node_modules/` are this repository's. */
  function project(program: string): string {
    const dir = mkdtempSync(join(tmpdir(), "kdrtest-policies-"));
    dirs.push(dir);
    symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
    symlinkSync(join(ROOT, "policies"), join(dir, "policies"));
    writeFileSync(join(dir, "Pulumi.yaml"), "name: kdrtest-broken\nruntime: nodejs\nmain: index.ts\n");
    writeFileSync(join(dir, "Pulumi.broken.yaml"), "config: {}\n");
    writeFileSync(join(dir, "index.ts"), program);
    return dir;
  }

  /** Awaited: a synchronous spawn blocks this worker's RPC with vitest, which times out under load. */
  function plan(dir: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
    return runAsync(process.execPath, [join(ROOT, "bin", "kryonix-dr.mjs"), "plan", "--stack", "broken", "--policy", "--project-dir", dir], { timeoutMs: 180_000 });
  }

  const program = (envValue: string) => `
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import * as minio from "@pulumi/minio";
void pulumi;
new docker.Service("wiki", {
  name: "wiki",
  taskSpec: {
    containerSpec: {
      image: "requarks/wiki:2",
      mounts: [{ type: "volume", source: "wiki-data", target: "/wiki/data" }],
      env: { S3_SECRET_KEY: ${envValue} },
    },
  },
});
const bucket = new minio.S3Bucket("backups", { bucket: "kryonix-backups", acl: "private" });
new minio.S3BucketVersioning("backups-versioning", { bucket: bucket.bucket, versioningConfiguration: { status: "Enabled" } });
new minio.IlmPolicy("backups-lifecycle", { bucket: bucket.bucket, rules: [{ id: "full", filter: "full/", expiration: "30d" }] });
`;

  it("fails with one message per problem, each naming the resource and the fix", async () => {
    const r = await plan(project(program(`"plain-key-value"`)));
    expect(r.stderr).toBe("");
    expect(r.status).toBe(1);
    const lines = r.stdout.split("\n").filter((l) => l.startsWith("[mandatory]"));
    const line = (policy: string) => lines.find((l) => l.startsWith(`[mandatory] ${policy}:`)) ?? `(no ${policy} line in:\n${r.stdout})`;
    expect(line("stateful-service-has-backup-sidecar")).toContain('docker:index/service:Service "wiki"');
    expect(line("stateful-service-has-backup-sidecar")).toContain("Fix: add a backup sidecar for it");
    expect(line("backup-bucket-private-versioned-locked")).toContain('minio:index/s3Bucket:S3Bucket "backups"');
    expect(line("backup-bucket-private-versioned-locked")).toContain("is not object-locked (objectLocking is unset). Fix: set objectLocking: true");
    expect(line("no-plaintext-credentials")).toContain('docker:index/service:Service "wiki" puts a credential in plain text: environment variable S3_SECRET_KEY');
    expect(line("no-plaintext-credentials")).toContain("Fix: deliver it as a Swarm secret file");
    expect(r.stdout).not.toContain("plain-key-value");
    // The unlocked bucket also has no default retention to outlast its 30-day expiry.
    expect(line("lock-retention-covers-lifecycle")).toContain("has no default lock retention");
    expect(lines).toHaveLength(4);
    expect(r.stdout).toContain("policies: 4 violation(s), 4 mandatory");
  });

  it("counts a pulumi.secret() env value as a secret", async () => {
    const r = await plan(project(program(`pulumi.secret("plain-key-value")`)));
    expect(r.status).toBe(1);
    expect(r.stdout).not.toContain("no-plaintext-credentials");
    expect(r.stdout).toContain("policies: 3 violation(s), 3 mandatory");
  });
});
