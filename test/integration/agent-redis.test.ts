/**
 * The agent against a real Redis 7 and the local RGW: an RDB snapshot streamed through zstd and
 * age, restored into a fresh Redis that serves the same keys; verify with redis-check-rdb;
 * corruption and key errors.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentWorld, flipByte, type AgentWorld } from "../support/s3.js";
import { startTmpRedis, type TmpRedis } from "../support/tmp-redis.js";
import { freePort } from "../support/tmp-postgres.js";
import { spawn } from "node:child_process";

let w: AgentWorld;
let redis: TmpRedis;
let env: Record<string, string>;
const SERVICE = "redis-cache";

function cli(port: number, password: string | undefined, args: string[]): string {
  const r = spawnSync("redis-cli", ["-p", String(port), "--no-auth-warning", ...args], { encoding: "utf8", env: { ...process.env, ...(password ? { REDISCLI_AUTH: password } : {}) } });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
}

/** Every key with its type and value, in two redis-cli calls (--csv puts each reply on one line). */
function snapshot(port: number, password?: string): Record<string, string> {
  const keys = cli(port, password, ["--scan"]).split("\n").filter(Boolean).sort();
  const batch = (cmds: string[][]) => {
    const input = cmds.map((c) => c.map((x) => JSON.stringify(x)).join(" ")).join("\n");
    const r = spawnSync("redis-cli", ["-p", String(port), "--no-auth-warning", "--csv"], { input, encoding: "utf8", env: { ...process.env, ...(password ? { REDISCLI_AUTH: password } : {}) } });
    return r.stdout.split("\n").slice(0, cmds.length);
  };
  const types = batch(keys.map((k) => ["TYPE", k])).map((t) => t.replace(/"/g, ""));
  const read: Record<string, (k: string) => string[]> = {
    string: (k) => ["GET", k],
    hash: (k) => ["HGETALL", k],
    list: (k) => ["LRANGE", k, "0", "-1"],
    set: (k) => ["SORT", k, "ALPHA"],
    zset: (k) => ["ZRANGE", k, "0", "-1", "WITHSCORES"],
  };
  const values = batch(keys.map((k, i) => read[types[i]!]!(k)));
  return Object.fromEntries(keys.map((k, i) => [k, `${types[i]}:${values[i]}`]));
}

beforeAll(async () => {
  w = await agentWorld("kdrtest-agent-redis");
  redis = await startTmpRedis();
  writeFileSync(path.join(w.secretDir, "kdr-target-password"), redis.password + "\n", { mode: 0o600 });
  const lines: string[] = [];
  for (let i = 0; i < 3000; i++) lines.push(`SET key:${i} ${"v".repeat(i % 50)}-${i}`);
  lines.push("HSET user:1 name ana plan pro", "RPUSH queue a b c d", "SADD tags x y z", "ZADD board 1 alice 2.5 bob");
  const p = spawnSync("redis-cli", ["-p", String(redis.port), "--no-auth-warning"], { input: lines.join("\n"), env: { ...process.env, REDISCLI_AUTH: redis.password! } });
  expect(p.status).toBe(0);
  env = w.env(SERVICE, { KDR_ENGINE: "redis", KDR_TARGET_HOST: redis.host, KDR_TARGET_PORT: String(redis.port) });
});

afterAll(async () => {
  await redis?.stop();
  await w?.close();
});

describe("agent: redis", () => {
  let backupId: string;
  let key: string;
  let versionId: string;

  it("backs up a consistent RDB and restores it into a fresh Redis that serves the same keys", async () => {
    const before = snapshot(redis.port, redis.password);
    expect(Object.keys(before).length).toBe(3004);
    const b = await w.run(["backup", "--type", "full", "--json"], env);
    expect(b.code, b.stderr).toBe(0);
    const sum = JSON.parse(b.stdout);
    backupId = sum.backupId;
    key = sum.artifacts[0].key;
    versionId = sum.artifacts[0].versionId;
    expect(sum.ratio).toBeGreaterThan(0);
    // Forked between the request and the first byte: a span, not one guessed instant.
    expect(Date.parse(sum.recoveryPoint.end)).toBeGreaterThanOrEqual(Date.parse(sum.recoveryPoint.start));
    console.log(`redis: raw ${sum.rawBytes} B, stored ${sum.storedBytes} B, measured ratio ${sum.ratio.toFixed(3)}`);
    // Later writes must not show up in the restore.
    cli(redis.port, redis.password, ["SET", "after-backup", "1"]);

    const target = path.join(w.root, "redis-restore");
    const r = await w.run(["restore", "--target", target], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/next: start redis-server/);
    const port = await freePort();
    const srv = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--dir", target, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
    try {
      for (let i = 0; i < 50; i++) {
        const ping = spawnSync("redis-cli", ["-p", String(port), "PING"], { encoding: "utf8" });
        if (ping.stdout.trim() === "PONG") break;
        await new Promise((res) => setTimeout(res, 100));
      }
      expect(snapshot(port)).toEqual(before);
    } finally {
      srv.kill("SIGKILL");
    }
  });

  it("refuses to restore over a non-empty target without --force-overwrite-source --yes", async () => {
    const target = path.join(w.root, "redis-restore");
    const r = await w.run(["restore", "--target", target], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/is not empty: give an empty or new directory \(or --force-overwrite-source --yes/);
  });

  it("verify passes with redis-check-rdb, then catches a flipped byte; restore refuses the damaged object", async () => {
    const ok = await w.run(["verify", "--json"], env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).checks.join("\n")).toMatch(/redis-check-rdb/);
    // A restore of the verified RDB does not parse it again (its SHA-256 is the verified bytes'):
    // the file it writes is the RDB redis-check-rdb passed.
    const again = path.join(w.root, "redis-restore-verified");
    const rv = await w.run(["restore", "--target", again, "--backup-id", backupId], env);
    expect(rv.code, rv.stderr).toBe(0);
    expect(rv.stderr).toMatch(/has the SHA-256 of the RDB that passed redis-check-rdb at its verify \(.*\); not parsed again/);
    const parsed = spawnSync("redis-check-rdb", [path.join(again, "dump.rdb")], { encoding: "utf8" });
    expect(parsed.status, parsed.stdout + parsed.stderr).toBe(0);
    const bad = await flipByte(w.bucket, key, versionId);
    await w.db.query("UPDATE backup_artifact SET version_id = $1 WHERE backup_id = $2 AND object_key = $3", [bad, backupId, key]);
    const v = await w.run(["verify", "--backup-id", backupId], env);
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(/FAILED[\s\S]*SHA-256 of .* the catalog recorded/);
    const target = path.join(w.root, "redis-restore-bad");
    const r = await w.run(["restore", "--target", target, "--backup-id", backupId], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/dump.rdb: SHA-256 of .* the catalog recorded/);
    expect(existsSync(target) ? readdirSync(target) : []).toEqual([]);
  });

  it("honours the incremental schedule: serve takes an RDB snapshot on each run, kept under incremental/, and restore uses the newest", async () => {
    const port = await freePort();
    const serve = w.start(["serve"], { ...env, KDR_METRICS_PORT: String(port), KDR_SCHEDULE_INCREMENTAL: "*/3 * * * * *" });
    let rows: { backup_id: string; storage_prefix: string; recovery_point_end: Date }[] = [];
    const deadline = Date.now() + 45_000;
    while (Date.now() < deadline && rows.length < 3) {
      await new Promise((r) => setTimeout(r, 1000));
      rows = (await w.db.query("SELECT backup_id, storage_prefix, recovery_point_end FROM backup_management WHERE service_name = $1 AND backup_type = 'incremental' AND backup_status = 'completed' ORDER BY recovery_point_end", [SERVICE])).rows;
    }
    cli(redis.port, redis.password, ["SET", "after-incrementals", "1"]);
    serve.kill("SIGTERM");
    await new Promise((r) => serve.once("close", r));
    expect(rows.length, serve.output()).toBeGreaterThanOrEqual(3);
    for (const r of rows) expect(r.storage_prefix).toBe(`incremental/${SERVICE}/${r.backup_id}/`);
    const target = path.join(w.root, "redis-restore-incremental");
    const r = await w.run(["restore", "--target", target, "--json"], env);
    expect(r.code, r.stderr).toBe(0);
    const newest = (await w.db.query("SELECT backup_id FROM backup_management WHERE service_name = $1 AND backup_status = 'completed' ORDER BY recovery_point_end DESC LIMIT 1", [SERVICE])).rows[0];
    expect(JSON.parse(r.stdout).backupId).toBe(newest.backup_id);
    expect(existsSync(path.join(target, "dump.rdb"))).toBe(true);
  }, 90_000);

  it("a missing secret or a private key given as the recipient stops the backup with a clear message", async () => {
    const r = await w.run(["backup"], { ...env, KDR_SECRET_DIR: path.join(w.root, "empty-secrets") });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/secret kdr-(s3-access-key|catalog-password|age-recipient) is missing/);
    // A private key put where the public recipient belongs is refused, naming the secret.
    const dir = path.join(w.root, "bad-secrets");
    mkdirSync(dir);
    for (const f of readdirSync(w.secretDir)) copyFileSync(path.join(w.secretDir, f), path.join(dir, f));
    copyFileSync(path.join(w.secretDir, "kdr-age-identity"), path.join(dir, "kdr-age-recipient"));
    const bad = await w.run(["backup"], { ...env, KDR_SECRET_DIR: dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/is not an age public key: put the 'age1\.\.\.' line printed by 'age-keygen -y' into the kdr-age-recipient secret \(never the private key\)/);
  });
});
