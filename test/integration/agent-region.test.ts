/**
 * Restoring from the DR region while the catalog is alive, against the two real RGW regions and a
 * real PostgreSQL: the replicator records each copy's own version id in the catalog (object_copy),
 * a restore pointed at the DR bucket reads those ids and brings back identical tables, and a copy
 * the catalog does not know is an error that names the region, bucket, key, version and S3 code.
 * And `kdr-agent catalog rebuild`: a catalog rebuilt from either region's bucket alone equals the
 * original (with that region's version ids), skips damaged manifests by name, changes nothing when
 * run twice, and restores; run against a live catalog it records that region's copies.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import pg from "pg";
import { replicationLag } from "../../catalog/copies.js";
import { listReplication } from "../../catalog/replication.js";
import { migrate } from "../../catalog/migrate.js";
import { sealWalDescriptor } from "../../agent/commands/shared.js";
import { agentWorld, makeBucket, pgQuery as q, prepareBackupRole, restoredChecksums, tableChecksums, type AgentWorld, type TestBucket } from "../support/s3.js";
import { freePort, startTmpPostgres, type TmpPostgres } from "../support/tmp-postgres.js";
import { startTmpRedis } from "../support/tmp-redis.js";

let w: AgentWorld;
let dr: TestBucket;
let primary: TmpPostgres;
let env: Record<string, string>;
let drEnv: Record<string, string>;
let replicateEnv: Record<string, string>;
const SERVICE = "pg-region";

function json<T>(r: { code: number | null; stdout: string; stderr: string }): T {
  if (r.code !== 0) throw new Error(`agent exited ${r.code}\n${r.stderr}\n${r.stdout}`);
  return JSON.parse(r.stdout) as T;
}

beforeAll(async () => {
  w = await agentWorld("kdrtest-region");
  dr = await makeBucket("kdrtest-region-dr", "dr");
  primary = await startTmpPostgres();
  const targetEnv = await prepareBackupRole(primary, w.secretDir);
  await q(primary.urlFor("app"), "CREATE TABLE items (id int PRIMARY KEY, body text NOT NULL)");
  await q(primary.urlFor("app"), "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
  env = w.env(SERVICE, targetEnv);
  // The replicator reads the primary and writes the DR bucket with the DR region's keys.
  writeFileSync(path.join(w.secretDir, "kdr-replica-s3-access-key"), dr.accessKey + "\n");
  writeFileSync(path.join(w.secretDir, "kdr-replica-s3-secret-key"), dr.secretKey + "\n");
  replicateEnv = { ...env, KDR_REPLICA_S3_ENDPOINT: dr.endpoint, KDR_REPLICA_S3_BUCKET: dr.bucket, KDR_REPLICA_S3_REGION: dr.region };
  // A restore job of the recovery stack with sourceRegion: dr holds the DR region's keys only.
  const drSecrets = mkdtempSync(path.join(tmpdir(), "kdrtest-region-secrets-"));
  for (const f of readdirSync(w.secretDir)) copyFileSync(path.join(w.secretDir, f), path.join(drSecrets, f));
  writeFileSync(path.join(drSecrets, "kdr-s3-access-key"), dr.accessKey + "\n");
  writeFileSync(path.join(drSecrets, "kdr-s3-secret-key"), dr.secretKey + "\n");
  drEnv = { ...env, KDR_S3_ENDPOINT: dr.endpoint, KDR_S3_REGION: dr.region, KDR_S3_BUCKET: dr.bucket, KDR_SECRET_DIR: drSecrets };
});

afterAll(async () => {
  await primary?.stop().catch(() => undefined);
  await dr?.remove().catch(() => undefined);
  await w?.close();
});

/** A new, empty, migrated catalog database in the world's catalog server. */
async function freshCatalog(name: string): Promise<pg.Client> {
  await q(w.catalog.url, `CREATE DATABASE ${name}`);
  const c = new pg.Client({ connectionString: w.catalog.urlFor(name) });
  await c.connect();
  await migrate(c);
  return c;
}

/** The catalog's rows as a rebuild must reproduce them (times of the run itself aside). */
async function catalogRows(c: pg.Client): Promise<{ backups: unknown[]; artifacts: unknown[]; wal: unknown[] }> {
  const backups = (
    await c.query(
      `SELECT backup_id, tenant_id, service_name, engine, backup_type, backup_status, storage_prefix, raw_size, backup_size,
              recovery_point_start, recovery_point_end, timeline, start_lsn::text, end_lsn::text, checksum, tool, tool_version,
              encryption_key_id, parent_backup_id, metadata - 'rebuiltFrom' AS metadata
       FROM backup_management WHERE backup_status = 'completed' ORDER BY backup_id`,
    )
  ).rows;
  const artifacts = (await c.query("SELECT backup_id, role, object_key, version_id, sha256, size_bytes, raw_size, metadata FROM backup_artifact ORDER BY backup_id, object_key")).rows;
  const wal = (await c.query("SELECT tenant_id, service_name, timeline, segment_name, object_key, version_id, sha256, size_bytes, raw_size, covers_until, encryption_key_id FROM wal_segment ORDER BY segment_name")).rows;
  return { backups, artifacts, wal };
}

describe("agent: restore from the DR region", () => {
  let sourceSums: Record<string, string>;

  it("the replicator records every copy with the DR region's own version id", async () => {
    json(await w.run(["backup", "--type", "full", "--json"], env));
    await q(primary.urlFor("app"), "UPDATE items SET body = body || '!' WHERE id <= 200");
    await q(primary.urlFor("app"), "CREATE TABLE after_full (id int)");
    await q(primary.urlFor("app"), "INSERT INTO after_full SELECT generate_series(1, 50)");
    json(await w.run(["backup", "--type", "incremental", "--json"], env));
    sourceSums = await tableChecksums(primary.urlFor);

    const r = await w.run(["replicate", "--once"], replicateEnv);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/copied \d+ new version\(s\), recorded \d+ in the catalog/);
    const copies = (await w.db.query("SELECT object_key, source_version_id, copy_version_id, region, endpoint, service_name FROM object_copy")).rows;
    const stored = (
      await w.db.query(
        `SELECT object_key, version_id FROM backup_artifact a JOIN backup_management b USING (backup_id) WHERE b.service_name = $1
         UNION ALL SELECT object_key, version_id FROM wal_segment WHERE service_name = $1`,
        [SERVICE],
      )
    ).rows as { object_key: string; version_id: string }[];
    expect(stored.length).toBeGreaterThan(3);
    for (const s of stored) {
      const c = copies.find((x) => x.object_key === s.object_key && x.source_version_id === s.version_id);
      expect(c, `no copy recorded for ${s.object_key}`).toBeDefined();
      // Each region numbers its own versions: the primary's id does not name the DR copy.
      expect(c!.copy_version_id).toBeTruthy();
      expect(c!.copy_version_id).not.toBe(s.version_id);
      expect(c).toMatchObject({ region: dr.region, endpoint: new URL(dr.endpoint).origin, service_name: SERVICE });
    }
    // The catalog can say how far each service's copies are.
    const lag = await replicationLag(w.db, { service: SERVICE });
    expect(lag).toHaveLength(1);
    expect(lag[0]!.copies).toBe(copies.filter((c) => c.service_name === SERVICE).length);
    expect(lag[0]!.newestCopiedSourceAt).toBeInstanceOf(Date);
    // And what is not copied: nothing, as the replicator reported after its pass.
    expect(await listReplication(w.db, { service: SERVICE })).toEqual([
      expect.objectContaining({ region: dr.region, endpoint: new URL(dr.endpoint).origin, bucket: dr.bucket, sourceBucket: w.bucket.bucket, pendingObjects: 0, oldestPendingAt: null, lastError: null, reportIntervalSeconds: 30 }),
    ]);

    // A second pass copies and records nothing new.
    const again = await w.run(["replicate", "--once"], replicateEnv);
    expect(again.stderr).toMatch(/copied 0 new version\(s\), recorded 0 in the catalog/);
  });

  it("a restore from the DR bucket reads the recorded copies and brings back identical tables", async () => {
    const target = path.join(w.root, "restore-from-dr");
    const r = await w.run(["restore", "--target", target, "--json"], drEnv);
    const sum = json<{ walSegments: number; artifactsChecked: number }>(r);
    expect(r.stderr).toContain(`from ${dr.bucket} in region ${dr.region}`);
    expect(sum.walSegments).toBeGreaterThan(0);
    expect(await restoredChecksums(target, primary.password)).toEqual(sourceSums);
  });

  it("verify from the DR bucket passes on the copies", async () => {
    const v = json<{ passed: boolean }>(await w.run(["verify", "--json"], drEnv, { timeoutMs: 60_000 }));
    expect(v.passed).toBe(true);
  });

  it("catalog rebuild from the primary's bucket alone reproduces every row, version ids included", async () => {
    const rebuilt = await freshCatalog("rebuilt_primary");
    try {
      const r = await w.run(["catalog", "rebuild", "--json"], { ...env, KDR_CATALOG_DATABASE: "rebuilt_primary" });
      const sum = json<{ backups: { inserted: number }; walSegments: { inserted: number }; skipped: unknown[] }>(r);
      expect(sum.skipped).toEqual([]);
      expect(sum.backups.inserted).toBe(2);
      expect(await catalogRows(rebuilt)).toEqual(await catalogRows(w.db));
      // Run twice: nothing changes.
      const again = json<{ backups: { inserted: number; known: number }; walSegments: { inserted: number }; copiesRecorded: number }>(
        await w.run(["catalog", "rebuild", "--json"], { ...env, KDR_CATALOG_DATABASE: "rebuilt_primary" }),
      );
      expect(again).toMatchObject({ backups: { inserted: 0, known: 2 }, walSegments: { inserted: 0 }, copiesRecorded: 0 });
      expect(await catalogRows(rebuilt)).toEqual(await catalogRows(w.db));
    } finally {
      await rebuilt.end();
    }
  });

  it("catalog rebuild completes from its manifest a backup the catalog still shows running or pending (a catalog restored to a point while it was uploading)", async () => {
    const rebuilt = await freshCatalog("rebuilt_inflight");
    try {
      json(await w.run(["catalog", "rebuild", "--json"], { ...env, KDR_CATALOG_DATABASE: "rebuilt_inflight" }));
      const ids = (await rebuilt.query("SELECT backup_id FROM backup_management WHERE backup_type <> 'wal' ORDER BY recovery_point_end")).rows.map((r) => r.backup_id as string);
      expect(ids).toHaveLength(2);
      // The rows as the catalog last knew them (a completed row cannot go back, so they are made anew):
      // one running with one of its artifacts recorded (a stale version id), one pending.
      const keep = (await rebuilt.query("SELECT * FROM backup_artifact WHERE backup_id = $1 AND role <> 'manifest' LIMIT 1", [ids[0]])).rows[0];
      const made = new Map((await rebuilt.query("SELECT backup_id, backup_type, parent_backup_id FROM backup_management WHERE backup_id = ANY($1)", [ids])).rows.map((r) => [r.backup_id, r]));
      await rebuilt.query("DELETE FROM backup_artifact WHERE backup_id = ANY($1)", [ids]);
      await rebuilt.query("DELETE FROM backup_management WHERE backup_id = ANY($1)", [ids]);
      const base = "INSERT INTO backup_management (backup_id, tenant_id, service_name, engine, backup_type, parent_backup_id, storage_bucket, storage_prefix, started_at, backup_status";
      const as = (id: string) => [id, w.tenantId, SERVICE, made.get(id)!.backup_type, made.get(id)!.parent_backup_id, w.bucket.bucket];
      await rebuilt.query(`${base}) VALUES ($1, $2, $3, 'postgres', $4, $5, $6, 'p/', now(), 'running')`, as(ids[0]));
      await rebuilt.query(
        "INSERT INTO backup_artifact (backup_id, role, object_key, version_id, sha256, size_bytes, raw_size, metadata) VALUES ($1, $2, $3, 'stale-version', $4, 1, 1, '{}')",
        [ids[0], keep.role, keep.object_key, keep.sha256],
      );
      await rebuilt.query(`${base}) VALUES ($1, $2, $3, 'postgres', $4, $5, $6, 'p/', NULL, 'pending')`, as(ids[1]));
      const r = await w.run(["catalog", "rebuild", "--json"], { ...env, KDR_CATALOG_DATABASE: "rebuilt_inflight" });
      expect(json<{ backups: unknown }>(r).backups, r.stderr).toEqual({ inserted: 0, known: 0, completed: 2 });
      expect(r.stderr).toContain(`backup ${ids[0]} of ${SERVICE} was running in the catalog, but its manifest`);
      expect(r.stderr).toContain(`backup ${ids[1]} of ${SERVICE} was pending in the catalog, but its manifest`);
      expect(await catalogRows(rebuilt)).toEqual(await catalogRows(w.db));
      const again = json<{ backups: unknown }>(await w.run(["catalog", "rebuild", "--json"], { ...env, KDR_CATALOG_DATABASE: "rebuilt_inflight" }));
      expect(again.backups).toEqual({ inserted: 0, known: 2, completed: 0 });
    } finally {
      await rebuilt.end();
    }
  });

  it("catalog rebuild from the DR bucket gives the same rows with the DR copies' version ids, and restores from them", async () => {
    const rebuilt = await freshCatalog("rebuilt_dr");
    try {
      const r = await w.run(["catalog", "rebuild", "--json"], { ...drEnv, KDR_CATALOG_DATABASE: "rebuilt_dr" });
      expect(json<{ skipped: unknown[] }>(r).skipped).toEqual([]);
      const copies = (await w.db.query("SELECT object_key, source_version_id, copy_version_id FROM object_copy")).rows;
      const copyOf = new Map(copies.map((x) => [`${x.object_key}\n${x.source_version_id}`, x.copy_version_id]));
      const inDrRegion = (rows: unknown[]) =>
        rows.map((r) => {
          const x = r as { object_key: string; version_id: string };
          return { ...x, version_id: copyOf.get(`${x.object_key}\n${x.version_id}`) };
        });
      const original = await catalogRows(w.db);
      const inDr = { ...original, artifacts: inDrRegion(original.artifacts), wal: inDrRegion(original.wal) };
      expect(await catalogRows(rebuilt)).toEqual(inDr);
      const target = path.join(w.root, "restore-rebuilt-dr");
      json(await w.run(["restore", "--target", target, "--json"], { ...drEnv, KDR_CATALOG_DATABASE: "rebuilt_dr" }));
      expect(await restoredChecksums(target, primary.password)).toEqual(sourceSums);
    } finally {
      await rebuilt.end();
    }
  });

  it("catalog rebuild skips a cut-short or altered manifest and a WAL descriptor without its segment, naming each", async () => {
    const put = (Key: string, Body: string) => w.bucket.client.send(new PutObjectCommand({ Bucket: w.bucket.bucket, Key, Body }));
    const [m] = (await w.db.query("SELECT object_key, version_id FROM backup_artifact WHERE role = 'manifest' LIMIT 1")).rows;
    const body = await (await w.bucket.client.send(new (await import("@aws-sdk/client-s3")).GetObjectCommand({ Bucket: w.bucket.bucket, Key: m.object_key }))).Body!.transformToString();
    const cut = `full/${SERVICE}/00000000-0000-4000-8000-000000000c00/manifest.json`;
    const altered = `full/${SERVICE}/00000000-0000-4000-8000-000000000a1e/manifest.json`;
    await put(cut, body.slice(0, body.length / 2));
    await put(altered, body.replace(/"rawSize": \d+/, '"rawSize": 1'));
    // A descriptor whose segment never arrived (its upload died, or it is not replicated yet).
    const [seg] = (await w.db.query("SELECT * FROM wal_segment LIMIT 1")).rows;
    const lost = `wal/${SERVICE}/0000000100000000000000FF.zst.age`;
    const orphan = `${lost}.kdr.json`;
    await put(orphan, sealWalDescriptor({ format: "kdr-wal/1", tenantId: seg.tenant_id, service: SERVICE, timeline: 1, segmentName: "0000000100000000000000FF", objectKey: lost, sha256: seg.sha256, sizeBytes: 1, rawSize: 1, coversUntil: new Date().toISOString(), encryptionKeyId: null }));
    const rebuilt = await freshCatalog("rebuilt_damaged");
    try {
      const r = await w.run(["catalog", "rebuild"], { ...env, KDR_CATALOG_DATABASE: "rebuilt_damaged" });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/2 backup\(s\) added/);
      expect(r.stdout).toContain(`${cut}: s3://${w.bucket.bucket}/${cut} is not a whole manifest`);
      expect(r.stdout).toContain(`${altered}: s3://${w.bucket.bucket}/${altered} does not match its own SHA-256`);
      expect(r.stdout).toContain(`${orphan}: the bucket does not hold its segment ${lost} (half-written, or not replicated yet)`);
      // Only the real backups and segments were recorded.
      expect(await catalogRows(rebuilt)).toEqual(await catalogRows(w.db));
    } finally {
      await rebuilt.end();
    }
  });

  it("a mistyped catalog command is refused, naming the one that exists", async () => {
    const r = await w.run(["catalog", "rebuid"], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("'kdr-agent catalog rebuid' is not a command: the catalog command is 'kdr-agent catalog rebuild'");
  });

  it("catalog rebuild from the DR bucket into the live catalog records the DR copies it lacks, and the DR restore works again", async () => {
    await w.db.query("DELETE FROM object_copy");
    const r = json<{ backups: { known: number; inserted: number }; copiesRecorded: number }>(await w.run(["catalog", "rebuild", "--json"], drEnv));
    expect(r.backups).toEqual({ inserted: 0, known: 2, completed: 0 });
    expect(r.copiesRecorded).toBeGreaterThan(3);
    const target = path.join(w.root, "restore-dr-reindexed");
    json(await w.run(["restore", "--target", target, "--json"], drEnv));
    expect(await restoredChecksums(target, primary.password)).toEqual(sourceSums);
  });

  // After the rebuild cases above, which count the backups of this service.
  it("a backup whose copies have not arrived is not judged in the DR region (verify status unchanged), and is verified there once they have", async () => {
    const b = json<{ backupId: string }>(await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 }));
    const status = async () => (await w.db.query("SELECT verify_status FROM backup_management WHERE backup_id = $1", [b.backupId])).rows[0].verify_status as string | null;
    // Not replicated yet: the DR cron's verify-new leaves it for a later run instead of failing it
    // (a failed verdict made every restore and standby seed skip a good backup).
    const pending = await w.run(["verify", "--pending", "--json"], drEnv, { timeoutMs: 120_000 });
    const p = json<{ verified: Array<{ backupId: string }>; notHereYet: string[] }>(pending);
    expect(p.verified.map((v) => v.backupId)).not.toContain(b.backupId);
    expect(p.notHereYet).toEqual(expect.arrayContaining([expect.stringMatching(new RegExp(`^backup ${b.backupId} was written in region ${w.bucket.region} \\(bucket ${w.bucket.bucket}\\), and region ${dr.region} \\(bucket ${dr.bucket}\\) does not hold full/${SERVICE}/${b.backupId}/\\S+ yet .*not judged, its verify status unchanged`))]));
    const one = await w.run(["verify", "--backup-id", b.backupId], drEnv, { timeoutMs: 120_000 });
    expect(one.code).toBe(1);
    expect(one.stderr).toMatch(/not judged, its verify status unchanged/);
    // Without an id, the newest backup the region holds whole is verified, said.
    const latest = json<{ backupId: string; passed: boolean }>(await w.run(["verify", "--json"], drEnv, { timeoutMs: 120_000 }));
    expect(latest.passed).toBe(true);
    expect(latest.backupId).not.toBe(b.backupId);
    expect(await status()).toBeNull();
    expect((await w.run(["replicate", "--once"], replicateEnv)).code).toBe(0);
    const after = json<{ verified: Array<{ backupId: string; passed: boolean }>; notHereYet: string[] }>(await w.run(["verify", "--pending", "--json"], drEnv, { timeoutMs: 120_000 }));
    expect(after.verified.find((v) => v.backupId === b.backupId)).toMatchObject({ passed: true });
    expect(await status()).toBe("passed");
  });

  it("a replicator the other way (the dr stack's, after a failover) sends no copy back and copies what was written in the DR region; the forward one does not send that back either", async () => {
    const { ListObjectVersionsCommand, HeadObjectCommand } = await import("@aws-sdk/client-s3");
    const versions = async (b: TestBucket) => {
      const out: Array<{ key: string; versionId: string }> = [];
      let km: string | undefined;
      let vm: string | undefined;
      for (;;) {
        const r = await b.client.send(new ListObjectVersionsCommand({ Bucket: b.bucket, KeyMarker: km, VersionIdMarker: vm }));
        for (const v of r.Versions ?? []) out.push({ key: v.Key!, versionId: v.VersionId! });
        if (!r.IsTruncated) return out;
        km = r.NextKeyMarker;
        vm = r.NextVersionIdMarker;
      }
    };
    // DR -> primary: read with the DR region's keys, written with the primary's.
    const revSecrets = mkdtempSync(path.join(tmpdir(), "kdrtest-region-reverse-"));
    for (const f of readdirSync(drEnv.KDR_SECRET_DIR!)) copyFileSync(path.join(drEnv.KDR_SECRET_DIR!, f), path.join(revSecrets, f));
    writeFileSync(path.join(revSecrets, "kdr-replica-s3-access-key"), w.bucket.accessKey + "\n");
    writeFileSync(path.join(revSecrets, "kdr-replica-s3-secret-key"), w.bucket.secretKey + "\n");
    const revEnv = { ...drEnv, KDR_SECRET_DIR: revSecrets, KDR_REPLICA_S3_ENDPOINT: w.bucket.endpoint, KDR_REPLICA_S3_BUCKET: w.bucket.bucket, KDR_REPLICA_S3_REGION: w.bucket.region };
    // A copy made before copies carried their metadata: only the catalog knows it is one.
    const old = await dr.client.send(new PutObjectCommand({ Bucket: dr.bucket, Key: "full/pg-old-copy/marker.bin", Body: "an old copy" }));
    await w.db.query(
      "INSERT INTO object_copy (endpoint, region, bucket, object_key, source_version_id, copy_version_id) VALUES ($1, $2, $3, 'full/pg-old-copy/marker.bin', 'primary-version-1', $4)",
      [new URL(dr.endpoint).origin, dr.region, dr.bucket, old.VersionId],
    );
    // What the primary holds is in the DR region first (the tests above wrote some since).
    expect((await w.run(["replicate", "--once"], replicateEnv)).code).toBe(0);
    const primaryBefore = (await versions(w.bucket)).length;
    const drVersions = (await versions(dr)).length;

    const r1 = await w.run(["replicate", "--once"], revEnv);
    expect(r1.code, r1.stderr).toBe(0);
    expect(r1.stderr).toContain(`replicate ${dr.bucket} -> ${w.bucket.bucket}: copied 0 new version(s), recorded 0 in the catalog; ${drVersions} version(s) are copies from ${w.bucket.endpoint} or another region, not sent back`);
    expect((await versions(w.bucket)).length).toBe(primaryBefore);

    // Written in the DR region (a promoted service's sidecar): copied to the primary, recorded, marked.
    const key = "full/pg-dr-written/marker.bin";
    const written = await dr.client.send(new PutObjectCommand({ Bucket: dr.bucket, Key: key, Body: "written in the DR region" }));
    const r2 = await w.run(["replicate", "--once"], revEnv);
    expect(r2.stderr).toContain(`copied 1 new version(s), recorded 1 in the catalog`);
    const [copy] = (await w.db.query("SELECT endpoint, region, copy_version_id FROM object_copy WHERE object_key = $1 AND source_version_id = $2", [key, written.VersionId])).rows;
    expect(copy).toMatchObject({ endpoint: new URL(w.bucket.endpoint).origin, region: w.bucket.region });
    const head = await w.bucket.client.send(new HeadObjectCommand({ Bucket: w.bucket.bucket, Key: key, VersionId: copy.copy_version_id }));
    expect(head.Metadata?.["kdr-copy-of"]).toBe(`${dr.endpoint}/${dr.bucket}?versionId=${written.VersionId}`);

    // The forward replicator does not send it back, even with no catalog record of it (its metadata says).
    await w.db.query("DELETE FROM object_copy WHERE object_key = $1", [key]);
    const drNow = (await versions(dr)).length;
    const fwd = await w.run(["replicate", "--once"], replicateEnv);
    expect(fwd.code, fwd.stderr).toBe(0);
    expect(fwd.stderr).toMatch(/copied 0 new version\(s\), recorded 0 in the catalog; 1 version\(s\) are copies from .* not sent back/);
    expect((await versions(dr)).length).toBe(drNow);
  });

  it("a pass that cannot reach the replica reports what it left and why (the backlog status and the health job judge), and takes over a state file named before endpoints counted", async () => {
    const away = { ...replicateEnv, KDR_REPLICA_S3_ENDPOINT: `http://127.0.0.1:${await freePort()}` };
    const r = await w.run(["replicate", "--once"], away);
    expect(r.code).not.toBe(0);
    const rows = (await listReplication(w.db, { service: SERVICE })).filter((x) => x.endpoint === new URL(away.KDR_REPLICA_S3_ENDPOINT).origin);
    expect(rows).toHaveLength(1);
    // Another S3 server than the DR region's: everything is still to copy there.
    expect(rows[0]!.pendingObjects).toBeGreaterThan(3);
    expect(rows[0]!.oldestPendingAt).toBeInstanceOf(Date);
    expect(rows[0]!.lastError).toMatch(/ECONNREFUSED|connect/);
    await w.db.query("DELETE FROM replication_status WHERE endpoint = $1", [new URL(away.KDR_REPLICA_S3_ENDPOINT).origin]);
    // The real replica's state under the name of before (buckets only) is taken over: nothing is copied again.
    const prefix = `replicate-${w.bucket.bucket}-to-${dr.bucket}`;
    const current = readdirSync(w.stateDir).filter((f) => f.startsWith(`${prefix}-`) && !f.endsWith("-unrecorded.json"));
    // The DR region's holds every version copied; the unreachable server's at most the versions it
    // found to be copies from elsewhere (not sent back; other lanes go on when one fails).
    const size = (f: string) => (JSON.parse(readFileSync(path.join(w.stateDir, f), "utf8")) as string[]).length;
    const drState = [...current].sort((a, b) => size(b) - size(a)).find((f) => size(f) > 0);
    expect(drState, `state files: ${current.join(", ")}`).toBeDefined();
    renameSync(path.join(w.stateDir, drState!), path.join(w.stateDir, `${prefix}.json`));
    const again = await w.run(["replicate", "--once"], replicateEnv);
    expect(again.stderr).toMatch(/copied 0 new version\(s\)/);
    expect(existsSync(path.join(w.stateDir, `${prefix}.json`))).toBe(false);
    expect(existsSync(path.join(w.stateDir, drState!))).toBe(true);
  });

  it("a replicator starting without its state (a new container: Swarm replaced it) copies nothing again, as the catalog records every copy; stopped with SIGTERM it withdraws its backlog rows", async () => {
    // Tests above deleted copy records (object_copy), as a catalog restored to an earlier point
    // loses the newest: a first run without its state copies those versions again (and records
    // them). A second run without its state then copies nothing.
    const dropState = () => {
      for (const f of readdirSync(w.stateDir).filter((x) => x.startsWith("replicate-"))) rmSync(path.join(w.stateDir, f));
    };
    dropState();
    const settle = await w.run(["replicate", "--once"], replicateEnv);
    expect(settle.code, settle.stderr).toBe(0);
    dropState();
    const r = await w.run(["replicate", "--once"], replicateEnv);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\d+ version\(s\) already copied, as the catalog records \(no state file here\)/);
    expect(r.stderr, r.stderr).toMatch(/copied 0 new version\(s\)/);

    const p = w.start(["replicate"], { ...replicateEnv, KDR_METRICS_PORT: String(await freePort()) });
    const closed = new Promise<number | null>((resolve) => p.once("close", (c) => resolve(c)));
    const pairRows = async () => (await listReplication(w.db)).filter((x) => x.sourceBucket === w.bucket.bucket && x.bucket === dr.bucket && x.endpoint === new URL(dr.endpoint).origin);
    for (let i = 0; i < 150 && !/a pass every \d+ s/.test(p.output()); i++) await new Promise((res) => setTimeout(res, 200));
    // Its first pass reports (the rows of the runs above are there already; reported_at moves).
    const before = (await pairRows())[0]!.reportedAt.getTime();
    for (let i = 0; i < 100 && (await pairRows())[0]!.reportedAt.getTime() === before; i++) await new Promise((res) => setTimeout(res, 200));
    expect((await pairRows()).length).toBeGreaterThan(0);
    p.kill("SIGTERM");
    expect(await closed, p.output()).toBe(0);
    expect(p.output()).toMatch(/stopped \(SIGTERM\); its backlog reports are withdrawn from the catalog/);
    expect(await pairRows()).toEqual([]);
  });

  it("a snapshot backup the region lost before it was copied whole (its copy records missing): the restore from the DR region falls back to the newest one there, and says so", async () => {
    const redis = await startTmpRedis({ password: readFileSync(path.join(w.secretDir, "kdr-target-password"), "utf8").trim() });
    try {
      const rEnv = w.env("redis-region", { KDR_ENGINE: "redis", KDR_TARGET_HOST: redis.host, KDR_TARGET_PORT: String(redis.port) });
      const older = json<{ backupId: string }>(await w.run(["backup", "--type", "full", "--json"], rEnv));
      const newer = json<{ backupId: string }>(await w.run(["backup", "--type", "incremental", "--json"], rEnv));
      const rep = await w.run(["replicate", "--once"], { ...rEnv, KDR_REPLICA_S3_ENDPOINT: dr.endpoint, KDR_REPLICA_S3_BUCKET: dr.bucket, KDR_REPLICA_S3_REGION: dr.region });
      expect(rep.code, rep.stderr).toBe(0);
      // The newest backup's copies, as if the region went before they were made (or recorded).
      const gone = await w.db.query("DELETE FROM object_copy WHERE (object_key, source_version_id) IN (SELECT object_key, version_id FROM backup_artifact WHERE backup_id = $1)", [newer.backupId]);
      expect(gone.rowCount).toBeGreaterThan(0);
      const target = path.join(w.root, "restore-redis-fallback");
      const r = json<{ backupId: string; fellBack: string[] }>(await w.run(["restore", "--target", target, "--json"], { ...drEnv, ...rEnv, KDR_S3_ENDPOINT: dr.endpoint, KDR_S3_REGION: dr.region, KDR_S3_BUCKET: dr.bucket, KDR_SECRET_DIR: drEnv.KDR_SECRET_DIR! }));
      expect(r.backupId).toBe(older.backupId);
      expect(r.fellBack).toEqual([expect.stringMatching(new RegExp(`^backup ${newer.backupId} \\(point \\S+\\) is not in region ${dr.region} whole \\(no copy recorded of incremental/redis-region/${newer.backupId}/`))]);
      expect(readdirSync(target)).toContain("dump.rdb");
      // Intact where it was written: not recorded as a failed verify.
      const { rows } = await w.db.query("SELECT verify_status FROM backup_management WHERE backup_id = $1", [newer.backupId]);
      expect(rows[0].verify_status).not.toBe("failed");
    } finally {
      await redis.stop();
    }
  });

  it("without the copy records the restore stops, naming the region, bucket, key, version and S3 error", async () => {
    await w.db.query("DELETE FROM object_copy");
    const target = path.join(w.root, "restore-no-copies");
    const r = await w.run(["restore", "--target", target], drEnv);
    expect(r.code).not.toBe(0);
    expect(r.stderr).not.toMatch(/UnknownError/);
    expect(r.stderr).toMatch(new RegExp(`cannot read s3://${dr.bucket}/full/${SERVICE}/[0-9a-f-]+/manifest\\.json version \\S+ in region ${dr.region} \\(${dr.endpoint.replace(/[.]/g, "\\.")}\\): (NoSuchVersion|NoSuchKey|NoSuchKey or NoSuchVersion) \\(HTTP 404\\)`));
    expect(r.stderr).toMatch(/needs its own id \(the replicator records it in the catalog's object_copy\)/);
    // Which objects lack a recorded copy, and what to do.
    expect(r.stderr).toMatch(new RegExp(`\\[backup [0-9a-f-]+ was written in region ${w.bucket.region}; the catalog records no copy in region ${dr.region} of full/${SERVICE}/[0-9a-f-]+/\\S+.*'kdr-agent catalog rebuild' in this region records the copies this bucket holds`));
    expect(existsSync(target) ? readdirSync(target) : []).toEqual([]);
  });

  it("copies run in one lane per service: a large copy of one service does not hold back a newer small one of another", async () => {
    // Redis's incrementals are whole RDBs: copied one at a time, oldest first, across the bucket,
    // PostgreSQL's WAL waited behind them (docs/benchmarks.md, 2026-12-06 22:07).
    const big = `incremental/lane-big/${randomUUID()}/dump.rdb.zst.age`;
    const small = `wal/lane-small/000000010000000000000001.zst.age`;
    await w.bucket.client.send(new PutObjectCommand({ Bucket: w.bucket.bucket, Key: big, Body: randomBytes(96 * 1024 * 1024) }));
    await new Promise((r) => setTimeout(r, 1100)); // newer by the listing's one-second clock
    await w.bucket.client.send(new PutObjectCommand({ Bucket: w.bucket.bucket, Key: small, Body: randomBytes(4096) }));
    const r = await w.run(["replicate", "--once"], replicateEnv);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/copied 2 new version\(s\), recorded 2 in the catalog/);
    const at = async (key: string) => (await w.db.query("SELECT copied_at FROM object_copy WHERE object_key = $1", [key])).rows.map((x) => (x.copied_at as Date).getTime());
    const [bigAt, smallAt] = [await at(big), await at(small)];
    expect(bigAt).toHaveLength(1);
    expect(smallAt).toHaveLength(1);
    expect(smallAt[0]!, "the newer small copy was recorded after the older large one: copies are serial").toBeLessThan(bigAt[0]!);
  });

  // Last: it stops the catalog, which ends the connections the tests above share.
  it("a replicator whose catalog restarts exits with 75, saying why (Swarm starts it again with a new connection)", async () => {
    w.db.on("error", () => undefined);
    const p = w.start(["replicate"], { ...replicateEnv, KDR_METRICS_PORT: String(await freePort()) });
    // From the start: it may exit (and close) while the catalog is still stopping.
    const closed = new Promise<number | null>((resolve) => p.once("close", (c) => resolve(c)));
    for (let i = 0; i < 150 && !/a pass every \d+ s/.test(p.output()); i++) await new Promise((r) => setTimeout(r, 200));
    expect(p.output()).toMatch(/a pass every \d+ s/);
    await w.catalog.down();
    let code: number | null;
    try {
      let t: NodeJS.Timeout | undefined;
      code = await Promise.race([closed, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`the replicator did not exit within 90 s:\n${p.output()}`)), 90_000)))]);
      clearTimeout(t);
    } finally {
      await w.catalog.up();
    }
    expect(code, p.output()).toBe(75);
    expect(p.output()).toMatch(/replicate: lost its catalog connection \(.+\); exiting so that Swarm starts the replicator again with a new one/);
  }, 180_000);
});
