/**
 * The agent against a real PostgreSQL 15 primary, a real catalog and the local RGW: full base +
 * WAL, incremental, restore (latest and PITR) into a fresh server, verify, corruption, keys,
 * killed runs, and calculate_backup_metrics().
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, existsSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentWorld, flipByte, pgQuery as q, prepareBackupRole, restoredChecksums, startRestored, tableChecksums, type AgentWorld } from "../support/s3.js";
import { startTmpPostgres, type TmpPostgres } from "../support/tmp-postgres.js";
import { replicationSlotName } from "../../contract/index.js";

let w: AgentWorld;
let primary: TmpPostgres;
let env: Record<string, string>;
const SERVICE = "pg-main";

function json<T>(r: { code: number | null; stdout: string; stderr: string }): T {
  if (r.code !== 0) throw new Error(`agent exited ${r.code}\n${r.stderr}\n${r.stdout}`);
  return JSON.parse(r.stdout) as T;
}

interface Summary {
  backupId: string;
  rawBytes: number;
  storedBytes: number;
  ratio: number;
  artifacts: { name: string; key: string; versionId?: string; sha256: string }[];
}

beforeAll(async () => {
  w = await agentWorld("kdrtest-agent-pg");
  primary = await startTmpPostgres();
  const targetEnv = await prepareBackupRole(primary, w.secretDir);
  await q(primary.urlFor("app"), "CREATE TABLE items (id int PRIMARY KEY, body text NOT NULL, n bigint)");
  await q(primary.urlFor("app"), "INSERT INTO items SELECT g, md5(g::text) || repeat('x', 60), g * 7 FROM generate_series(1, 100000) g");
  await q(primary.urlFor("app"), "CREATE TABLE events (id serial PRIMARY KEY, label text, at timestamptz DEFAULT clock_timestamp())");
  await q(primary.url, "CREATE TABLE public.settings (k text PRIMARY KEY, v jsonb)");
  await q(primary.url, `INSERT INTO settings VALUES ('a', '{"x":1}'), ('b', '[1,2,3]')`);
  env = w.env(SERVICE, targetEnv);
});

afterAll(async () => {
  await primary?.stop().catch(() => undefined);
  await w?.close();
});

describe("agent: postgres", () => {
  let full: Summary;
  let tA: Date;
  let tMid: Date;
  let sourceSums: Record<string, string>;
  let incId: string;

  it("refuses an incremental before any full, naming the fix", async () => {
    const r = await w.run(["backup", "--type", "incremental"], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no completed full backup of pg-main yet: run 'kdr-agent backup --type full' first/);
    // Refused before any streaming: no slot left holding WAL for a run that did nothing.
    expect(await q(primary.url, "SELECT slot_name FROM pg_replication_slots")).toEqual([]);
  });

  it("takes a full base backup (+ logical dumps) streamed through zstd and age, recorded with measured sizes", async () => {
    // The slot as the stack declares it (the provider creates it reserving no WAL): the agent
    // makes it reserve in place. Watched all along: a slot dropped and created again would be
    // seen gone by the deployer's drift check (a CI deploy once failed so).
    const slot = replicationSlotName(SERVICE);
    await q(primary.url, `SELECT pg_create_physical_replication_slot('${slot}')`);
    const watcher = new pg.Client({ connectionString: primary.url });
    await watcher.connect();
    let watching = true;
    const seen: string[] = [];
    const watch = (async () => {
      while (watching) {
        const { rows } = await watcher.query(`SELECT restart_lsn::text AS r FROM pg_replication_slots WHERE slot_name = '${slot}'`);
        seen.push(rows[0] ? (rows[0].r ? "reserving" : "declared") : "absent");
        await new Promise((r) => setTimeout(r, 20));
      }
    })().finally(() => watcher.end());
    const run = await w.run(["backup", "--type", "full", "--json"], env).finally(() => (watching = false));
    await watch;
    full = json<Summary>(run);
    expect(seen).not.toContain("absent");
    expect(seen[0]).toBe("declared");
    expect(seen.at(-1)).toBe("reserving");
    expect(run.stderr).toMatch(new RegExp(`slot ${slot} \\(declared without reserving WAL\\) now reserves it, from [0-9A-F]+/[0-9A-F]+`));
    const [row] = (await w.db.query("SELECT * FROM backup_management WHERE backup_id = $1", [full.backupId])).rows;
    expect(row.backup_status).toBe("completed");
    expect(Number(row.raw_size)).toBe(full.rawBytes);
    expect(Number(row.backup_size)).toBe(full.storedBytes);
    expect(Number(row.compression_ratio)).toBeCloseTo(full.storedBytes / full.rawBytes, 3);
    expect(Number(row.compression_ratio)).toBeLessThan(1);
    expect(row.tool_version).toMatch(/pg_basebackup \(PostgreSQL\) 15/);
    expect(row.encryption_key_id).toMatch(/^age-[0-9a-f]{16}$/);
    expect(row.start_lsn).toBeTruthy();
    expect(row.backup_location).toBe(`s3://${w.bucket.bucket}/full/${SERVICE}/${full.backupId}/`);
    const arts = (await w.db.query("SELECT role, object_key, sha256, size_bytes FROM backup_artifact WHERE backup_id = $1 ORDER BY object_key", [full.backupId])).rows;
    expect(arts.map((a) => a.role).sort()).toEqual(["base", "dump", "dump", "manifest"]);
    for (const a of arts) expect(a.sha256).toMatch(/^[0-9a-f]{64}$/);
    // Stored bytes are age ciphertext, not a tar: the first bytes are age's header.
    const obj = await w.bucket.client.send(new (await import("@aws-sdk/client-s3")).GetObjectCommand({ Bucket: w.bucket.bucket, Key: full.artifacts[0]!.key, Range: "bytes=0-20" }));
    expect(Buffer.from(await obj.Body!.transformToByteArray()).toString()).toMatch(/^age-encryption.org\/v1/);
  });

  it("archives WAL with an incremental run and restores to the latest point with identical tables", async () => {
    await q(primary.urlFor("app"), "INSERT INTO events (label) VALUES ('A')");
    tA = (await q<{ t: Date }>(primary.url, "SELECT clock_timestamp() AS t"))[0]!.t;
    await new Promise((r) => setTimeout(r, 1200));
    tMid = (await q<{ t: Date }>(primary.url, "SELECT clock_timestamp() AS t"))[0]!.t;
    await new Promise((r) => setTimeout(r, 1200));
    await q(primary.urlFor("app"), "INSERT INTO events (label) VALUES ('B')");
    // A 1% change: 1000 of 100000 rows.
    await q(primary.urlFor("app"), "UPDATE items SET n = n + 1 WHERE id <= 1000");
    sourceSums = await tableChecksums(primary.urlFor);

    const inc = json<Summary>(await w.run(["backup", "--type", "incremental", "--json"], env));
    incId = inc.backupId;
    const base = (await w.db.query("SELECT start_lsn::text, end_lsn::text FROM backup_management WHERE backup_id = $1", [full.backupId])).rows[0];
    const segs = (await w.db.query("SELECT segment_name, covers_until FROM wal_segment ORDER BY segment_name")).rows;
    console.log("base", base, "archived WAL", segs.map((x) => x.segment_name).join(" "));
    console.log(`postgres: full stored ${full.storedBytes} B (raw ${full.rawBytes} B, ratio ${full.ratio.toFixed(3)}); incremental after a 1% change stored ${inc.storedBytes} B = ${((100 * inc.storedBytes) / full.storedBytes).toFixed(2)}% of the full`);
    expect(inc.artifacts.length).toBeGreaterThan(0);
    expect(inc.storedBytes).toBeLessThan(0.1 * full.storedBytes);

    const target = path.join(w.root, "restore-latest");
    const r = await w.run(["restore", "--target", target, "--json"], env);
    const sum = json<{ walSegments: number; artifactsChecked: number }>(r);
    expect(sum.walSegments).toBeGreaterThan(0);
    expect(sum.artifactsChecked).toBe(sum.walSegments + 2); // + base.tar and the manifest
    expect(await restoredChecksums(target, primary.password)).toEqual(sourceSums);
  });

  it("restores to a point in time between two committed transactions", async () => {
    expect(tMid.getTime()).toBeGreaterThan(tA.getTime());
    const target = path.join(w.root, "restore-pitr");
    const uid = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" }).stdout.trim();
    const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" }).stdout.trim();
    json(await w.run(["restore", "--target", target, "--time", tMid.toISOString(), "--owner", `${uid}:${gid}`, "--json"], env));
    const srv = await startRestored(target, primary.password);
    try {
      const labels = (await q<{ label: string }>(srv.url("app"), "SELECT label FROM events ORDER BY id")).map((x) => x.label);
      expect(labels).toEqual(["A"]);
      // The staged WAL lived inside the data dir and is removed when recovery ends.
      expect(existsSync(path.join(target, "kdr_restore_wal"))).toBe(false);
    } finally {
      srv.stop();
    }
  });

  it("verify re-reads and checks the backup with pg_verifybackup, and health reports freshness", async () => {
    const v = json<{ passed: boolean; checks: string[] }>(await w.run(["verify", "--backup-id", full.backupId, "--json"], env, { timeoutMs: 50_000 }));
    expect(v.passed).toBe(true);
    expect(v.checks.join("\n")).toMatch(/backup successfully verified/);
    const [row] = (await w.db.query("SELECT verify_status, verified_at FROM backup_management WHERE backup_id = $1", [full.backupId])).rows;
    expect(row.verify_status).toBe("passed");
    // An incremental's artifacts are its WAL segments: each re-read, decrypted and decompressed.
    const vi = json<{ passed: boolean; checks: string[] }>(await w.run(["verify", "--backup-id", incId, "--json"], env));
    expect(vi.passed).toBe(true);
    expect(vi.checks.filter((c) => /^[0-9A-F]{24}: decrypt \+ zstd ok$/.test(c)).length).toBeGreaterThan(0);
    const h = await w.run(["health", "--json"], { ...env, KDR_RPO_SECONDS: "3600" });
    expect(h.code).toBe(0);
    const stale = await w.run(["health"], { ...env, KDR_RPO_SECONDS: "0" });
    expect(stale.code).toBe(1);
    expect(stale.stdout).toMatch(/STALE: the newest verified recovery point of 'pg-main' is .* over the RPO/);
  });

  it("a missing or wrong key fails with a clear message and writes nothing", async () => {
    const noKeyDir = mkdtempSync(path.join(tmpdir(), "kdrtest-agent-nokey-"));
    for (const f of readdirSync(w.secretDir)) if (f !== "kdr-age-identity") copyFileSync(path.join(w.secretDir, f), path.join(noKeyDir, f));
    const t1 = path.join(w.root, "restore-nokey");
    const missing = await w.run(["restore", "--target", t1], { ...env, KDR_SECRET_DIR: noKeyDir });
    expect(missing.code).toBe(2);
    // What a backup sidecar holds: the public key only. The message names where to run instead.
    expect(missing.stderr).toMatch(/this container holds only the age public key \(a backup sidecar cannot read backups, by design\).*docker exec -it \$\(docker ps -qf name=<prefix>-drill\) kdr-agent verify --service pg-main --engine postgres/);
    spawnSync("age-keygen", ["-o", path.join(noKeyDir, "kdr-age-identity")]);
    const wrong = await w.run(["restore", "--target", t1], { ...env, KDR_SECRET_DIR: noKeyDir });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/wrong decryption key: the backup was encrypted for key id age-[0-9a-f]+, but the age identity in .* has key id age-[0-9a-f]+/);
    expect(existsSync(t1) ? readdirSync(t1) : []).toEqual([]);
    rmSync(noKeyDir, { recursive: true, force: true });
  });

  it("a flipped byte in the stored base is caught by verify and by restore, which leaves the target empty", async () => {
    const base = full.artifacts.find((a) => a.name === "base.tar")!;
    // S3 versioning keeps the good copy; the catalog is pointed at the damaged version to
    // stand in for bit rot in place.
    const bad = await flipByte(w.bucket, base.key, base.versionId);
    await w.db.query("UPDATE backup_artifact SET version_id = $1 WHERE backup_id = $2 AND object_key = $3", [bad, full.backupId, base.key]);
    const v = await w.run(["verify", "--backup-id", full.backupId, "--json"], env);
    expect(v.code).toBe(1);
    expect(JSON.parse(v.stdout).error).toMatch(/SHA-256 of s3:\/\/.* is [0-9a-f]{64}, the catalog recorded [0-9a-f]{64}/);
    const [row] = (await w.db.query("SELECT verify_status FROM backup_management WHERE backup_id = $1", [full.backupId])).rows;
    expect(row.verify_status).toBe("failed");
    const target = path.join(w.root, "restore-corrupt");
    const r = await w.run(["restore", "--target", target, "--backup-id", full.backupId], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/base.tar: SHA-256 of .* the catalog recorded/);
    expect(existsSync(target) ? readdirSync(target) : []).toEqual([]);
    // A latest restore no longer picks a backup that failed verification.
    const plan = await w.run(["restore", "--target", target], env);
    expect(plan.code).not.toBe(0);
    // ... and says which backup it passed over, and why.
    expect(plan.stderr).toMatch(new RegExp(`every completed full backup of 'pg-main' failed verification, so none is restored from: ${full.backupId} \\(point [^)]+\\): .*SHA-256 of s3://`));
  });

  it("a run killed mid-upload leaves no completed row and no manifest; the next run reconciles it and succeeds", async () => {
    const slow = w.start(["backup", "--type", "full"], { ...env, KDR_PG_MAX_RATE: "512k" });
    let id: string | undefined;
    for (let i = 0; i < 100 && !id; i++) {
      await new Promise((r) => setTimeout(r, 200));
      const rows = (await w.db.query("SELECT backup_id FROM backup_management WHERE backup_status = 'running' AND service_name = $1", [SERVICE])).rows;
      id = rows[0]?.backup_id;
    }
    expect(id, slow.output()).toBeTruthy();
    await new Promise((r) => setTimeout(r, 1500));
    slow.kill("SIGKILL");
    await new Promise((r) => slow.once("close", r));
    const [killed] = (await w.db.query("SELECT backup_status FROM backup_management WHERE backup_id = $1", [id])).rows;
    expect(killed.backup_status).toBe("running");
    const { ListObjectsV2Command } = await import("@aws-sdk/client-s3");
    const listed = await w.bucket.client.send(new ListObjectsV2Command({ Bucket: w.bucket.bucket, Prefix: `full/${SERVICE}/${id}/` }));
    expect((listed.Contents ?? []).map((o) => o.Key)).not.toContain(`full/${SERVICE}/${id}/manifest.json`);

    const next = json<Summary & { reconciled: string[] }>(await w.run(["backup", "--type", "full", "--no-logical", "--json"], env));
    expect(next.reconciled).toEqual([id]);
    const [after] = (await w.db.query("SELECT backup_status, error_message FROM backup_management WHERE backup_id = $1", [id])).rows;
    expect(after.backup_status).toBe("failed");
    expect(after.error_message).toMatch(/stopped reporting/);
  });

  it("a run stopped with SIGTERM records itself as failed at once", async () => {
    const slow = w.start(["backup", "--type", "full"], { ...env, KDR_PG_MAX_RATE: "512k" });
    let id: string | undefined;
    for (let i = 0; i < 100 && !id; i++) {
      await new Promise((r) => setTimeout(r, 200));
      id = (await w.db.query("SELECT backup_id FROM backup_management WHERE backup_status = 'running' AND service_name = $1", [SERVICE])).rows[0]?.backup_id;
    }
    expect(id, slow.output()).toBeTruthy();
    slow.kill("SIGTERM");
    const code = await new Promise((r) => slow.once("close", (c) => r(c)));
    expect(code).toBe(143);
    const [row] = (await w.db.query("SELECT backup_status, error_message FROM backup_management WHERE backup_id = $1", [id])).rows;
    expect(row.backup_status).toBe("failed");
    expect(row.error_message).toMatch(/stopped by SIGTERM before it finished/);
  });

  it("a second run for the same service refuses instead of interleaving", async () => {
    const first = w.start(["backup", "--type", "full", "--no-logical"], { ...env, KDR_PG_MAX_RATE: "8M" });
    for (let i = 0; i < 100; i++) {
      const rows = (await w.db.query("SELECT 1 FROM backup_management WHERE backup_status = 'running' AND service_name = $1", [SERVICE])).rows;
      if (rows.length) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const second = await w.run(["backup", "--type", "full"], env);
    expect(second.code).toBe(2);
    expect(second.stderr).toMatch(/another backup run for 'pg-main' is in progress/);
    const code = await new Promise((r) => first.once("close", r));
    expect(code, first.output()).toBe(0);
  });

  it("a full without --logical takes the logical dumps only when due, and says why either way", async () => {
    const roles = async (id: string) => (await w.db.query("SELECT role FROM backup_artifact WHERE backup_id = $1 ORDER BY role", [id])).rows.map((r) => r.role as string);
    // The first full took them, but a verify failed it above (the flipped byte): due again.
    const r1 = await w.run(["backup", "--type", "full", "--json"], env);
    const s1 = json<Summary>(r1);
    expect(await roles(s1.backupId)).toEqual(["base", "dump", "dump", "manifest"]);
    expect(r1.stderr).toMatch(/logical dumps taken: no backup of this service carries them yet \(none whose verify did not fail\)/);
    // The next full, as the schedule runs it, leaves them out and says when they are due.
    const r2 = await w.run(["backup", "--type", "full", "--json"], env);
    expect(await roles(json<Summary>(r2).backupId)).toEqual(["base", "manifest"]);
    expect(r2.stderr).toMatch(new RegExp(`logical dumps not due: the newest, in backup ${s1.backupId}, began [0-9.]+ hours ago \\(every 7 days; --logical takes them now\\)`));
    // Every full at 0 days.
    const r3 = await w.run(["backup", "--type", "full", "--json"], { ...env, KDR_PG_LOGICAL_EVERY_DAYS: "0" });
    expect(await roles(json<Summary>(r3).backupId)).toEqual(["base", "dump", "dump", "manifest"]);
    expect(r3.stderr).toMatch(/logical dumps taken: with every full \(pgLogicalEveryDays 0\)/);
    // Both flags at once is a mistake, named before anything runs.
    const both = await w.run(["backup", "--type", "full", "--logical", "--no-logical"], env);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--logical and --no-logical contradict each other/);
  });

  it("calculate_backup_metrics() reports these runs", async () => {
    const v = await w.run(["verify"], env);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const rows = (await w.db.query("SELECT backup_status, count(*)::int AS n, sum(backup_size) FILTER (WHERE backup_status = 'completed')::bigint AS bytes FROM backup_management WHERE service_name = $1 GROUP BY 1", [SERVICE])).rows;
    const by = Object.fromEntries(rows.map((r) => [r.backup_status, r]));
    const [m] = (await w.db.query("SELECT * FROM calculate_backup_metrics($1) WHERE service_name = $2", [w.tenantId, SERVICE])).rows;
    console.log("calculate_backup_metrics:", m);
    expect(Number(m.total_backups)).toBe(rows.reduce((a, r) => a + r.n, 0));
    expect(Number(m.successful_backups)).toBe(by.completed.n);
    expect(Number(m.failed_backups)).toBe(by.failed.n);
    expect(Number(m.failed_backups)).toBeGreaterThanOrEqual(1);
    expect(Number(m.storage_usage_bytes)).toBe(Number(by.completed.bytes));
    expect(Number(m.success_rate)).toBeCloseTo((100 * by.completed.n) / (by.completed.n + by.failed.n), 1);
    expect(m.last_verified_backup_age).not.toBeNull();
  });

  it("a flipped byte in a stored logical dump is caught by verify, which names the dump and the stored object", async () => {
    const withDumps = json<Summary>(await w.run(["backup", "--type", "full", "--logical", "--json"], env));
    const dump = withDumps.artifacts.find((a) => a.name.endsWith(".dump"))!;
    expect(dump, JSON.stringify(withDumps.artifacts)).toBeTruthy();
    const bad = await flipByte(w.bucket, dump.key, dump.versionId);
    await w.db.query("UPDATE backup_artifact SET version_id = $1 WHERE backup_id = $2 AND object_key = $3", [bad, withDumps.backupId, dump.key]);
    const v = await w.run(["verify", "--backup-id", withDumps.backupId, "--json"], env);
    expect(v.code, v.stdout + v.stderr).toBe(1);
    const esc = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    expect(JSON.parse(v.stdout).error).toMatch(new RegExp(`${esc(dump.name)}: SHA-256 of ${esc(`s3://${w.bucket.bucket}/${dump.key} (version ${bad})`)} is [0-9a-f]{64}, the catalog recorded [0-9a-f]{64}`));
    const [row] = (await w.db.query("SELECT verify_status FROM backup_management WHERE backup_id = $1", [withDumps.backupId])).rows;
    expect(row.verify_status).toBe("failed");
  });
});
