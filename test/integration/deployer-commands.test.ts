/**
 * The CLI commands the Pulumi program runs through @pulumi/command (and so the local deployer
 * runs too): `kryonix-dr migrate` against a throwaway PostgreSQL 15, twice (idempotent), with the
 * connection only in PG* env as the command resource passes it.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTmpPostgres, type TmpPostgres } from "../support/tmp-postgres.js";

const ROOT = join(__dirname, "..", "..");
let server: TmpPostgres;

beforeAll(async () => {
  server = await startTmpPostgres();
  const c = new pg.Client({ connectionString: server.url });
  await c.connect();
  await c.query("CREATE DATABASE kdrtest_migrate");
  await c.end();
});
afterAll(async () => {
  await server?.stop();
});

function migrate(env: Record<string, string>) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PG")));
  return spawnSync(process.execPath, [join(ROOT, "bin", "kryonix-dr.mjs"), "migrate"], { encoding: "utf8", timeout: 120_000, env: { ...clean, ...env } });
}

describe("kryonix-dr migrate", () => {
  const env = () => ({ PGHOST: server.host, PGPORT: String(server.port), PGDATABASE: "kdrtest_migrate", PGUSER: server.user, PGPASSWORD: server.password, PGSSLMODE: "disable" });

  it("applies every migration once, then nothing on a second run", async () => {
    const first = migrate(env());
    expect(first.stderr).toBe("");
    expect(first.status).toBe(0);
    const applied = Number(/migrations: (\d+) applied, 0 already applied/.exec(first.stdout)?.[1]);
    expect(applied).toBeGreaterThan(0);
    const second = migrate(env());
    expect(second.status).toBe(0);
    expect(second.stdout).toContain(`migrations: 0 applied, ${applied} already applied`);
    const c = new pg.Client({ connectionString: server.urlFor("kdrtest_migrate") });
    await c.connect();
    const tables = await c.query("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_name = 'backup_management'");
    await c.end();
    expect(tables.rows[0].n).toBe(1);
  });

  it("names the missing connection settings", () => {
    const r = migrate({});
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("Missing environment variable(s) PGHOST, PGDATABASE, PGUSER");
  });
});
