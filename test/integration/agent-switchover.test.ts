/**
 * `kdr-agent standby switchover` (failback, runbook §9c) inside the agent image, on real servers:
 * a PostgreSQL 15 primary with a streaming standby (pg_basebackup -R) and a Redis primary with its
 * replica, each written to without pause while the switchover runs. The standby takes over only
 * once it holds the fenced primary's last acknowledged write; a refusal lifts the fence.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPlatform } from "../../local/platform.js";
import { agentWorld, type AgentWorld } from "../support/s3.js";
import { startTmpPostgres, type TmpPostgres } from "../support/tmp-postgres.js";
import { startTmpRedis, type TmpRedis } from "../support/tmp-redis.js";
import { runAsync } from "../support/spawn.js";

let w: AgentWorld;
let secretDir: string;
let primary: TmpPostgres;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  w = await agentWorld("kdrtest-switchover");
  primary = await startTmpPostgres();
  cleanups.push(() => primary.stop());
  // One password for every server here (the Redis pair takes the PostgreSQL superuser's).
  secretDir = mkdtempSync(path.join(tmpdir(), "kdrtest-switchover-secrets-"));
  cpSync(w.secretDir, secretDir, { recursive: true });
  writeFileSync(path.join(secretDir, "kdr-target-password"), primary.password + "\n", { mode: 0o600 });
  await pgQuery(primary, "CREATE TABLE w (id int PRIMARY KEY)");
}, 120_000);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  rmSync(secretDir, { recursive: true, force: true });
  await w?.close();
});

/** `kdr-agent standby switchover` in a fresh container of the agent image (host network). */
async function switchover(service: string, extra: Record<string, string>) {
  const env = w.env(service, { KDR_RTO_SECONDS: "900", KDR_RPO_SECONDS: "300", ...extra });
  const e = Object.entries(env).filter(([k]) => k.startsWith("KDR_") && k !== "KDR_SECRET_DIR" && k !== "KDR_STATE_DIR");
  return runAsync("docker", ["run", "--rm", "--network", "host", "-v", `${secretDir}:/run/secrets:ro`, ...e.flatMap(([k, v]) => ["-e", `${k}=${v}`]), "--entrypoint", "kdr-agent", readPlatform().images.agent, "standby", "switchover", "--json"], { timeoutMs: 180_000 });
}

/** Writes rows one by one, as a client would, until stopped; keeps the ids each server acknowledged. */
function pgWriter(server: TmpPostgres) {
  const acked: number[] = [];
  const refused: string[] = [];
  let stop = false;
  const done = (async () => {
    let c: pg.Client | undefined;
    for (let id = 1; !stop; id++) {
      try {
        if (!c) {
          c = new pg.Client({ connectionString: server.url });
          c.on("error", () => undefined);
          await c.connect();
        }
        await c.query("INSERT INTO w (id) VALUES ($1)", [id]);
        acked.push(id);
      } catch (e) {
        refused.push((e as Error).message);
        await c?.end().catch(() => undefined);
        c = undefined;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await c?.end().catch(() => undefined);
  })();
  return { acked, refused, stop: async () => ((stop = true), await done) };
}

async function pgQuery<T extends pg.QueryResultRow>(server: TmpPostgres, sql: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: server.url });
  await c.connect();
  try {
    return (await c.query<T>(sql)).rows;
  } finally {
    await c.end();
  }
}

/** Until the standby's WAL receiver streams (pg_ctl returns before it connects). */
async function streaming(standby: TmpPostgres): Promise<void> {
  for (let i = 0; i < 150; i++) {
    if ((await pgQuery(standby, "SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'")).length) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the standby on port ${standby.port} does not stream after 30 s`);
}

describe("standby switchover of PostgreSQL, inside the agent image", () => {
  it("a standby that cannot reach the primary's last write in time is not promoted, and the primary takes writes again", async () => {
    // A standby that applies WAL a minute late: it cannot catch up within the 3 s given.
    const late = await startTmpPostgres({ standbyOf: primary, settings: { recovery_min_apply_delay: "'60s'" } });
    cleanups.push(() => late.stop());
    await streaming(late);
    await pgQuery(primary, "INSERT INTO w SELECT g FROM generate_series(100001, 100010) g");
    const r = await switchover("pg-late", { KDR_ENGINE: "postgres", KDR_TARGET_HOST: "127.0.0.1", KDR_TARGET_PORT: String(late.port), KDR_TARGET_USER: "postgres", KDR_PRIMARY_HOST: "127.0.0.1", KDR_PRIMARY_PORT: String(primary.port), KDR_CATCH_UP_SECONDS: "3" });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/the standby 127\.0\.0\.1 replayed up to \S+ in 3 s, not the primary's last write at \S+: promoting it would lose what lies between; .*; the fence is lifted: 127\.0\.0\.1 takes writes again/);
    expect((await pgQuery<{ r: boolean }>(late, "SELECT pg_is_in_recovery() AS r"))[0]!.r).toBe(true);
    // The fence is lifted: the primary takes writes again.
    await pgQuery(primary, "INSERT INTO w VALUES (100011)");
    expect((await pgQuery<{ v: string }>(primary, "SELECT current_setting('default_transaction_read_only') AS v"))[0]!.v).toBe("off");
    await late.stop();
  }, 240_000);

  it("hands over while a client writes: every acknowledged write is on the promoted standby, the old primary refuses writes, and the catalog records the failback", async () => {
    const standby = await startTmpPostgres({ standbyOf: primary });
    cleanups.push(() => standby.stop());
    await streaming(standby);
    const writer = pgWriter(primary);
    await new Promise((r) => setTimeout(r, 2000));
    const r = await switchover("pg-switch", { KDR_ENGINE: "postgres", KDR_TARGET_HOST: "127.0.0.1", KDR_TARGET_PORT: String(standby.port), KDR_TARGET_USER: "postgres", KDR_PRIMARY_HOST: "127.0.0.1", KDR_PRIMARY_PORT: String(primary.port) });
    await writer.stop();
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { alreadyActive: boolean; handedOverAt: string; seconds: Record<string, number>; recoveryId: string };
    expect(out.alreadyActive).toBe(false);
    expect(r.stderr).toMatch(/standby switchover pg-switch: 127\.0\.0\.1 is read-only, its sessions ended, its WAL switched at \S+; waiting for 127\.0\.0\.1 to replay up to there/);
    expect(writer.acked.length, "writes acknowledged before the fence").toBeGreaterThan(10);
    // The fence cut the writer off: its session ended, then every write was refused as read-only.
    expect(writer.refused.some((m) => /read-only transaction/.test(m)), writer.refused.slice(0, 3).join("; ")).toBe(true);
    expect((await pgQuery<{ r: boolean }>(standby, "SELECT pg_is_in_recovery() AS r"))[0]!.r).toBe(false);
    const onStandby = new Set((await pgQuery<{ id: number }>(standby, "SELECT id FROM w")).map((x) => x.id));
    expect(writer.acked.filter((id) => !onStandby.has(id)), "acknowledged writes missing on the promoted standby").toEqual([]);
    await pgQuery(standby, "INSERT INTO w VALUES (200001)");
    await expect(pgQuery(primary, "INSERT INTO w VALUES (200002)")).rejects.toThrow(/read-only transaction/);
    const { rows } = await w.db.query("SELECT incident_type, recovery_status, affected_services, phase_timings, metadata FROM disaster_recovery_log WHERE recovery_id = $1", [out.recoveryId]);
    expect(rows[0]).toMatchObject({ incident_type: "failback", recovery_status: "completed", affected_services: ["pg-switch"], metadata: { fencedPrimary: "127.0.0.1", handedOverAt: out.handedOverAt } });
    expect(Object.keys(rows[0].phase_timings).sort()).toEqual(["catch_up", "fence", "promote"]);
    // Run again (a deployment repeated): nothing to do.
    const again = await switchover("pg-switch", { KDR_ENGINE: "postgres", KDR_TARGET_HOST: "127.0.0.1", KDR_TARGET_PORT: String(standby.port), KDR_TARGET_USER: "postgres", KDR_PRIMARY_HOST: "127.0.0.1", KDR_PRIMARY_PORT: String(primary.port) });
    expect(again.status, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).alreadyActive).toBe(true);
  }, 240_000);
});

describe("standby switchover of Redis, inside the agent image", () => {
  const cli = (server: TmpRedis, ...args: string[]) => {
    const r = spawnSync("redis-cli", ["-p", String(server.port), "--no-auth-warning", ...args], { encoding: "utf8", timeout: 20_000, env: { ...process.env, REDISCLI_AUTH: primary.password } });
    return r.stdout.trim();
  };
  const env = (m: TmpRedis, r: TmpRedis, extra: Record<string, string> = {}) => ({ KDR_ENGINE: "redis", KDR_TARGET_HOST: "127.0.0.1", KDR_TARGET_PORT: String(r.port), KDR_PRIMARY_HOST: "127.0.0.1", KDR_PRIMARY_PORT: String(m.port), ...extra });

  let lone: TmpRedis;
  it("a replica whose link is down is not promoted, and nothing changes", async () => {
    const m = await startTmpRedis({ password: primary.password });
    cleanups.push(() => m.stop());
    lone = m;
    const r = await startTmpRedis({ password: primary.password, settings: { replicaof: `127.0.0.1 ${m.port}`, masterauth: "wrong" } });
    cleanups.push(() => r.stop());
    const res = await switchover("redis-down", env(m, r));
    expect(res.status, res.stderr).toBe(1);
    expect(res.stderr).toMatch(/the Redis replica 127\.0\.0\.1's link to 127\.0\.0\.1 is down: it must be up to take the primary's last write/);
    expect(cli(r, "ROLE").split("\n")[0]).toBe("slave");
    expect(cli(m, "SET", "k", "v")).toBe("OK");
  }, 120_000);

  it("hands over while a client writes: every acknowledged write is on the new master, and the old one is its replica", async () => {
    const m = await startTmpRedis({ password: primary.password, settings: { masterauth: primary.password } });
    cleanups.push(() => m.stop());
    const r = await startTmpRedis({ password: primary.password, settings: { replicaof: `127.0.0.1 ${m.port}`, masterauth: primary.password } });
    cleanups.push(() => r.stop());
    for (let i = 0; i < 150 && !/master_link_status:up/.test(cli(r, "INFO", "replication")); i++) await new Promise((x) => setTimeout(x, 200));
    expect(cli(r, "INFO", "replication")).toMatch(/master_link_status:up/);
    // Named against a primary it does not replicate from: refused, naming what that one lists.
    const wrong = await switchover("redis-switch", env(lone, r));
    expect(wrong.status, wrong.stderr).toBe(1);
    expect(wrong.stderr).toMatch(new RegExp(`127\\.0\\.0\\.1 does not list 127\\.0\\.0\\.1 \\(127\\.0\\.0\\.1 port ${r.port}\\) among its replicas \\(it lists none\\): the standby must replicate from this primary`));
    // A writer through redis-cli's pipe: one SET per line, each reply read back.
    const acked: string[] = [];
    let stop = false;
    const writer = (async () => {
      for (let i = 1; !stop; i++) {
        const reply = await runAsync("redis-cli", ["-p", String(m.port), "--no-auth-warning", "SET", `k${i}`, String(i)], { timeoutMs: 60_000, env: { ...process.env, REDISCLI_AUTH: primary.password } });
        if (reply.stdout.trim() === "OK") acked.push(`k${i}`);
        else await new Promise((x) => setTimeout(x, 50));
      }
    })();
    await new Promise((x) => setTimeout(x, 1500));
    const res = await switchover("redis-switch", env(m, r));
    stop = true;
    await writer;
    expect(res.status, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ alreadyActive: false, engine: "redis" });
    expect(res.stderr).toMatch(/standby switchover redis-switch: 127\.0\.0\.1's writes are paused \(FAILOVER\); waiting for 127\.0\.0\.1 to take its replication stream \(offset \d+ and on\)/);
    expect(acked.length).toBeGreaterThan(5);
    expect(cli(r, "ROLE").split("\n")[0]).toBe("master");
    const missing = acked.filter((k) => cli(r, "EXISTS", k) !== "1");
    expect(missing, "acknowledged writes missing on the new master").toEqual([]);
    expect(cli(m, "ROLE").split("\n")[0]).toBe("slave");
    expect(cli(m, "SET", "late", "1")).toMatch(/READONLY/);
    expect(cli(r, "SET", "after", "1")).toBe("OK");
  }, 180_000);
});
