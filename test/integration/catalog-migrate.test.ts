/**
 * The migration runner against a real PostgreSQL 15: idempotent, refuses edited history,
 * serialises concurrent runners, rolls a failing file back whole.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadMigrations, migrate, resolveMigrationsDir } from "../../catalog/migrate.js";
import { startTmpPostgres, type TmpPostgres } from "../support/tmp-postgres.js";

const REPO_MIGRATIONS = path.join(__dirname, "../../catalog/migrations");
let server: TmpPostgres;
const tmpDirs: string[] = [];
let dbCounter = 0;

async function freshDb(): Promise<string> {
  const name = `kdrtest_migrate_${++dbCounter}`;
  const c = new pg.Client({ connectionString: server.url });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  return server.urlFor(name);
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function tmpMigrations(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), "kdrtest-migrations-"));
  tmpDirs.push(dir);
  for (const [n, sql] of Object.entries(files)) writeFileSync(path.join(dir, n), sql);
  return dir;
}

beforeAll(async () => {
  server = await startTmpPostgres();
});
afterAll(async () => {
  await server?.stop();
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

describe("catalog migrations", () => {
  it("apply as the production owner: a non-superuser with CREATEROLE that owns the database (runs first: it creates the group roles)", async () => {
    const before = await withClient(server.url, (c) => c.query("SELECT count(*)::int AS n FROM pg_roles WHERE rolname LIKE 'kryonix_dr_%'"));
    expect(before.rows[0].n).toBe(0);
    await withClient(server.url, async (c) => {
      await c.query("CREATE ROLE kdrtest_owner LOGIN CREATEROLE PASSWORD 'owner-pw'");
      await c.query("CREATE DATABASE kdrtest_owned OWNER kdrtest_owner");
    });
    const url = `postgres://kdrtest_owner:owner-pw@${server.host}:${server.port}/kdrtest_owned`;
    const first = await withClient(url, (c) => migrate(c, { dir: REPO_MIGRATIONS }));
    expect(first.applied).toEqual(loadMigrations(REPO_MIGRATIONS).map((f) => f.name));
    expect((await withClient(url, (c) => migrate(c, { dir: REPO_MIGRATIONS }))).applied).toEqual([]);
    const owners = await withClient(url, (c) =>
      c.query("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"),
    );
    expect(owners.rows).toEqual([{ tableowner: "kdrtest_owner" }]);
  });

  it("apply on a fresh database, and a second run applies nothing", async () => {
    const url = await freshDb();
    const files = loadMigrations(REPO_MIGRATIONS).map((f) => f.name);
    expect(files.length).toBeGreaterThanOrEqual(3);
    const first = await withClient(url, (c) => migrate(c, { dir: REPO_MIGRATIONS }));
    expect(first.applied).toEqual(files);
    expect(first.skipped).toEqual([]);
    const second = await withClient(url, (c) => migrate(c, { dir: REPO_MIGRATIONS }));
    expect(second.applied).toEqual([]);
    expect(second.skipped).toEqual(files);
    const rec = await withClient(url, (c) => c.query("SELECT filename, sha256 FROM schema_migrations ORDER BY filename"));
    expect(rec.rows.map((r) => r.filename)).toEqual(files);
    expect(rec.rows.map((r) => r.sha256)).toEqual(loadMigrations(REPO_MIGRATIONS).map((f) => f.sha256));
    // The schema the seed describes exists.
    const tables = await withClient(url, (c) =>
      c.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"),
    );
    expect(tables.rows.map((r) => r.table_name)).toEqual(
      expect.arrayContaining(["backup_management", "disaster_recovery_log", "backup_health_monitoring", "backup_artifact", "wal_segment", "schema_migrations"]),
    );
  });

  it("finds its directory without being told (repo layout) and honours KDR_MIGRATIONS_DIR", () => {
    expect(path.resolve(resolveMigrationsDir())).toBe(path.resolve(REPO_MIGRATIONS));
    const other = tmpMigrations({ "001_x.sql": "SELECT 1;" });
    process.env.KDR_MIGRATIONS_DIR = other;
    try {
      expect(resolveMigrationsDir()).toBe(other);
    } finally {
      delete process.env.KDR_MIGRATIONS_DIR;
    }
    expect(() => resolveMigrationsDir("/nonexistent/kdr")).toThrow(/not found.*KDR_MIGRATIONS_DIR/s);
  });

  it("refuses when an applied migration file has changed, naming the file and the fix", async () => {
    const url = await freshDb();
    const dir = mkdtempSync(path.join(tmpdir(), "kdrtest-migrations-"));
    tmpDirs.push(dir);
    cpSync(REPO_MIGRATIONS, dir, { recursive: true });
    await withClient(url, (c) => migrate(c, { dir }));
    appendFileSync(path.join(dir, "002_health_and_metrics.sql"), "\n-- an innocent-looking edit\n");
    const err = await withClient(url, (c) => migrate(c, { dir })).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/002_health_and_metrics\.sql' was already applied with SHA-256 [0-9a-f]{64}/);
    expect((err as Error).message).toMatch(/new numbered migration/);
  });

  it("rolls a failing file back whole and records nothing for it", async () => {
    const url = await freshDb();
    const dir = tmpMigrations({
      "001_ok.sql": "CREATE TABLE kdr_a (id int);",
      "002_bad.sql": "CREATE TABLE kdr_b (id int);\nINSERT INTO kdr_b VALUES (1);\nSELECT no_such_function();",
    });
    const err = await withClient(url, (c) => migrate(c, { dir })).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/Migration '002_bad\.sql' failed and was rolled back \(line 3\): .*no_such_function/);
    await withClient(url, async (c) => {
      const t = await c.query("SELECT to_regclass('kdr_a') AS a, to_regclass('kdr_b') AS b");
      expect(t.rows[0]).toEqual({ a: "kdr_a", b: null });
      const rec = await c.query("SELECT filename FROM schema_migrations");
      expect(rec.rows.map((r) => r.filename)).toEqual(["001_ok.sql"]);
    });
  });

  it("rejects badly named or duplicate-numbered files before touching the database", () => {
    expect(() => loadMigrations(tmpMigrations({ "1_x.sql": "SELECT 1;" }))).toThrow(/'1_x\.sql'.*NNN_lowercase_words\.sql/);
    expect(() => loadMigrations(tmpMigrations({ "001_a.sql": "SELECT 1;", "001_b.sql": "SELECT 1;" }))).toThrow(/share the number 001/);
    expect(() => loadMigrations(tmpMigrations({ "001_a.sql": "BEGIN;\nSELECT 1;\nCOMMIT;" }))).toThrow(/own BEGIN\/COMMIT/);
  });

  it("two concurrent runners do not interleave: one applies everything, the other nothing", async () => {
    const url = await freshDb();
    // Slow files widen the window in which unserialised runners would both start the same file
    // (and one would then fail on the duplicate table or the schema_migrations key).
    const dir = tmpMigrations({
      "001_first.sql": "CREATE TABLE kdr_order (n int, runner text DEFAULT current_setting('application_name'));\nSELECT pg_sleep(0.4);\nINSERT INTO kdr_order (n) VALUES (1);",
      "002_second.sql": "SELECT pg_sleep(0.4);\nINSERT INTO kdr_order (n) VALUES (2);",
      "003_third.sql": "INSERT INTO kdr_order (n) VALUES (3);",
    });
    const run = (name: string) =>
      (async () => {
        const c = new pg.Client({ connectionString: url, application_name: name });
        await c.connect();
        try {
          return await migrate(c, { dir });
        } finally {
          await c.end();
        }
      })();
    const [a, b] = await Promise.all([run("runner-a"), run("runner-b")]);
    const results = [a, b].sort((x, y) => y.applied.length - x.applied.length);
    expect(results[0]!.applied).toEqual(["001_first.sql", "002_second.sql", "003_third.sql"]);
    expect(results[1]!.applied).toEqual([]);
    expect(results[1]!.skipped).toEqual(["001_first.sql", "002_second.sql", "003_third.sql"]);
    await withClient(url, async (c) => {
      const rows = (await c.query("SELECT n, runner FROM kdr_order ORDER BY n")).rows;
      expect(rows.map((r) => r.n)).toEqual([1, 2, 3]);
      expect(new Set(rows.map((r) => r.runner)).size).toBe(1);
    });
  });

  it("the real migrations under two concurrent runners apply once without error", async () => {
    const url = await freshDb();
    const run = () => withClient(url, (c) => migrate(c, { dir: REPO_MIGRATIONS }));
    const [a, b] = await Promise.all([run(), run()]);
    const all = loadMigrations(REPO_MIGRATIONS).map((f) => f.name);
    expect([...a.applied, ...b.applied].sort()).toEqual(all);
    expect(a.applied.length === 0 || b.applied.length === 0).toBe(true);
  });
});
