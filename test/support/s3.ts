/**
 * Test support for the agent: per-test buckets on the local RGW (versioned, object lock on, as
 * the program declares them) and a "world" to run the real agent CLI against: a secret dir with
 * real age keys and credentials, a throwaway catalog PostgreSQL with the migrations applied, and
 * a runner that starts `agent/cli.ts` as a child process, exactly as the sidecar would.
 */
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { migrate } from "../../catalog/migrate.js";
import { readPlatform } from "../../local/platform.js";
import { freePort, PG_BIN, startTmpPostgres, type TmpPostgres } from "./tmp-postgres.js";

export interface TestBucket {
  bucket: string;
  endpoint: string;
  region: string;
  accessKey: string;
  secretKey: string;
  client: S3Client;
  /** Deletes every version (bypassing GOVERNANCE retention with the admin user) and the bucket. */
  remove(): Promise<void>;
}

export function s3Client(endpoint: string, region: string, accessKeyId: string, secretAccessKey: string): S3Client {
  return new S3Client({
    endpoint,
    region,
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

/** A fresh bucket with versioning and object lock (object lock implies versioning on RGW). */
export async function makeBucket(prefix: string, region: "primary" | "dr" = "primary"): Promise<TestBucket> {
  const p = readPlatform();
  const r = p.regions[region];
  const bucket = `${prefix}-${randomBytes(4).toString("hex")}`.toLowerCase();
  const client = s3Client(r.loopbackEndpoint, r.name, r.accessKey, r.secretKey);
  await client.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
  return {
    bucket,
    endpoint: r.loopbackEndpoint,
    region: r.name,
    accessKey: r.accessKey,
    secretKey: r.secretKey,
    client,
    async remove() {
      for (;;) {
        const res = await client.send(new ListObjectVersionsCommand({ Bucket: bucket }));
        const all = [...(res.Versions ?? []), ...(res.DeleteMarkers ?? [])];
        if (all.length === 0) break;
        for (const v of all) {
          await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: v.Key!, VersionId: v.VersionId, BypassGovernanceRetention: true })).catch(() => undefined);
        }
        if (!res.IsTruncated) {
          const again = await client.send(new ListObjectVersionsCommand({ Bucket: bucket }));
          if ((again.Versions ?? []).length + (again.DeleteMarkers ?? []).length === 0) break;
          if ((again.Versions ?? []).length === all.length) break; // locked in COMPLIANCE: leave it
        }
      }
      await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
    },
  };
}

/** Writes a copy of the object with one byte flipped as a new version; returns the new version id. */
export async function flipByte(b: TestBucket, key: string, versionId?: string, offset?: number): Promise<string> {
  const got = await b.client.send(new GetObjectCommand({ Bucket: b.bucket, Key: key, VersionId: versionId }));
  const buf = Buffer.from(await got.Body!.transformToByteArray());
  const at = offset ?? Math.floor(buf.length / 2);
  buf[at] = buf[at]! ^ 0xff;
  const put = await b.client.send(new PutObjectCommand({ Bucket: b.bucket, Key: key, Body: buf }));
  return put.VersionId!;
}

export interface AgentWorld {
  bucket: TestBucket;
  catalog: TmpPostgres;
  /** A pg client on the catalog database (superuser) for assertions. */
  db: pg.Client;
  tenantId: string;
  secretDir: string;
  stateDir: string;
  root: string;
  /** Env for an agent run of `service` (engine etc. come from `extra`). */
  env(service: string, extra?: Record<string, string>): Record<string, string>;
  /** Runs the agent CLI to completion. */
  run(args: string[], env: Record<string, string>, opts?: { timeoutMs?: number }): Promise<AgentResult>;
  /** Starts the agent CLI and returns the child (for serve, or to kill it). */
  start(args: string[], env: Record<string, string>): ChildProcess & { output: () => string };
  close(): Promise<void>;
}

export interface AgentResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const CLI = path.resolve(__dirname, "../../agent/cli.ts");
const TSX = ["--import", "tsx"];

export async function agentWorld(prefix: string): Promise<AgentWorld> {
  const root = mkdtempSync(path.join(tmpdir(), `${prefix}-`));
  const secretDir = path.join(root, "secrets");
  const stateDir = path.join(root, "state");
  // The restored PostgreSQL runs as the postgres user and must reach its data dir under root.
  chmodSync(root, 0o755);
  mkdirSync(secretDir, { mode: 0o700 });
  mkdirSync(stateDir);
  const bucket = await makeBucket(prefix);
  const catalog = await startTmpPostgres();
  const db = new pg.Client({ connectionString: catalog.url });
  await db.connect();
  await db.query("CREATE DATABASE kryonix_dr");
  await db.end();
  const cdb = new pg.Client({ connectionString: catalog.urlFor("kryonix_dr") });
  await cdb.connect();
  await migrate(cdb);
  // The agent logs in as a member of kryonix_dr_writer, as in production (no DELETE, no DDL).
  const agentPw = randomBytes(12).toString("hex");
  await cdb.query(`CREATE ROLE kdr_agent LOGIN PASSWORD '${agentPw}' IN ROLE kryonix_dr_writer`);

  const id = path.join(secretDir, "kdr-age-identity");
  const kg = spawnSync("age-keygen", ["-o", id], { encoding: "utf8" });
  if (kg.status !== 0) throw new Error(`age-keygen failed: ${kg.stderr}`);
  const recipient = spawnSync("age-keygen", ["-y", id], { encoding: "utf8" }).stdout.trim();
  const files: Record<string, string> = {
    "kdr-s3-access-key": bucket.accessKey,
    "kdr-s3-secret-key": bucket.secretKey,
    "kdr-catalog-password": agentPw,
    "kdr-age-recipient": recipient,
    "kdr-restic-password": randomBytes(16).toString("hex"),
  };
  for (const [f, v] of Object.entries(files)) writeFileSync(path.join(secretDir, f), v + "\n", { mode: 0o600 });
  const tenantId = "00000000-0000-4000-8000-0000000000aa";
  const children: ChildProcess[] = [];

  const world: AgentWorld = {
    bucket,
    catalog,
    db: cdb,
    tenantId,
    secretDir,
    stateDir,
    root,
    env(service, extra = {}) {
      return {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: process.env.HOME ?? root,
        KDR_SERVICE: service,
        KDR_TENANT_ID: tenantId,
        KDR_S3_ENDPOINT: bucket.endpoint,
        KDR_S3_REGION: bucket.region,
        KDR_S3_BUCKET: bucket.bucket,
        KDR_CATALOG_HOST: catalog.host,
        KDR_CATALOG_PORT: String(catalog.port),
        KDR_CATALOG_DATABASE: "kryonix_dr",
        KDR_CATALOG_USER: "kdr_agent",
        KDR_STATE_DIR: stateDir,
        KDR_SECRET_DIR: secretDir,
        ...extra,
      };
    },
    run(args, env, opts = {}) {
      return new Promise((resolve, reject) => {
        const p = spawn(process.execPath, [...TSX, CLI, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        p.stdout.on("data", (d: Buffer) => (stdout += d));
        p.stderr.on("data", (d: Buffer) => (stderr += d));
        const t = setTimeout(() => {
          p.kill("SIGKILL");
          reject(new Error(`agent ${args.join(" ")} timed out\n${stderr}`));
        }, opts.timeoutMs ?? 120_000);
        p.on("close", (code) => {
          clearTimeout(t);
          resolve({ code, stdout, stderr });
        });
      });
    },
    start(args, env) {
      const p = spawn(process.execPath, [...TSX, CLI, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      p.stdout!.on("data", (d: Buffer) => (out += d));
      p.stderr!.on("data", (d: Buffer) => (out += d));
      children.push(p);
      return Object.assign(p, { output: () => out });
    },
    async close() {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
      await cdb.end().catch(() => undefined);
      await catalog.stop();
      await bucket.remove();
      rmSync(root, { recursive: true, force: true });
    },
  };
  return world;
}

/** Writes the identity file into a secret dir (restore/verify containers hold it; sidecars do not). */
export function readIdentity(w: AgentWorld): string {
  return readFileSync(path.join(w.secretDir, "kdr-age-identity"), "utf8");
}

// ---- PostgreSQL helpers for agent tests

export async function pgQuery<T extends pg.QueryResultRow = pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

/** md5 over every row of every user table, per database: equality means the same contents. */
export async function tableChecksums(urlFor: (db: string) => string): Promise<Record<string, string>> {
  const dbs = await pgQuery<{ datname: string }>(urlFor("postgres"), "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1");
  const out: Record<string, string> = {};
  for (const { datname } of dbs) {
    const tables = await pgQuery<{ t: string }>(urlFor(datname), "SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1");
    for (const { t } of tables) {
      const [r] = await pgQuery<{ n: string; h: string }>(urlFor(datname), `SELECT count(*) AS n, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS h FROM ${t} x`);
      out[`${datname}.${t}`] = `${r!.n}:${r!.h}`;
    }
  }
  return out;
}

/**
 * The documented backup role on a primary (replication, read-all for pg_dump, pg_switch_wal for
 * the RPO), its password in the world's secret dir, and an "app" database to fill. Returns the
 * agent env that backs this primary up (WAL switched every 2 s).
 */
export async function prepareBackupRole(primary: TmpPostgres, secretDir: string): Promise<Record<string, string>> {
  await pgQuery(primary.url, "CREATE ROLE kdr_backup LOGIN REPLICATION PASSWORD 'kdr-backup-pw'");
  await pgQuery(primary.url, "GRANT pg_read_all_data TO kdr_backup");
  await pgQuery(primary.url, "GRANT EXECUTE ON FUNCTION pg_switch_wal() TO kdr_backup");
  writeFileSync(path.join(secretDir, "kdr-target-password"), "kdr-backup-pw\n", { mode: 0o600 });
  await pgQuery(primary.url, "CREATE DATABASE app");
  return {
    KDR_ENGINE: "postgres",
    KDR_TARGET_HOST: primary.host,
    KDR_TARGET_PORT: String(primary.port),
    KDR_TARGET_USER: "kdr_backup",
    KDR_WAL_SWITCH_SECONDS: "2",
  };
}

/** Every table's checksum in a restored data dir, read from a PostgreSQL started on it (then stopped). */
export async function restoredChecksums(dataDir: string, password: string): Promise<Record<string, string>> {
  const srv = await startRestored(dataDir, password);
  try {
    return await tableChecksums(srv.url);
  } finally {
    srv.stop();
  }
}

/** Starts PostgreSQL on a restored data dir (as the postgres OS user) and waits for promotion. */
export async function startRestored(dataDir: string, password: string): Promise<{ url: (db: string) => string; stop: () => void; log: string }> {
  const sock = mkdtempSync(path.join(tmpdir(), "kdrtest-agent-sock-"));
  spawnSync("chown", ["-R", "postgres:postgres", dataDir, sock]);
  chmodSync(dataDir, 0o700);
  const port = await freePort();
  const log = path.join(sock, "log");
  const r = spawnSync("runuser", ["-u", "postgres", "--", path.join(PG_BIN, "pg_ctl"), "start", "-D", dataDir, "-l", log, "-w", "-t", "90", "-o", `-p ${port} -k ${sock} -c listen_addresses=127.0.0.1`], { encoding: "utf8" });
  const logText = () => (existsSync(log) ? spawnSync("tail", ["-n", "30", log], { encoding: "utf8" }).stdout : "");
  if (r.status !== 0) {
    const text = logText();
    // A start that timed out may have left the server running.
    spawnSync("runuser", ["-u", "postgres", "--", path.join(PG_BIN, "pg_ctl"), "stop", "-D", dataDir, "-m", "immediate", "-w"]);
    rmSync(sock, { recursive: true, force: true });
    throw new Error(`restored PostgreSQL did not start: ${r.stderr}\n${text}`);
  }
  const url = (db: string) => `postgres://postgres:${password}@127.0.0.1:${port}/${db}`;
  const stop = () => {
    spawnSync("runuser", ["-u", "postgres", "--", path.join(PG_BIN, "pg_ctl"), "stop", "-D", dataDir, "-m", "fast", "-w"]);
    rmSync(sock, { recursive: true, force: true });
  };
  for (let i = 0; i < 120; i++) {
    let x: { r: boolean } | undefined;
    try {
      [x] = await pgQuery<{ r: boolean }>(url("postgres"), "SELECT pg_is_in_recovery() AS r");
    } catch (e) {
      // pg_ctl -w returns once a hot standby accepts connections; recovery can still fail after.
      const text = logText();
      stop();
      throw new Error(`restored PostgreSQL stopped answering during recovery (${(e as Error).message}):\n${text}`, { cause: e });
    }
    if (!x!.r) break;
    await new Promise((res) => setTimeout(res, 500));
  }
  return { url, log: logText(), stop };
}

