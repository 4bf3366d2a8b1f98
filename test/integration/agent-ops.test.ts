/**
 * The agent's operational modes against real Redis, catalog and RGW: object-lock retention on
 * upload, prune (delete markers, the newest good full kept), cron mode with /metrics and
 * /healthz, and replicate (new versions copied with their retention to a second bucket).
 */
import {
  AbortMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  GetObjectRetentionCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentWorld, makeBucket, type AgentWorld, type TestBucket } from "../support/s3.js";
import { freePort } from "../support/tmp-postgres.js";
import { startTmpRedis, type TmpRedis } from "../support/tmp-redis.js";

let w: AgentWorld;
let redis: TmpRedis;
let replica: TestBucket;
let env: Record<string, string>;
const SERVICE = "redis-ops";

beforeAll(async () => {
  w = await agentWorld("kdrtest-agent-ops");
  replica = await makeBucket("kdrtest-agent-ops-dr", "dr");
  redis = await startTmpRedis();
  writeFileSync(path.join(w.secretDir, "kdr-target-password"), redis.password + "\n", { mode: 0o600 });
  writeFileSync(path.join(w.secretDir, "kdr-replica-s3-access-key"), replica.accessKey + "\n");
  writeFileSync(path.join(w.secretDir, "kdr-replica-s3-secret-key"), replica.secretKey + "\n");
  env = w.env(SERVICE, { KDR_ENGINE: "redis", KDR_TARGET_HOST: redis.host, KDR_TARGET_PORT: String(redis.port) });
});

afterAll(async () => {
  await redis?.stop();
  await replica?.remove();
  await w?.close();
});

async function sha(b: TestBucket, key: string, versionId?: string): Promise<string> {
  const o = await b.client.send(new GetObjectCommand({ Bucket: b.bucket, Key: key, VersionId: versionId }));
  return createHash("sha256").update(await o.Body!.transformToByteArray()).digest("hex");
}

describe("agent: retention, prune, cron, replicate", () => {
  const ids: string[] = [];

  it("uploads under object-lock retention that matches the class's retention days", async () => {
    const r = await w.run(["backup", "--json"], { ...env, KDR_LOCK_MODE: "GOVERNANCE", KDR_RETENTION_FULL_DAYS: "1" });
    expect(r.code, r.stderr).toBe(0);
    const b = JSON.parse(r.stdout);
    ids.push(b.backupId);
    const ret = await w.bucket.client.send(new GetObjectRetentionCommand({ Bucket: w.bucket.bucket, Key: b.artifacts[0].key, VersionId: b.artifacts[0].versionId }));
    expect(ret.Retention?.Mode).toBe("GOVERNANCE");
    const days = (ret.Retention!.RetainUntilDate!.getTime() - Date.now()) / 86400_000;
    expect(days).toBeGreaterThan(0.99);
    expect(days).toBeLessThan(1.01);
  });

  it("a backup first aborts the multipart uploads a killed run left under its own prefixes, and nothing else", async () => {
    const B = w.bucket.bucket;
    const begin = async (Key: string) => {
      const u = await w.bucket.client.send(new CreateMultipartUploadCommand({ Bucket: B, Key }));
      await w.bucket.client.send(new UploadPartCommand({ Bucket: B, Key, UploadId: u.UploadId, PartNumber: 1, Body: Buffer.alloc(64 * 1024, 7) }));
      return u.UploadId!;
    };
    const dead = `full/${SERVICE}/dead-run/dump.rdb.zst.age`;
    await begin(dead);
    // A WAL segment upload begun a moment ago may be the streamer's, in flight: kept.
    const walNow = `wal/${SERVICE}/000000010000000000000001.zst.age`;
    const walId = await begin(walNow);
    const other = `full/another-service/x/dump.rdb.zst.age`;
    const otherId = await begin(other);
    const open = async () => ((await w.bucket.client.send(new ListMultipartUploadsCommand({ Bucket: B }))).Uploads ?? []).map((u) => u.Key).sort();
    expect(await open()).toEqual([dead, other, walNow].sort());

    const r = await w.run(["backup", "--type", "full", "--json"], env);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).staleUploadsAborted).toEqual([dead]);
    expect(await open()).toEqual([other, walNow].sort());
    await w.bucket.client.send(new AbortMultipartUploadCommand({ Bucket: B, Key: walNow, UploadId: walId }));
    await w.bucket.client.send(new AbortMultipartUploadCommand({ Bucket: B, Key: other, UploadId: otherId }));
  });

  it("prune expires backups past retention with delete markers and keeps the newest good full", async () => {
    for (let i = 0; i < 2; i++) {
      const r = await w.run(["backup", "--json"], { ...env, KDR_RETENTION_FULL_DAYS: "0" });
      expect(r.code, r.stderr).toBe(0);
      ids.push(JSON.parse(r.stdout).backupId);
    }
    // ids[0] is locked for a day and its retention_until is a day away: not due yet.
    const p = await w.run(["prune", "--json"], env);
    expect(p.code, p.stderr).toBe(0);
    const sum = JSON.parse(p.stdout);
    expect(sum.expired).toEqual([ids[1]]);
    expect(sum.kept).toEqual([ids[2]]);
    const rows = (await w.db.query("SELECT backup_id, backup_status FROM backup_management WHERE service_name = $1", [SERVICE])).rows;
    const st = Object.fromEntries(rows.map((r) => [r.backup_id, r.backup_status]));
    expect([st[ids[0]!], st[ids[1]!], st[ids[2]!]]).toEqual(["completed", "expired", "completed"]);
    const v = await w.bucket.client.send(new ListObjectVersionsCommand({ Bucket: w.bucket.bucket, Prefix: `full/${SERVICE}/${ids[1]}/` }));
    expect((v.DeleteMarkers ?? []).length).toBe(2); // dump.rdb and manifest.json
    const restored = await w.run(["restore", "--target", path.join(w.root, "after-prune")], env);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stdout).toContain(ids[2]);
  });

  it("cron mode runs agent commands on their schedules and exposes /metrics and /healthz", async () => {
    const port = await freePort();
    const jobs = [
      { name: "backup", schedule: "*/3 * * * * *", command: ["backup", "--service", SERVICE] },
      { name: "verify", schedule: "*/4 * * * * *", command: ["verify", "--service", SERVICE] },
      { name: "health", schedule: "*/2 * * * * *", command: ["health", "--service", SERVICE, "--rpo-seconds", "600"] },
    ];
    const before = Number((await w.db.query("SELECT count(*) FROM backup_management WHERE service_name = $1 AND backup_status = 'completed'", [SERVICE])).rows[0].count);
    const cron = w.start(["cron"], { ...env, KDR_CRON_JOBS: JSON.stringify(jobs), KDR_METRICS_PORT: String(port) });
    try {
      let metrics = "";
      const completed = async () => Number((await w.db.query("SELECT count(*) FROM backup_management WHERE service_name = $1 AND backup_status = 'completed'", [SERVICE])).rows[0].count);
      // A chain of fresh agent processes on two cores: a backup, a verify of it, a health run after
      // that verify. Seconds each, usually; a minute and a half before giving up.
      for (const deadline = Date.now() + 90_000; Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 500));
        metrics = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()).catch(() => "");
        if (/kdr_recovery_point_timestamp_seconds\{service="redis-ops"\}/.test(metrics) && /kdr_backup_last_verified_timestamp_seconds\{service="redis-ops"\}/.test(metrics) && (await completed()) > before) break;
      }
      expect(metrics, cron.output()).toMatch(/kdr_rpo_target_seconds\{service="redis-ops"\} 600/);
      // The newest verified point as unix time, from the health job's JSON: a moment, not an age.
      const point = Number(/kdr_recovery_point_timestamp_seconds\{service="redis-ops"\} ([\d.e+]+)/.exec(metrics)?.[1]);
      expect(point * 1000).toBeGreaterThan(Date.now() - 600_000);
      expect(point * 1000).toBeLessThanOrEqual(Date.now());
      expect(await completed()).toBeGreaterThan(before);
      const hz = await w.run(["healthz"], { ...env, KDR_METRICS_PORT: String(port) });
      expect(hz.code).toBe(0);
      expect(hz.stdout).toMatch(/"ok":true/);
    } finally {
      cron.kill("SIGTERM");
      await new Promise((r) => cron.once("close", r));
    }
    const none = await w.run(["healthz"], { ...env, KDR_METRICS_PORT: String(port) });
    expect(none.code).toBe(1);
  }, 150_000);

  it("list shows the runs with status, size, measured ratio and verification", async () => {
    const text = await w.run(["list"], env);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`${ids[1]}  redis-ops  full\\s+expired`));
    expect(text.stdout).toMatch(/completed .* ratio \d+\.\d+ .*(verify passed|unverified)/);
    const json = JSON.parse((await w.run(["list", "--json"], env)).stdout) as { backupId: string; compressionRatio: number }[];
    expect(json.map((r) => r.backupId)).toEqual(expect.arrayContaining(ids));
  });

  it("migrate applies the catalog migrations (nothing left to apply here) and needs the owner's rights", async () => {
    const dir = path.join(w.root, "owner-secrets");
    mkdirSync(dir);
    writeFileSync(path.join(dir, "kdr-catalog-password"), w.catalog.password + "\n");
    const r = await w.run(["migrate"], { ...env, KDR_SECRET_DIR: dir, KDR_CATALOG_USER: "postgres", KDR_MIGRATIONS_DIR: path.resolve(__dirname, "../../catalog/migrations") });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/catalog migrations: applied 0 \(none\), already applied \d+/);
  });

  it("replicate copies every new object version, with its retention, once", async () => {
    const renv = { ...env, KDR_REPLICA_S3_ENDPOINT: replica.endpoint, KDR_REPLICA_S3_BUCKET: replica.bucket, KDR_REPLICA_S3_REGION: replica.region };
    const r1 = await w.run(["replicate", "--once"], renv);
    expect(r1.code, r1.stderr).toBe(0);
    const src = await w.bucket.client.send(new ListObjectVersionsCommand({ Bucket: w.bucket.bucket }));
    const dst = await replica.client.send(new ListObjectVersionsCommand({ Bucket: replica.bucket }));
    const srcLive = (src.Versions ?? []).filter((v) => v.IsLatest);
    for (const v of srcLive) {
      const d = (dst.Versions ?? []).find((x) => x.Key === v.Key && x.IsLatest);
      expect(d, v.Key).toBeTruthy();
      expect(await sha(replica, v.Key!, d!.VersionId)).toBe(await sha(w.bucket, v.Key!, v.VersionId));
    }
    expect((dst.Versions ?? []).length).toBe((src.Versions ?? []).length);
    // The locked backup keeps its lock on the replica.
    const [locked] = (await w.db.query("SELECT object_key FROM backup_artifact WHERE backup_id = $1 AND role = 'rdb'", [ids[0]])).rows;
    const ret = await replica.client.send(new GetObjectRetentionCommand({ Bucket: replica.bucket, Key: locked.object_key }));
    expect(ret.Retention?.Mode).toBe("GOVERNANCE");
    const r2 = await w.run(["replicate", "--once"], renv);
    expect(r2.stderr).toMatch(/copied 0 new version/);
  });
});
