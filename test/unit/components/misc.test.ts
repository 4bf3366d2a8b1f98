/** CronJob, BackupCatalog, Monitoring, RecoveryJob, ProtectedService: shape and validation. */
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { AGENT_ENV, SECRET_FILES } from "../../../contract/index.js";
import { BackupCatalog, hashMigrations } from "../../../components/backup-catalog.js";
import { CronJob } from "../../../components/cron-job.js";
import { Monitoring, alertRules } from "../../../components/monitoring.js";
import { RecoveryJob, pointFlags, type RecoveryJobArgs } from "../../../components/recovery-job.js";
import { ProtectedService } from "../../../components/protected-service.js";
import { byType, isSecret, one, reveal, settle, setupMocks, type Registration } from "../../support/mocks.js";

describe("CronJob", () => {
  let regs: Registration[];
  beforeAll(async () => {
    regs = await setupMocks({ config: {} });
    new CronJob("c", {
      image: "agent",
      purpose: "maintenance",
      jobs: [
        { name: "health", schedule: "0 */2 * * *", command: ["health", "--all"] },
        { name: "prune", schedule: "0 3 * * 0", command: ["prune", "--all"] },
      ],
      env: { [AGENT_ENV.tenantId]: "t" },
      secrets: [{ file: SECRET_FILES.catalogPassword, value: pulumi.secret("pw") }],
    });
    await settle();
  });
  it("runs the agent in cron mode with its job list", () => {
    const spec = (one(regs, "docker:index/service:Service", "c-service").inputs.taskSpec as any).containerSpec;
    expect(spec.commands).toEqual(["node", "/opt/kryonix-dr/agent.cjs", "cron"]);
    expect(JSON.parse(spec.env[AGENT_ENV.cronJobs])).toEqual([
      { name: "health", schedule: "0 */2 * * *", command: ["health", "--all"] },
      { name: "prune", schedule: "0 3 * * 0", command: ["prune", "--all"] },
    ]);
    expect(isSecret(one(regs, "docker:index/secret:Secret", "c-catalog-password").inputs.data)).toBe(true);
  });
  it("rejects env that is not in the contract and duplicate job names", () => {
    expect(() => new CronJob("bad-env", { image: "a", purpose: "p", jobs: [{ name: "x", schedule: "* * * * *", command: ["x"] }], env: { PASSWORD: "x" } })).toThrow(
      "env PASSWORD is not in contract.AGENT_ENV; credentials go in 'secrets'",
    );
    expect(() => new CronJob("dup", { image: "a", purpose: "p", jobs: [{ name: "x", schedule: "* * * * *", command: ["x"] }, { name: "x", schedule: "* * * * *", command: ["y"] }] })).toThrow("jobs need unique lowercase names");
  });
  it("turns a recovery point into the agent's restore flags", () => {
    expect(pointFlags("latest")).toEqual([]);
    expect(pointFlags("2026-11-28T20:15:00.000Z")).toEqual(["--time", "2026-11-28T20:15:00.000Z"]);
    expect(pointFlags("0b6c2a8e-3f0a-4c11-9a57-0d2f8e6b1c44")).toEqual(["--backup-id", "0b6c2a8e-3f0a-4c11-9a57-0d2f8e6b1c44"]);
  });
});

describe("BackupCatalog", () => {
  it("hashes the migrations so a new one re-runs the step", () => {
    const dir = mkdtempSync(join(tmpdir(), "kdrtest-program-"));
    try {
      writeFileSync(join(dir, "001_a.sql"), "select 1;");
      const before = hashMigrations(dir);
      expect(hashMigrations(dir)).toBe(before);
      writeFileSync(join(dir, "002_b.sql"), "select 2;");
      expect(hashMigrations(dir)).not.toBe(before);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(hashMigrations()).toMatch(/^[0-9a-f]{64}$/);
  });

  it("migrates after the database exists and adds members only after the migration", async () => {
    await settle();
    const regs = await setupMocks({ config: {}, slow: { "command:local:Command": 100 } });
    new BackupCatalog("cat", { host: "h", ownerPassword: pulumi.secret("o"), readerPassword: pulumi.secret("r"), writerPassword: pulumi.secret("w") });
    await settle();
    const db = one(regs, "postgresql:index/database:Database", "cat-database");
    const migrate = one(regs, "command:local:Command", "cat-migrate");
    expect(migrate.seq).toBeGreaterThan(db.doneSeq!);
    for (const role of ["cat-writer", "cat-reader"]) expect(one(regs, "postgresql:index/role:Role", role).seq).toBeGreaterThan(migrate.doneSeq!);
    expect(one(regs, "postgresql:index/role:Role", "cat-owner").inputs.createRole).toBe(true);
    expect(one(regs, "postgresql:index/grant:Grant", "cat-revoke-public").inputs).toMatchObject({ role: "public", privileges: [] });
    expect(reveal<Record<string, string>>(migrate.inputs.environment)).toMatchObject({ PGHOST: "h", PGPORT: "5432", PGPASSWORD: "o" });
  });

  it("rejects a bad port", async () => {
    await settle();
    await setupMocks({ config: {} });
    expect(() => new BackupCatalog("bad", { host: "h", port: 70000, ownerPassword: "o", readerPassword: "r", writerPassword: "w" })).toThrow("kryonix-dr:catalog.port is 70000");
  });
});

describe("Monitoring", () => {
  it("derives alert thresholds from config", () => {
    const rules = alertRules({ rpoWarningRatio: 0.5, failedRunsPerDay: 3, replicationLagSeconds: 120 });
    expect(rules).toContain("max by (service) (kdr_rpo_target_seconds) * 0.5");
    expect(rules).toContain('increase(kdr_backup_failures_total{type!~"verify|restore"}[1d])) >= 3');
    expect(rules).toContain("kdr_replication_lag_seconds > 120");
    expect(rules).toContain(`summary: "the DR copy of the {{ $labels.tier }} backups is more than 120 s behind the primary (see the replicator's log)"`);
    expect(rules).toContain("increase(kdr_restic_repository_failures_total[1d]) > 0");
  });
  it("rejects a warning ratio outside (0, 1]", async () => {
    await settle();
    await setupMocks({ config: {} });
    expect(() => new Monitoring("m", { rpoWarningRatio: 2 })).toThrow("kryonix-dr:monitoring.rpoWarningRatio is 2; accepted: a number in (0, 1]");
  });
});

describe("RecoveryJob and ProtectedService", () => {
  const job = (point: string): RecoveryJobArgs => ({
    service: "redis",
    engine: "redis",
    tier: "critical",
    tenantId: "t",
    recoveryPoint: point,
    agentImage: "agent",
    image: "redis",
    serviceName: "kdr-r-redis",
    dataPath: "/data",
    rpoSeconds: 300,
    rtoSeconds: 900,
    s3: { endpoint: "http://s3", region: "r", bucket: "b", accessKey: pulumi.secret("a"), secretKey: pulumi.secret("s") },
    catalog: { host: "c", port: 5432, database: "d", user: "u", password: pulumi.secret("p") },
    encryptionIdentity: pulumi.secret("AGE-SECRET-KEY-1"),
  });
  it("rejects a recovery point that is not latest, a timestamp or a backup id", async () => {
    await settle();
    await setupMocks({ config: {} });
    expect(() => new RecoveryJob("bad", job("yesterday"))).toThrow('kryonix-dr:recovery.point is "yesterday"; accepted: latest, an ISO timestamp with zone, or a backup id (UUID)');
  });
  it("labels a declared service stateful with its targets and keeps its password in a secret file", async () => {
    await settle();
    const regs = await setupMocks({ config: {} });
    new ProtectedService("p", { service: "pg", engine: "postgres", tier: "critical", rpoSeconds: 60, rtoSeconds: 900, image: "pg", serviceName: "kdr-pg", dataPath: "/pgdata", password: pulumi.secret("pw") });
    await settle();
    const svc = byType(regs, "docker:index/service:Service")[0]!;
    const spec = (svc.inputs.taskSpec as any).containerSpec;
    expect(spec.env).toEqual({ POSTGRES_USER: "postgres", POSTGRES_PASSWORD_FILE: "/run/secrets/kdr-target-password", PGDATA: "/pgdata" });
    expect(spec.mounts).toEqual([{ type: "volume", source: "kdr-pg-data", target: "/pgdata" }]);
    expect(() => new ProtectedService("q", { service: "pg", engine: "postgres", tier: "critical", rpoSeconds: 60, rtoSeconds: 900, image: "pg", serviceName: "kdr-pg2", dataPath: "/d" })).toThrow(
      "kryonix-dr:targetPassword-<service>",
    );
  });
});
