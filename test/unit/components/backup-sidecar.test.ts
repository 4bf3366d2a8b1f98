import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { AGENT_ENV, LABELS } from "../../../contract/index.js";
import { BackupSidecar, type BackupSidecarArgs } from "../../../components/backup-sidecar.js";
import { byType, isSecret, labelsOf, one, plainLeaks, settle, setupMocks, type Registration } from "../../support/mocks.js";

const SECRETS = { s3a: "AK-sidecar-x", s3s: "SK-sidecar-x", cat: "catalog-pw-x", age: "age1recipientx", pw: "target-pw-x", restic: "restic-pw-x" };

const base = (over: Partial<BackupSidecarArgs> = {}): BackupSidecarArgs => ({
  service: "pg",
  engine: "postgres",
  tier: "critical",
  tenantId: "00000000-0000-0000-0000-000000000001",
  image: "kryonix-dr/agent:test",
  serviceName: "kdr-t-pg-backup",
  rpoSeconds: 300,
  rtoSeconds: 900,
  schedules: { full: "0 2 * * *", incremental: "" },
  retention: { fullDays: 30, incrementalDays: 7, walDays: 7 },
  target: { host: "pg", port: 5432, user: "replicator", password: pulumi.secret(SECRETS.pw) },
  s3: { endpoint: "http://s3:9000", region: "r1", bucket: "b", accessKey: pulumi.secret(SECRETS.s3a), secretKey: pulumi.secret(SECRETS.s3s) },
  catalog: { host: "catalog", port: 5432, database: "kryonix_dr", user: "kryonix_dr_agent", password: pulumi.secret(SECRETS.cat) },
  encryptionRecipient: pulumi.secret(SECRETS.age),
  ...over,
});

describe("BackupSidecar", () => {
  let regs: Registration[];
  beforeAll(async () => {
    regs = await setupMocks({ config: {} });
    new BackupSidecar("pg", base());
    new BackupSidecar("files", {
      ...base({ service: "files", engine: "volume", target: undefined, serviceName: "kdr-t-files-backup" }),
      volume: { source: "files_data", path: "/data" },
      resticPassword: pulumi.secret(SECRETS.restic),
      hooks: { pre: "sync" },
    });
    await settle();
  });

  it("runs the agent in serve mode with env from contract.AGENT_ENV only", () => {
    const svc = one(regs, "docker:index/service:Service", "pg-service");
    const spec = (svc.inputs.taskSpec as any).containerSpec;
    expect(spec.commands).toEqual(["node", "/opt/kryonix-dr/agent.cjs", "serve"]);
    for (const k of Object.keys(spec.env)) expect(Object.values(AGENT_ENV)).toContain(k);
    expect(spec.env).toMatchObject({ [AGENT_ENV.targetHost]: "pg", [AGENT_ENV.targetPort]: "5432", [AGENT_ENV.walSwitchSeconds]: "30", [AGENT_ENV.s3Bucket]: "b" });
    expect(labelsOf(svc.inputs)).toMatchObject({ [LABELS.protects]: "pg", [LABELS.role]: "sidecar", [LABELS.managed]: "true" });
  });

  it("mounts credentials as Swarm secret files, never env", () => {
    expect(plainLeaks(regs, Object.values(SECRETS))).toEqual([]);
    const pgSecrets = byType(regs, "docker:index/secret:Secret").filter((s) => s.name.startsWith("pg-")).map((s) => s.name).sort();
    expect(pgSecrets).toEqual(["pg-age-recipient", "pg-catalog-password", "pg-s3-access-key", "pg-s3-secret-key", "pg-target-password"]);
    for (const s of byType(regs, "docker:index/secret:Secret")) expect(isSecret(s.inputs.data)).toBe(true);
    const files = (one(regs, "docker:index/service:Service", "pg-service").inputs.taskSpec as any).containerSpec.secrets;
    expect(files.map((f: { fileName: string; fileMode: number }) => [f.fileName, f.fileMode])).toContainEqual(["kdr-target-password", 0o400]);
  });

  it("mounts a volume service's data read-only and passes its hooks", () => {
    const spec = (one(regs, "docker:index/service:Service", "files-service").inputs.taskSpec as any).containerSpec;
    expect(spec.mounts).toContainEqual({ type: "volume", source: "files_data", target: "/data", readOnly: true });
    expect(spec.env[AGENT_ENV.hookPre]).toBe("sync");
    expect(spec.env[AGENT_ENV.volumePath]).toBe("/data");
    expect(spec.env[AGENT_ENV.targetHost]).toBeUndefined();
  });
});

describe("BackupSidecar validation", () => {
  beforeAll(async () => {
    await setupMocks({ config: {} });
  });
  it("rejects an unknown engine with the accepted values", () => {
    expect(() => new BackupSidecar("x", base({ engine: "mongodb" as never }))).toThrow('kryonix-dr:services[].engine is "mongodb"; accepted: postgres, redis, volume');
  });
  it("rejects a volume sidecar without its volume", () => {
    expect(() => new BackupSidecar("y", base({ engine: "volume", target: undefined }))).toThrow("kryonix-dr:services[].volume");
  });
  it("rejects a postgres sidecar without the target password", () => {
    expect(() => new BackupSidecar("z", base({ target: { host: "pg", port: 5432 } }))).toThrow("kryonix-dr:targetPassword-<service>");
  });
});
