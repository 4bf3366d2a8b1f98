import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { Replication, type ReplicationArgs } from "../../../components/replication.js";
import { byType, isSecret, plainLeaks, reveal, settle, setupMocks } from "../../support/mocks.js";

const args = (mode: ReplicationArgs["mode"]): ReplicationArgs => ({
  mode,
  pairs: [{ tier: "critical", source: "p-critical", target: "d-critical" }],
  source: { endpoint: "https://s3.a:9000", region: "a", accessKey: pulumi.secret("src-ak"), secretKey: pulumi.secret("src/sk+") },
  target: { endpoint: "https://s3.b:9000", region: "b", accessKey: pulumi.secret("dst-ak"), secretKey: pulumi.secret("dst-sk") },
  image: "kryonix-dr/agent:test",
  catalog: { host: "catalog", port: 5432, database: "kryonix_dr", user: "kdr_writer", password: pulumi.secret("cat-pw") },
});

describe("Replication", () => {
  it("native: mc replicate add/rm with credentials only in secret env (URL-encoded)", async () => {
    const regs = await setupMocks({ config: {} });
    new Replication("r", args("native"));
    await settle();
    const [cmd] = byType(regs, "command:local:Command");
    expect(cmd!.inputs.create).toBe('mc replicate add kdrsrc/p-critical --remote-bucket "$KDR_REPLICATION_TARGET" --replicate "existing-objects,metadata-sync" --priority 1');
    expect(isSecret(cmd!.inputs.environment)).toBe(true);
    expect(reveal<Record<string, string>>(cmd!.inputs.environment)).toEqual({
      MC_HOST_kdrsrc: "https://src-ak:src%2Fsk%2B@s3.a:9000",
      KDR_REPLICATION_TARGET: "https://dst-ak:dst-sk@s3.b:9000/d-critical",
    });
    expect(plainLeaks(regs, ["src-ak", "dst-sk"])).toEqual([]);
  });

  it("replicator: one agent service per bucket pair, credentials as files", async () => {
    await settle();
    const regs = await setupMocks({ config: {} });
    new Replication("r", args("replicator"));
    await settle();
    const [svc] = byType(regs, "docker:index/service:Service");
    const spec = (svc!.inputs.taskSpec as any).containerSpec;
    // The catalog is where each copy's DR version id is recorded (restores from DR read it).
    expect(spec.env).toMatchObject({ KDR_S3_BUCKET: "p-critical", KDR_REPLICA_S3_BUCKET: "d-critical", KDR_REPLICA_S3_ENDPOINT: "https://s3.b:9000", KDR_REPLICA_S3_REGION: "b", KDR_CATALOG_HOST: "catalog", KDR_CATALOG_USER: "kdr_writer" });
    expect(spec.secrets.map((s: { fileName: string }) => s.fileName).sort()).toEqual(["kdr-catalog-password", "kdr-replica-s3-access-key", "kdr-replica-s3-secret-key", "kdr-s3-access-key", "kdr-s3-secret-key"]);
    expect(plainLeaks(regs, ["src-ak", "src/sk+", "dst-ak", "dst-sk", "cat-pw"])).toEqual([]);
  });

  describe("validation", () => {
    beforeAll(async () => {
      await settle();
      await setupMocks({ config: {} });
    });
    it("rejects an unknown mode", () => {
      expect(() => new Replication("x", args("rsync" as never))).toThrow('kryonix-dr:replication.mode is "rsync"; accepted: native, replicator');
    });
    it("needs the agent image for the replicator", () => {
      expect(() => new Replication("y", { ...args("replicator"), image: undefined })).toThrow("kryonix-dr:images.agent");
      expect(() => new Replication("z", { ...args("replicator"), catalog: undefined })).toThrow(/needs the catalog/);
    });
  });
});
