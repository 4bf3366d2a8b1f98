/**
 * catalog/queries.ts against a real PostgreSQL 15: the run lifecycle, reconciliation of dead
 * runs, the WAL archive, and recovery plans (base + WAL) for latest and for a point in time.
 */
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate } from "../../catalog/migrate.js";
import * as q from "../../catalog/queries.js";
import { startTmpPostgres, type TmpPostgres } from "../support/tmp-postgres.js";

const MIGRATIONS = path.join(__dirname, "../../catalog/migrations");
const T = "44444444-4444-4444-8444-444444444444";
const sha = (n: number) => n.toString(16).padStart(64, "0");
const T0 = new Date("2026-03-01T00:00:00Z");
const at = (s: number) => new Date(T0.getTime() + s * 1000);

let server: TmpPostgres;
let db: pg.Pool;

async function fullBackup(
  service: string,
  o: { rpEnd: Date; startLsn?: string; endLsn?: string; type?: q.BackupType; parent?: string; engine?: "postgres" | "redis" | "volume"; metadata?: Record<string, unknown> },
): Promise<q.BackupRow> {
  const b = await q.createBackup(db, {
    tenantId: T, service, type: o.type ?? "full", engine: o.engine ?? "postgres", bucket: "kdr-primary",
    prefix: `${o.type ?? "full"}/${service}/x/`, region: "primary", parentBackupId: o.parent, tool: "pg_basebackup", toolVersion: "15.20",
  });
  await q.markRunning(db, b.backupId);
  return q.completeBackup(db, b.backupId, {
    rawSize: 4000, storedSize: 1000, recoveryPointStart: new Date(o.rpEnd.getTime() - 5000), recoveryPointEnd: o.rpEnd,
    timeline: o.startLsn ? 1 : undefined, startLsn: o.startLsn, endLsn: o.endLsn, encryptionKeyId: "age1test", metadata: o.metadata,
    artifacts: [
      { role: "base", objectKey: `full/${service}/${b.backupId}/base.tar.zst.age`, sha256: sha(1), sizeBytes: 900, rawSize: 3900 },
      { role: "manifest", objectKey: `full/${service}/${b.backupId}/manifest.json`, sha256: sha(2), sizeBytes: 100, rawSize: 100 },
    ],
  });
}

async function wal(service: string, segno: number, coversUntil: Date, opts: { partial?: boolean; sha?: string; rawSha?: string; key?: string } = {}) {
  const name = q.walFileName(1, BigInt(segno)) + (opts.partial ? ".partial" : "");
  return q.recordWalSegment(db, {
    tenantId: T, service, timeline: 1, segmentName: name, objectKey: opts.key ?? `wal/${service}/${name}.zst.age`,
    sha256: opts.sha ?? sha(1000 + segno), sizeBytes: 4096, rawSize: 16 * 1024 * 1024, rawSha256: opts.rawSha, coversUntil,
  });
}

const names = (segs: q.WalSegmentRow[]) => segs.map((s) => s.segmentName);

beforeAll(async () => {
  server = await startTmpPostgres();
  db = new pg.Pool({ connectionString: server.url, max: 4 });
  const c = await db.connect();
  try {
    await migrate(c, { dir: MIGRATIONS });
  } finally {
    c.release();
  }
});
afterAll(async () => {
  await db?.end();
  await server?.stop();
});

describe("backup run lifecycle", () => {
  it("pending -> running -> completed records measured sizes, ratio, artifacts, location, LSNs, tool and key", async () => {
    const b = await q.createBackup(db, { tenantId: T, service: "life", type: "full", engine: "postgres", bucket: "kdr-primary", prefix: "full/life/1/", region: "primary" });
    expect(b).toMatchObject({ backupStatus: "pending", startedAt: null, backupLocation: "s3://kdr-primary/full/life/1/" });
    expect(b.runHost).toBeTruthy();
    expect(b.runPid).toBe(process.pid);
    const r = await q.markRunning(db, b.backupId);
    expect(r.backupStatus).toBe("running");
    expect(r.startedAt).toBeInstanceOf(Date);
    const c = await q.completeBackup(db, b.backupId, {
      rawSize: 10_000, storedSize: 3_100, recoveryPointStart: at(0), recoveryPointEnd: at(3), startLsn: "0/3000028", endLsn: "0/3000138", timeline: 1,
      tool: "pg_basebackup", toolVersion: "15.20", encryptionKeyId: "age1abc",
      artifacts: [
        { role: "base", objectKey: "full/life/1/base.tar.zst.age", versionId: "v1", sha256: sha(7), sizeBytes: 3_000, rawSize: 9_900 },
        { role: "manifest", objectKey: "full/life/1/manifest.json", sha256: sha(8), sizeBytes: 100, rawSize: 100 },
      ],
      metadata: { walIncluded: true },
    });
    expect(c).toMatchObject({
      backupStatus: "completed", rawSize: 10_000, backupSize: 3_100, compressionRatio: 0.31, startLsn: "0/3000028", endLsn: "0/3000138",
      tool: "pg_basebackup", toolVersion: "15.20", encryptionKeyId: "age1abc", recoveryPointEnd: at(3), storageRegion: "primary", metadata: { walIncluded: true },
    });
    expect(c.durationSeconds).toBeGreaterThanOrEqual(0);
    expect(c.checksum).toBeNull(); // two artifacts and no primary checksum given: each has its own
    const arts = await q.listArtifacts(db, b.backupId);
    expect(arts.map((a) => [a.role, a.objectKey, a.versionId, a.sha256, a.sizeBytes])).toEqual([
      ["base", "full/life/1/base.tar.zst.age", "v1", sha(7), 3_000],
      ["manifest", "full/life/1/manifest.json", null, sha(8), 100],
    ]);
    expect((await q.listBackups(db, { service: "life" })).map((x) => x.backupId)).toEqual([b.backupId]);
    expect(await q.latestGoodBackup(db, "life")).toMatchObject({ backupId: b.backupId });
  });

  it("completion is all or nothing: a failing artifact insert leaves the run running with no artifacts", async () => {
    const b = await q.createBackup(db, { tenantId: T, service: "atomic", type: "full", bucket: "kdr", prefix: "p/" });
    await q.markRunning(db, b.backupId);
    await q.addArtifacts(db, b.backupId, [{ role: "base", objectKey: "p/base", sha256: sha(1), sizeBytes: 1 }]);
    // The same key again collides with the recorded one inside the completing statement.
    await expect(
      q.completeBackup(db, b.backupId, { storedSize: 2, recoveryPointEnd: at(1), artifacts: [{ role: "wal", objectKey: "p/w", sha256: sha(2), sizeBytes: 1 }, { role: "base", objectKey: "p/base", sha256: sha(3), sizeBytes: 1 }] }),
    ).rejects.toThrow(/duplicate key/);
    expect((await q.getBackup(db, b.backupId))!.backupStatus).toBe("running");
    expect((await q.listArtifacts(db, b.backupId)).map((a) => a.objectKey)).toEqual(["p/base"]);
  });

  it("bad input is refused with what is wrong and how to fix it", async () => {
    await expect(q.createBackup(db, { tenantId: "nope", service: "x", type: "full", bucket: "b", prefix: "p" })).rejects.toThrow(/tenantId must be a UUID/);
    await expect(q.createBackup(db, { tenantId: T, service: "Bad Name", type: "full", bucket: "b", prefix: "p" })).rejects.toThrow(/service name 'Bad Name' is invalid: use lowercase/);
    await expect(q.createBackup(db, { tenantId: T, service: "x", type: "snapshot" as q.BackupType, bucket: "b", prefix: "p" })).rejects.toThrow(/unknown: use one of full, incremental/);
    const b = await q.createBackup(db, { tenantId: T, service: "badinput", type: "full", bucket: "b", prefix: "p" });
    await q.markRunning(db, b.backupId);
    await expect(q.completeBackup(db, b.backupId, { storedSize: 1, recoveryPointEnd: at(1), artifacts: [{ role: "base", objectKey: "k", sha256: "ABC", sizeBytes: 1 }] })).rejects.toThrow(
      /64 lowercase hex characters; got 'ABC'/,
    );
    await expect(q.completeBackup(db, b.backupId, { storedSize: -1, recoveryPointEnd: at(1), artifacts: [] })).rejects.toThrow(/storedSize must be a whole number of bytes/);
    await expect(q.completeBackup(db, b.backupId, { storedSize: 1, recoveryPointEnd: at(1), startLsn: "zz", artifacts: [] })).rejects.toThrow(/not a PostgreSQL LSN/);
    await expect(q.markRunning(db, b.backupId)).rejects.toThrow(/cannot start backup .*: it is running, not pending/);
    const failed = await q.failBackup(db, b.backupId, new Error("S3 said no"));
    expect(failed).toMatchObject({ backupStatus: "failed", errorMessage: "S3 said no" });
    expect(failed.failedAt).toBeInstanceOf(Date);
    await expect(q.recordVerification(db, b.backupId, { status: "passed" })).rejects.toThrow(/it is failed \(S3 said no\), not completed/);
  });
});

describe("reconcileStaleRuns", () => {
  it("fails runs whose agent stopped reporting, with a reason; the dead agent's late result is refused", async () => {
    const dead = await q.createBackup(db, { tenantId: T, service: "recon", type: "full", bucket: "b", prefix: "p/", runHost: "node-7", runPid: 4242, runToken: "run-dead" });
    await q.markRunning(db, dead.backupId);
    const stuckPending = await q.createBackup(db, { tenantId: T, service: "recon", type: "incremental", bucket: "b", prefix: "p/" });
    const alive = await q.createBackup(db, { tenantId: T, service: "recon", type: "logical", bucket: "b", prefix: "p/", runToken: "run-alive" });
    await q.markRunning(db, alive.backupId);
    await db.query("UPDATE backup_management SET heartbeat_at = now() - interval '2 hours' WHERE backup_id = $1", [dead.backupId]);
    await db.query("UPDATE backup_management SET created_at = now() - interval '2 hours' WHERE backup_id = $1", [stuckPending.backupId]);

    const r = await q.reconcileStaleRuns(db, { service: "recon", staleAfterSeconds: 600, by: "test" });
    expect(r.map((x) => x.backupId).sort()).toEqual([dead.backupId, stuckPending.backupId].sort());
    const d = r.find((x) => x.backupId === dead.backupId)!;
    expect(d.backupStatus).toBe("failed");
    expect(d.errorMessage).toMatch(/reconciled by test: the agent running it \(host node-7, pid 4242, run run-dead\) stopped reporting/);
    expect((await q.getBackup(db, alive.backupId))!.backupStatus).toBe("running");

    // The "dead" agent wakes up: its heartbeat says stop, its completion is refused, its failure is a no-op.
    expect(await q.heartbeat(db, dead.backupId)).toBe(false);
    await expect(q.completeBackup(db, dead.backupId, { storedSize: 1, recoveryPointEnd: at(1), artifacts: [] })).rejects.toThrow(/cannot complete backup .*it is failed \(reconciled by test/);
    expect((await q.failBackup(db, dead.backupId, "late")).errorMessage).toMatch(/^reconciled by test/);

    // An agent holding the service lock reconciles everything in flight but its own run.
    const r2 = await q.reconcileStaleRuns(db, { service: "recon", staleAfterSeconds: 0, exceptRunToken: "run-alive" });
    expect(r2).toEqual([]);
    const r3 = await q.reconcileStaleRuns(db, { service: "recon", staleAfterSeconds: 0 });
    expect(r3.map((x) => x.backupId)).toEqual([alive.backupId]);
    expect((await q.serviceHealth(db, { service: "recon" }))[0]).toMatchObject({ failureCount: 3, healthStatus: "critical" });
  });
});

describe("WAL archive", () => {
  it("re-uploading a segment is idempotent; different content for a finished segment is refused; .partial grows", async () => {
    const first = await wal("walsvc", 1, at(10));
    expect(first.inserted).toBe(true);
    const again = await wal("walsvc", 1, at(10));
    expect(again.inserted).toBe(false);
    expect(again.segment.segmentId).toBe(first.segment.segmentId);
    await expect(wal("walsvc", 1, at(10), { sha: sha(99) })).rejects.toThrow(/already archived .* Refusing to replace archived WAL/);
    // Encrypted again, the same segment's stored bytes differ; its plaintext SHA-256 tells it is
    // the same (pg_receivewal streams a segment again after a restart): the first upload stays.
    const enc1 = await wal("walsvc", 3, at(30), { sha: sha(31), rawSha: sha(300) });
    const enc2 = await wal("walsvc", 3, at(30), { sha: sha(32), rawSha: sha(300), key: "wal/walsvc/second-upload" });
    expect(enc2.inserted).toBe(false);
    expect(enc2.segment).toMatchObject({ segmentId: enc1.segment.segmentId, sha256: sha(31), rawSha256: sha(300), objectKey: enc1.segment.objectKey });
    await expect(wal("walsvc", 3, at(30), { sha: sha(33), rawSha: sha(301) })).rejects.toThrow(
      new RegExp(`already archived at 'wal/walsvc/000000010000000000000003.zst.age' with other content \\(plaintext SHA-256 ${sha(300)}, this upload's ${sha(301)}\\)`),
    );
    const p1 = await wal("walsvc", 2, at(20), { partial: true, sha: sha(50) });
    const p2 = await wal("walsvc", 2, at(25), { partial: true, sha: sha(51) });
    expect(p2.segment.segmentId).toBe(p1.segment.segmentId);
    expect(p2.segment).toMatchObject({ sha256: sha(51), coversUntil: at(25) });
    expect(names(await q.listWalSegments(db, "walsvc"))).toEqual(["000000010000000000000001", "000000010000000000000002.partial", "000000010000000000000003"]);
    await expect(
      q.recordWalSegment(db, { tenantId: T, service: "walsvc", timeline: 1, segmentName: "000000010000000000000001.gz", objectKey: "k", sha256: sha(1), sizeBytes: 1, coversUntil: at(1) }),
    ).rejects.toThrow(/WAL file name '000000010000000000000001.gz' is invalid/);
  });
});

describe("recoveryPlan", () => {
  // B1 at +10 s (WAL from segment 2), segments 2..5 cover +20..+50, B2 at +45 s (WAL from 5), segment 6 covers +60.
  let b1: q.BackupRow;
  let b2: q.BackupRow;
  beforeAll(async () => {
    b1 = await fullBackup("pitr", { rpEnd: at(10), startLsn: "0/1000028", endLsn: "0/2000100" });
    for (const [n, s] of [[2, 20], [3, 30], [4, 40], [5, 50], [6, 60]] as const) await wal("pitr", n, at(s));
    b2 = await fullBackup("pitr", { rpEnd: at(45), startLsn: "0/5000028", endLsn: "0/5000100" });
  });

  it("latest: the newest base plus every contiguous segment after it", async () => {
    const p = await q.recoveryPlan(db, "pitr");
    expect(p.base.backupId).toBe(b2.backupId);
    expect(p.chain.map((b) => b.backupId)).toEqual([b2.backupId]);
    expect(p.artifacts.map((a) => a.role)).toEqual(["base", "manifest"]);
    expect(names(p.wal)).toEqual(["000000010000000000000005", "000000010000000000000006"]);
    expect(p.recoveryPoint).toEqual(at(60));
    expect(p.recoveryTargetTime).toBeUndefined();
  });

  it("a point in time: the newest base at or before it and the WAL up to the first segment reaching it", async () => {
    const p = await q.recoveryPlan(db, "pitr", at(25));
    expect(p.base.backupId).toBe(b1.backupId);
    expect(names(p.wal)).toEqual(["000000010000000000000002", "000000010000000000000003"]);
    expect(p.recoveryPoint).toEqual(at(25));
    expect(p.recoveryTargetTime).toEqual(at(25));
    const p2 = await q.recoveryPlan(db, "pitr", at(55));
    expect(p2.base.backupId).toBe(b2.backupId);
    expect(names(p2.wal)).toEqual(["000000010000000000000005", "000000010000000000000006"]);
  });

  it("errors clearly outside the covered range", async () => {
    await expect(q.recoveryPlan(db, "pitr", at(5))).rejects.toThrow(
      new RegExp(`target ${at(5).toISOString()} is before the oldest good backup of 'pitr' \\(its recovery point is ${at(10).toISOString()}\\)`),
    );
    await expect(q.recoveryPlan(db, "pitr", at(70))).rejects.toThrow(
      new RegExp(`target ${at(70).toISOString()} is beyond the newest covered point of 'pitr': base .* reach ${at(60).toISOString()}`),
    );
    await expect(q.recoveryPlan(db, "never-backed-up")).rejects.toThrow(/no completed full\/incremental\/differential backup of 'never-backed-up'.*Run a full backup/);
  });

  it("a gap in the WAL archive stops the plan and says where", async () => {
    await fullBackup("gappy", { rpEnd: at(10), startLsn: "0/1000028", endLsn: "0/2000100" });
    for (const [n, s] of [[2, 20], [3, 30], [5, 50]] as const) await wal("gappy", n, at(s));
    expect(names((await q.recoveryPlan(db, "gappy")).wal)).toEqual(["000000010000000000000002", "000000010000000000000003"]);
    await expect(q.recoveryPlan(db, "gappy", at(45))).rejects.toThrow(/reach .*contiguous before segment 000000010000000000000004/);
  });

  it("skips a base that failed verification, and ignores a .partial once the finished segment exists", async () => {
    await fullBackup("pitr2", { rpEnd: at(10), startLsn: "0/1000028", endLsn: "0/2000100" });
    for (const [n, s] of [[2, 20], [3, 30]] as const) await wal("pitr2", n, at(s));
    await wal("pitr2", 4, at(35), { partial: true });
    let p = await q.recoveryPlan(db, "pitr2");
    expect(names(p.wal)).toEqual(["000000010000000000000002", "000000010000000000000003", "000000010000000000000004.partial"]);
    expect(p.recoveryPoint).toEqual(at(35));
    await wal("pitr2", 4, at(40));
    await wal("pitr2", 5, at(50));
    p = await q.recoveryPlan(db, "pitr2");
    expect(names(p.wal)).toEqual(["000000010000000000000002", "000000010000000000000003", "000000010000000000000004", "000000010000000000000005"]);
    const newer = await fullBackup("pitr2", { rpEnd: at(45), startLsn: "0/5000028", endLsn: "0/5000100" });
    expect((await q.recoveryPlan(db, "pitr2")).base.backupId).toBe(newer.backupId);
    await q.recordVerification(db, newer.backupId, { status: "failed", details: { reason: "flipped byte" } });
    p = await q.recoveryPlan(db, "pitr2");
    expect(p.base.backupId).not.toBe(newer.backupId);
    expect(p.recoveryPoint).toEqual(at(50));
  });

  it("when every candidate failed verification, says which and why instead of 'no completed backup'", async () => {
    const b = await fullBackup("all-failed", { rpEnd: at(10) });
    await q.recordVerification(db, b.backupId, { status: "failed", details: { checks: [], error: 'pg_verifybackup: error: program "pg_waldump" is needed by pg_verifybackup but was not found' } });
    await expect(q.recoveryPlan(db, "all-failed")).rejects.toThrow(
      new RegExp(`every completed full/incremental/differential backup of 'all-failed' failed verification, so none is restored from: ${b.backupId} \\(point ${at(10).toISOString().replace(/[.]/g, "\\.")}\\): pg_verifybackup: error: program "pg_waldump" is needed.*fix it and verify again`),
    );
  });

  it("engines without WAL: the newest backup at or before the target, also after the newest; a future target is an error", async () => {
    const r1 = await fullBackup("cache", { rpEnd: at(100), engine: "redis" });
    const r2 = await fullBackup("cache", { rpEnd: at(200), engine: "redis" });
    expect((await q.recoveryPlan(db, "cache")).base.backupId).toBe(r2.backupId);
    const mid = await q.recoveryPlan(db, "cache", at(150));
    expect(mid).toMatchObject({ wal: [], recoveryPoint: at(100) });
    expect(mid.base.backupId).toBe(r1.backupId);
    // After the newest snapshot: that snapshot, and its own recovery point (the gap is data loss).
    const after = await q.recoveryPlan(db, "cache", at(250));
    expect(after).toMatchObject({ wal: [], recoveryPoint: at(200) });
    expect(after.base.backupId).toBe(r2.backupId);
    const future = new Date(Date.now() + 3_600_000);
    await expect(q.recoveryPlan(db, "cache", future)).rejects.toThrow(
      new RegExp(`target ${future.toISOString()} is in the future \\(the catalog's clock reads .*\\): .*Choose a time at or before now, or 'latest'`),
    );
    await expect(q.recoveryPlan(db, "cache", at(50))).rejects.toThrow(/before the oldest good backup/);
  });

  it("follows a delta chain back to its full backup, and refuses a broken chain", async () => {
    const full = await fullBackup("chain", { rpEnd: at(100), engine: "volume" });
    const inc1 = await fullBackup("chain", { rpEnd: at(200), engine: "volume", type: "incremental", parent: full.backupId });
    const inc2 = await fullBackup("chain", { rpEnd: at(300), engine: "volume", type: "incremental", parent: inc1.backupId });
    const p = await q.recoveryPlan(db, "chain");
    expect(p.chain.map((b) => b.backupId)).toEqual([full.backupId, inc1.backupId, inc2.backupId]);
    expect(p.artifacts.map((a) => a.backupId)).toEqual([full.backupId, full.backupId, inc1.backupId, inc1.backupId, inc2.backupId, inc2.backupId]);
    await q.expireBackup(db, inc1.backupId);
    await expect(q.recoveryPlan(db, "chain")).rejects.toThrow(new RegExp(`needs its parent ${inc1.backupId}, which is expired: the chain is broken`));
  });
});

describe("consistentRecoveryPlans", () => {
  it("picks one point every service reaches: exact for WAL services, the backup before it for the others", async () => {
    await fullBackup("c-pg", { rpEnd: at(1000), startLsn: "0/1000028", endLsn: "0/2000100" });
    for (const [n, s] of [[2, 1100], [3, 1200], [4, 1300]] as const) await wal("c-pg", n, at(s));
    const r1 = await fullBackup("c-redis", { rpEnd: at(1050), engine: "redis" });
    const r2 = await fullBackup("c-redis", { rpEnd: at(1250), engine: "redis" });
    const latest = await q.consistentRecoveryPlans(db, ["c-pg", "c-redis"]);
    expect(latest.point).toEqual(at(1250)); // redis's newest; postgres can reach it through WAL
    expect(latest.plans.map((p) => p.recoveryPoint)).toEqual([at(1250), at(1250)]);
    expect(latest.plans[1]!.base.backupId).toBe(r2.backupId);
    const earlier = await q.consistentRecoveryPlans(db, ["c-pg", "c-redis"], at(1150));
    expect(earlier.plans[0]!.recoveryTargetTime).toEqual(at(1150));
    expect(earlier.plans[1]!.base.backupId).toBe(r1.backupId);
    await expect(q.consistentRecoveryPlans(db, ["c-pg", "c-redis"], at(1020))).rejects.toThrow(/before the oldest good backup of 'c-redis'/);
  });
});

describe("verifiedRecoveryPoint", () => {
  it("is the newest VERIFIED recovery point (verified base + contiguous WAL), and its age", async () => {
    const rpoSeconds = async () => (await q.verifiedRecoveryPoint(db, "rpo", { now: at(100) }))?.ageSeconds ?? null;
    const b = await fullBackup("rpo", { rpEnd: at(10), startLsn: "0/1000028", endLsn: "0/2000100" });
    for (const [n, s] of [[2, 20], [3, 30]] as const) await wal("rpo", n, at(s));
    expect(await rpoSeconds()).toBeNull(); // nothing verified yet
    await q.recordVerification(db, b.backupId, { status: "passed" });
    expect(await rpoSeconds()).toBe(70);
    await wal("rpo", 4, at(40));
    expect(await rpoSeconds()).toBe(60);
    // A newer but unverified base changes nothing; WAL after the verified base still counts.
    await fullBackup("rpo", { rpEnd: at(90), startLsn: "0/9000028", endLsn: "0/9000100" });
    expect(await rpoSeconds()).toBe(60);
    const m = await q.backupMetrics(db, T);
    expect(m.find((x) => x.serviceName === "rpo")).toMatchObject({ successfulBackups: 2, totalBackups: 2, successRate: 100 });
  });
});
