/** The DR stack: finds the primary through a StackReference named in config, drills the replicas. */
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { AGENT_ENV, LABELS } from "../../../contract/index.js";
import { byType, isSecret, labelsOf, one, plainLeaks, promiseOf, runProgram, setupMocks, stackFileConfig, testSecretValue, type Registration } from "../../support/mocks.js";

let regs: Registration[];
let secretKeys: string[];
let outputs: Record<string, unknown>;
const DR_BUCKETS = { critical: "kdr-prod-backups-critical", important: "kdr-prod-backups-important" };

beforeAll(async () => {
  const file = stackFileConfig("dr");
  secretKeys = file.secretKeys ?? [];
  regs = await setupMocks({
    ...file,
    stack: "dr",
    stackOutputs: {
      "kryonix/kryonix-dr/prod": {
        drBuckets: DR_BUCKETS,
        services: [
          { name: "postgresql", engine: "postgres", tier: "critical", rpoSeconds: 300, rtoSeconds: 900, retention: { fullDays: 30, incrementalDays: 7, walDays: 7 } },
          { name: "nextcloud", engine: "volume", tier: "important", rpoSeconds: 3600, rtoSeconds: 900, retention: { fullDays: 30, incrementalDays: 7, walDays: 7 } },
        ],
        drRestoreCredentials: { accessKey: "kdr-prod-restore", secretKey: "primary-generated-restore-secret" },
        // What the prod stack exports for the warm standbys that Pulumi.dr.yaml declares.
        standbySources: ["postgresql", "timescaledb", "redis"].map((name) => ({
          name,
          engine: name === "redis" ? "redis" : "postgres",
          tier: "critical",
          host: `${name}.primary.kryonix.internal`,
          image: name === "redis" ? "redis:7-alpine" : "postgres:16-alpine",
          dataPath: name === "redis" ? "/data" : "/var/lib/postgresql/data",
          rpoSeconds: 300,
          rtoSeconds: 900,
          schedules: { full: "0 2 * * *", incremental: "*/15 * * * *" },
          retention: { fullDays: 30, incrementalDays: 7, walDays: 7 },
        })),
      },
    },
  });
  outputs = await runProgram();
});

const env = (r: Registration) => (r.inputs.taskSpec as { containerSpec: { env: Record<string, string> } }).containerSpec.env;

describe("dr stack", () => {
  it("references the primary stack named in config", () => {
    expect(one(regs, "pulumi:pulumi:StackReference", "primary").inputs.name).toBe("kryonix/kryonix-dr/prod");
  });

  it("drills the replicas in the DR region weekly, with buckets from the primary's outputs", async () => {
    const drill = byType(regs, "docker:index/service:Service").find((s) => labelsOf(s.inputs)[LABELS.role] === "cron-drill-dr")!;
    expect(env(drill)[AGENT_ENV.s3Endpoint]).toBe("https://s3.dr.kryonix.internal:9000");
    const jobs = JSON.parse(env(drill)[AGENT_ENV.cronJobs]!) as Array<{ name: string; schedule: string; command: string[] }>;
    expect(jobs.map((j) => j.name)).toEqual(["verify-postgresql", "restore-drill-postgresql", "verify-nextcloud", "restore-drill-nextcloud"]);
    const restoreNextcloud = jobs.find((j) => j.name === "restore-drill-nextcloud")!;
    expect(restoreNextcloud.schedule).toBe("0 4 * * 6");
    expect(restoreNextcloud.command.slice(0, 12)).toEqual(["restore", "--target", "/var/lib/kryonix-dr/drill/nextcloud", "--clean-target", "--service", "nextcloud", "--engine", "volume", "--tier", "important", "--s3-bucket", "kdr-prod-backups-important"]);
    expect(await promiseOf(outputs.drBuckets as pulumi.Output<unknown>)).toEqual(DR_BUCKETS);
  });

  it("declares a warm standby for each of failover.standbys, from the primary's standbySources", () => {
    expect(byType(regs, "kryonix:dr:WarmStandby").map((r) => r.name).sort()).toEqual(["standby-postgresql", "standby-redis", "standby-timescaledb"]);
  });

  it("passes the primary's restore credentials on as secrets only", () => {
    expect(plainLeaks(regs, ["primary-generated-restore-secret", ...secretKeys.map(testSecretValue)])).toEqual([]);
    for (const s of byType(regs, "docker:index/secret:Secret")) expect(isSecret(s.inputs.data)).toBe(true);
  });

  it("declares no storage of its own (the primary stack owns both ends of replication)", () => {
    expect(byType(regs, "minio:index/s3Bucket:S3Bucket")).toEqual([]);
    expect(byType(regs, "pulumi:providers:minio")).toEqual([]);
  });
});
