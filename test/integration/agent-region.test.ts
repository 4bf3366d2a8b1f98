/**
 * Restoring from the DR region while the catalog is alive, against the two real RGW regions and a
 * real PostgreSQL: the replicator records each copy's own version id in the catalog (object_copy),
 * a restore pointed at the DR bucket reads those ids and brings back identical tables, and a copy
 * the catalog does not know is an error that names the region, bucket, key, version and S3 code.
 */
import { copyFileSync, existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replicationLag } from "../../catalog/copies.js";
import { agentWorld, makeBucket, pgQuery as q, prepareBackupRole, restoredChecksums, tableChecksums, type AgentWorld, type TestBucket } from "../support/s3.js";
import { startTmpPostgres, type TmpPostgres } from "../support/tmp-postgres.js";

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

  it("without the copy records the restore stops, naming the region, bucket, key, version and S3 error", async () => {
    await w.db.query("DELETE FROM object_copy");
    const target = path.join(w.root, "restore-no-copies");
    const r = await w.run(["restore", "--target", target], drEnv);
    expect(r.code).not.toBe(0);
    expect(r.stderr).not.toMatch(/UnknownError/);
    expect(r.stderr).toMatch(new RegExp(`cannot read s3://${dr.bucket}/full/${SERVICE}/[0-9a-f-]+/manifest\\.json version \\S+ in region ${dr.region} \\(${dr.endpoint.replace(/[.]/g, "\\.")}\\): (NoSuchVersion|NoSuchKey|NoSuchKey or NoSuchVersion) \\(HTTP 404\\)`));
    expect(r.stderr).toMatch(/needs its own id \(the replicator records it in the catalog's object_copy\)/);
    expect(existsSync(target) ? readdirSync(target) : []).toEqual([]);
  });
});
