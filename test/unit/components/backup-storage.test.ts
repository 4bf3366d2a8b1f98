import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { BACKUP_CLASSES } from "../../../contract/index.js";
import { byType, one, promiseOf, settle, setupMocks, type Registration } from "../../support/mocks.js";
import {
  BackupStorage,
  lifecycleRules,
  lockDaysFor,
  prunePolicy,
  replicationTargetPolicy,
  restorePolicy,
  sidecarPolicy,
  type BackupStorageArgs,
  type StorageService,
} from "../../../components/backup-storage.js";

const pg: StorageService = { name: "pg", tier: "critical", engine: "postgres", retention: { fullDays: 30, incrementalDays: 7, walDays: 14 } };
const files: StorageService = { name: "files", tier: "critical", engine: "volume", retention: { fullDays: 45, incrementalDays: 7, walDays: 7 } };
const cache: StorageService = { name: "cache", tier: "secondary", engine: "redis", retention: { fullDays: 3, incrementalDays: 1, walDays: 1 } };

const args = (over: Partial<BackupStorageArgs> = {}): BackupStorageArgs => ({
  region: "r1",
  endpoint: "https://s3.example:9000",
  adminAccessKey: pulumi.secret("admin"),
  adminSecretKey: pulumi.secret("admin-secret"),
  bucketPrefix: "kdr-t-backups",
  services: [pg, files, cache],
  namePrefix: "kdr-t",
  access: { sidecars: true, restore: true, prune: true, replicationTarget: true },
  ...over,
});

describe("lock and lifecycle derivation", () => {
  it("locks a tier bucket as long as its longest class retention", () => {
    expect(lockDaysFor([pg, files])).toBe(45);
    expect(lockDaysFor([cache])).toBe(3);
  });

  it("writes one rule per class and service plus the delete-marker cleanup", () => {
    const rules = lifecycleRules([pg, files], 45);
    expect(rules).toHaveLength(2 * BACKUP_CLASSES.length + 1);
    expect(rules.find((r) => r.id === "wal-pg")).toEqual({ id: "wal-pg", status: "Enabled", filter: "wal/pg/", expiration: "14d", noncurrentVersionExpirationDays: 45 });
    expect(rules.find((r) => r.id === "restic-files")!.expiration).toBe("DeleteMarker");
  });
});

describe("IAM policies", () => {
  // What a policy grants: its Allow statements (the Deny ones are checked on their own).
  const actions = (doc: string) => (JSON.parse(doc).Statement as Array<{ Effect: string; Action: string[]; Resource: string[] }>).filter((s) => s.Effect === "Allow");
  const denies = (doc: string) => (JSON.parse(doc).Statement as Array<{ Effect: string; Action: string[]; Resource: string[] }>).filter((s) => s.Effect === "Deny");

  it("a postgres sidecar cannot delete anything", () => {
    const all = actions(sidecarPolicy("b", pg)).flatMap((s) => s.Action);
    expect(all.filter((a) => /Delete|Bypass|Retention|Lifecycle/.test(a))).toEqual([]);
  });

  it("sidecar and prune users are denied every way to lift or shorten a lock, on every object", () => {
    for (const doc of [sidecarPolicy("b", pg), sidecarPolicy("b", files), prunePolicy(["a", "b"])]) {
      const d = denies(doc);
      expect(d).toHaveLength(1);
      expect(d[0]!.Action.sort()).toEqual(["s3:BypassGovernanceRetention", "s3:DeleteObjectVersion", "s3:PutObjectLegalHold", "s3:PutObjectRetention"]);
      for (const r of d[0]!.Resource) expect(r).toMatch(/^arn:aws:s3:::[ab]\/\*$/);
    }
  });

  it("a volume sidecar may delete only restic's lock files", () => {
    const deletes = actions(sidecarPolicy("b", files)).filter((s) => s.Action.includes("s3:DeleteObject"));
    expect(deletes).toEqual([expect.objectContaining({ Resource: ["arn:aws:s3:::b/restic/files/g*/locks/*"] })]);
  });

  it("restore reads only; prune deletes (markers) but never versions and writes only restic; the replication writer never deletes", () => {
    expect(actions(restorePolicy(["a", "b"])).flatMap((s) => s.Action).filter((a) => !/^s3:(Get|List)/.test(a))).toEqual([]);
    const prune = actions(prunePolicy(["a"]));
    expect(prune.flatMap((s) => s.Action).filter((a) => /DeleteObjectVersion|Bypass|Retention|Lifecycle/.test(a))).toEqual([]);
    for (const s of prune) if (s.Action.includes("s3:PutObject")) expect(s.Resource).toEqual(["arn:aws:s3:::a/restic/*"]);
    expect(actions(replicationTargetPolicy(["a"])).flatMap((s) => s.Action).filter((a) => /Delete|Bypass/.test(a))).toEqual([]);
  });
});

describe("BackupStorage component", () => {
  let regs: Registration[];
  let storage: BackupStorage;
  beforeAll(async () => {
    regs = await setupMocks({ config: {} });
    storage = new BackupStorage("s", args({ quotaGiB: { critical: 10 } }));
    await settle();
  });

  it("declares one bucket per tier in use, with derived default retention", async () => {
    expect(byType(regs, "minio:index/s3Bucket:S3Bucket").map((b) => b.inputs.bucket).sort()).toEqual(["kdr-t-backups-critical", "kdr-t-backups-secondary"]);
    expect(storage.lockDays).toEqual({ critical: 45, secondary: 3 });
    expect(one(regs, "command:local:Command", "s-critical-default-retention").inputs.create).toBe(
      "node bin/kryonix-dr.mjs s3 put-default-retention --bucket kdr-t-backups-critical --mode GOVERNANCE --days 45",
    );
    expect(one(regs, "minio:index/s3Bucket:S3Bucket", "s-critical").inputs.quota).toBe(10 * 1024 ** 3);
    expect(one(regs, "minio:index/s3Bucket:S3Bucket", "s-secondary").inputs.quota).toBeUndefined();
    expect(await promiseOf(storage.buckets.critical!)).toBe("kdr-t-backups-critical");
  });

  it("names children after the component, parented to it", () => {
    const custom = regs.filter((r) => r.custom && !r.type.startsWith("pulumi:"));
    for (const r of custom) expect(r.name.startsWith("s-")).toBe(true);
    expect(one(regs, "kryonix:storage:BackupStorage", "s").custom).toBe(false);
  });

  it("returns credentials as secrets", async () => {
    expect(await pulumi.isSecret(storage.sidecarCredentials.pg!.secretKey)).toBe(true);
    expect(await pulumi.isSecret(storage.restoreCredentials!.accessKey)).toBe(true);
  });
});

describe("BackupStorage validation", () => {
  beforeAll(async () => {
    await setupMocks({ config: {} });
  });
  it("rejects an unknown lock mode, naming the key and the accepted values", () => {
    expect(() => new BackupStorage("bad", args({ lockMode: "SOFT" as never }))).toThrow('kryonix-dr:storage.lockMode is "SOFT"; accepted: GOVERNANCE, COMPLIANCE');
  });
  it("rejects an empty service list", () => {
    expect(() => new BackupStorage("empty", args({ services: [] }))).toThrow("kryonix-dr:services is empty");
  });
  it("declares only users on existing buckets", async () => {
    // Let the rejected components' registrations finish before the monitor is replaced.
    await settle();
    const regs = await setupMocks({ config: {} });
    new BackupStorage("existing", args({ existingBuckets: true, access: { restore: true } }));
    await settle();
    expect(byType(regs, "minio:index/s3Bucket:S3Bucket")).toEqual([]);
    expect(byType(regs, "minio:index/iamUser:IamUser").map((u) => u.inputs.name)).toEqual(["kdr-t-restore"]);
  });
});
