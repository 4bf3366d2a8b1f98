/** The throwaway servers other tests build on: real PostgreSQL 15 (replication-ready) and Redis. */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { PG_BIN, startTmpPostgres } from "../support/tmp-postgres.js";
import { startTmpRedis } from "../support/tmp-redis.js";

function redisSay(port: number, lines: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port });
    let buf = "";
    s.on("error", reject);
    s.on("connect", () => s.write(lines.map((l) => l + "\r\n").join("")));
    s.on("data", (d) => {
      buf += d;
      if (buf.split("\r\n").length > lines.length) {
        s.end();
        resolve(buf);
      }
    });
  });
}

describe("startTmpPostgres", () => {
  it("serves scram-authenticated SQL and replication on loopback, applies settings, and cleans up", async () => {
    const srv = await startTmpPostgres({ settings: { archive_timeout: "30" } });
    const out = mkdtempSync(path.join(tmpdir(), "kdrtest-bb-"));
    try {
      const c = new pg.Client({ connectionString: srv.url });
      await c.connect();
      const r = await c.query("SELECT current_setting('wal_level') AS w, current_setting('max_wal_senders') AS s, current_setting('archive_timeout') AS a, current_setting('server_version_num')::int / 10000 AS v");
      await c.end();
      expect(r.rows[0]).toEqual({ w: "replica", s: "10", a: "30s", v: 15 });
      const wrong = new pg.Client({ connectionString: srv.url.replace(srv.password, "wrong") });
      await expect(wrong.connect()).rejects.toThrow(/password authentication failed/);
      // pg_basebackup is what the agent runs: it needs a replication connection.
      const bb = spawnSync(path.join(PG_BIN, "pg_basebackup"), ["-h", srv.host, "-p", String(srv.port), "-U", srv.user, "-D", out, "-Ft", "-X", "fetch", "-c", "fast", "--no-password"], {
        env: { ...process.env, PGPASSWORD: srv.password },
        encoding: "utf8",
      });
      expect(bb.status, bb.stderr).toBe(0);
      expect(readdirSync(out)).toEqual(expect.arrayContaining(["base.tar", "backup_manifest"]));
    } finally {
      rmSync(out, { recursive: true, force: true });
      await srv.stop();
    }
    expect(existsSync(srv.dataDir)).toBe(false);
    await srv.stop(); // twice is fine
  });
});

describe("startTmpRedis", () => {
  it("serves on loopback behind a password, in its own dir, and cleans up", async () => {
    const r = await startTmpRedis();
    try {
      expect(r.password).toMatch(/^[0-9a-f]{36}$/);
      expect(await redisSay(r.port, ["PING"])).toMatch(/^-NOAUTH/);
      expect(await redisSay(r.port, [`AUTH ${r.password}`, "SET k v", "SAVE"])).toBe("+OK\r\n+OK\r\n+OK\r\n");
      expect(existsSync(path.join(r.dataDir, "dump.rdb"))).toBe(true);
    } finally {
      await r.stop();
    }
    expect(existsSync(r.dataDir)).toBe(false);
  });

  it("can run without a password", async () => {
    const r = await startTmpRedis({ password: false });
    try {
      expect(r.password).toBeUndefined();
      expect(await redisSay(r.port, ["PING"])).toBe("+PONG\r\n");
    } finally {
      await r.stop();
    }
  });
});
