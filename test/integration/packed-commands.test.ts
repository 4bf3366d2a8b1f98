/**
 * `pulumi up` runs two commands of ours through @pulumi/command: the catalog migration and the
 * buckets' default object-lock retention. Here they run exactly as declared, from a directory
 * that holds only the packed package (`npm pack`) and its production dependencies, against a
 * real PostgreSQL and a real RGW bucket: a CI runner with the package and the Pulumi CLI needs
 * nothing else (no dev tooling, no checkout).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { GetObjectLockConfigurationCommand } from "@aws-sdk/client-s3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeBucket, type TestBucket } from "../support/s3.js";
import { startTmpPostgres, type TmpPostgres } from "../support/tmp-postgres.js";

const ROOT = resolve(__dirname, "..", "..");
let dir: string;
let pkg: string;
let plan: Array<{ type: string; name: string; inputs: Record<string, unknown> }>;
let catalog: TmpPostgres;
let bucket: TestBucket;

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env, timeout = 300_000) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: "utf8", timeout, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return r;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kdrtest-packed-"));
  const packed = run("npm", ["pack", "--pack-destination", dir, "--silent"], ROOT);
  expect(packed.status, packed.stderr).toBe(0);
  const tgz = readdirSync(dir).find((f) => f.endsWith(".tgz"))!;
  expect(run("tar", ["-xzf", join(dir, tgz), "-C", dir], dir).status).toBe(0);
  pkg = join(dir, "package");
  // Production dependencies only, as a deploy runner would have them (no install scripts: see README).
  const inst = run("npm", ["install", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--no-package-lock"], pkg);
  expect(inst.status, inst.stderr).toBe(0);
  const p = run(process.execPath, [join(ROOT, "bin", "kryonix-dr.mjs"), "plan", "--stack", "prod", "--json"], ROOT);
  plan = JSON.parse(p.stdout);
  catalog = await startTmpPostgres();
  bucket = await makeBucket("kdrtest-packed");
}, 600_000);

afterAll(async () => {
  await catalog?.stop();
  await bucket?.remove();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The `create` command lines the prod stack declares, by resource name. */
function declared(): Map<string, string> {
  return new Map(plan.filter((r) => r.type === "command:local:Command").map((r) => [r.name, String(r.inputs.create)]));
}

describe("deploy-time commands from the packed package alone", () => {
  it("the package holds no dev tooling of ours: no test runner, no type packages", () => {
    // (typescript comes with @pulumi/pulumi, which compiles programs at run time; esbuild with tsx.)
    for (const dev of ["vitest", "@types/pg", "@types/js-yaml"]) expect(existsSync(join(pkg, "node_modules", dev)), dev).toBe(false);
    expect(existsSync(join(pkg, "node_modules", "tsx"))).toBe(true);
  });

  it("the program declares only these commands of ours (the rest is MinIO's own mc)", () => {
    const ours = [...declared().values()].filter((c) => !c.startsWith("mc "));
    expect(ours.length).toBeGreaterThan(0);
    for (const c of ours) expect(c).toMatch(/^node bin\/kryonix-dr\.mjs (migrate|s3 put-default-retention --bucket \S+ --mode (GOVERNANCE|COMPLIANCE) --days \d+)$/);
  });

  it("the catalog migration, as declared, applies every migration (and a second run changes nothing)", async () => {
    const cmd = declared().get("catalog-migrate")!.split(" ");
    const c = new pg.Client({ connectionString: catalog.url });
    await c.connect();
    await c.query("CREATE DATABASE kryonix_dr");
    await c.end();
    const env = { PATH: process.env.PATH, HOME: dir, PGHOST: catalog.host, PGPORT: String(catalog.port), PGUSER: "postgres", PGPASSWORD: catalog.password, PGDATABASE: "kryonix_dr" };
    for (const attempt of [1, 2]) {
      const r = run(cmd[0]!, cmd.slice(1), pkg, env);
      expect(r.status, `run ${attempt}: ${r.stderr}`).toBe(0);
    }
    const db = new pg.Client({ connectionString: catalog.urlFor("kryonix_dr") });
    await db.connect();
    const { rows } = await db.query("SELECT count(*)::int AS n FROM schema_migrations");
    await db.end();
    expect(rows[0].n).toBe(readdirSync(join(ROOT, "catalog", "migrations")).filter((f) => f.endsWith(".sql")).length);
  }, 120_000);

  it("the default retention command, as declared, sets the bucket's object-lock default", async () => {
    const line = [...declared().values()].find((c) => c.includes("put-default-retention"))!;
    const args = line.split(" ").map((a, i, all) => (all[i - 1] === "--bucket" ? bucket.bucket : a));
    const env = { PATH: process.env.PATH, HOME: dir, KDR_S3_ENDPOINT: bucket.endpoint, KDR_S3_REGION: bucket.region, AWS_ACCESS_KEY_ID: bucket.accessKey, AWS_SECRET_ACCESS_KEY: bucket.secretKey };
    const r = run(args[0]!, args.slice(1), pkg, env);
    expect(r.status, r.stderr).toBe(0);
    const cfg = await bucket.client.send(new GetObjectLockConfigurationCommand({ Bucket: bucket.bucket }));
    const days = Number(/--days (\d+)/.exec(line)![1]);
    expect(cfg.ObjectLockConfiguration?.Rule?.DefaultRetention).toMatchObject({ Mode: /--mode (\S+)/.exec(line)![1], Days: days });
  }, 120_000);
});
