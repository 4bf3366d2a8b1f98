/**
 * Getting a catalog back when the old one is gone, from one region's buckets alone. Run on a
 * machine with Docker that reaches the catalog server (the agent and PostgreSQL steps run in the
 * stack's own images, with `--network host`):
 *
 * - rebuild: a new catalog database (migrated), filled by `kdr-agent catalog rebuild` from each of
 *   the region's buckets: every backup and WAL segment the manifests and descriptors describe.
 * - restore: the catalog database itself, to a point in time. Its server's backups (service
 *   CATALOG_SERVICE, base + WAL, replicated like any critical PostgreSQL) are found by a rebuild
 *   of that one service into a scratch database, restored by `kdr-agent restore` into a scratch
 *   directory, started there in the PostgreSQL image until it has replayed to the point and
 *   promoted, and the catalog database is copied out of it with pg_dump/pg_restore. What only the
 *   catalog knew (drill history, recovery log, health checks, verify results) comes back with it;
 *   a rebuild from the region's buckets then adds the backups newer than the point.
 *
 * `kryonix-dr catalog` (cli/commands/catalog.ts) runs these for a local deployment or, from the
 * recovery stack (recovery.catalog), with inputs from its environment; the region drill runs them too.
 */
import { spawn } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { AGENT_ENV, CATALOG_SERVICE, replicationSlotName } from "../contract/index.js";
import { migrate } from "../catalog/migrate.js";
import { readState } from "./deployer.js";
import { generatedSecrets } from "./local-stack.js";
import type { Platform } from "./platform.js";

export interface CatalogRecoveryInputs {
  /** The catalog server, as its admin (creates databases), and the roles the stack declared. */
  catalog: {
    host: string;
    port: number;
    adminUser: string;
    adminPassword: string;
    database: string;
    owner: string;
    ownerPassword: string;
    writer: string;
    writerPassword: string;
    reader: string;
  };
  /** The stack's tenant (the catalog rows' tenant_id). */
  tenantId: string;
  /** The region read from, with read-only credentials. */
  region: { name: string; endpoint: string };
  buckets: string[];
  restore: { accessKey: string; secretKey: string };
  /** restore: decrypts the catalog server's backups. */
  ageIdentity?: string;
  images: { agent: string; postgres: string };
  log: (line: string) => void;
}

export interface RebuildResult {
  bucket: string;
  backups: { inserted: number; known: number; completed: number };
  walSegments: { inserted: number; known: number };
  copiesRecorded: number;
  skipped: { key: string; reason: string; service?: string; createdAt?: string }[];
}

export interface RestoreResult {
  database: string;
  /** The catalog server's backup restored, and the point its replay reached. */
  backupId: string;
  reaches: string;
  recoveryTarget: string;
  /** Rows the restored catalog held before the rebuild added what is newer. */
  restoredRows: { backups: number; recoveryLog: number; healthRows: number };
  rebuild: RebuildResult[];
  durationSeconds: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs a command to completion; stderr goes to the log, indented; rejects with its tail. */
export function run(cmd: string, args: string[], log: (l: string) => void, opts: { quiet?: boolean } = {}): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let tail = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => {
      tail = (tail + d.toString()).slice(-4000);
      if (!opts.quiet) for (const line of d.toString().split("\n")) if (line.trim()) log(`    ${line}`);
    });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolvePromise(out) : reject(new Error(`${cmd} ${args.slice(0, 3).join(" ")} … exited ${code}: ${tail.trim()}`))));
  });
}

function client(inp: CatalogRecoveryInputs, user: "admin" | "owner", database: string): pg.Client {
  const c = new pg.Client({
    host: inp.catalog.host,
    port: inp.catalog.port,
    user: user === "admin" ? inp.catalog.adminUser : inp.catalog.owner,
    password: user === "admin" ? inp.catalog.adminPassword : inp.catalog.ownerPassword,
    database,
  });
  c.on("error", () => undefined);
  return c;
}

async function withClient<T>(c: pg.Client, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** What a database's comment says when this procedure made it. */
const RECOVERED_MARK = "kryonix-dr catalog: ";

/** Marks a catalog as got back by this procedure (a database comment), so a re-run can tell. */
export async function markRecovered(inp: CatalogRecoveryInputs, database: string, what: string): Promise<void> {
  const text = `${RECOVERED_MARK}${what}, finished ${new Date().toISOString()}`;
  await withClient(client(inp, "admin", "postgres"), (c) => c.query(`COMMENT ON DATABASE ${pg.escapeIdentifier(database)} IS ${c.escapeLiteral(text)}`));
}

/** The mark of an earlier run of this procedure on `database`, if it exists and has one. */
export async function recoveredMark(inp: CatalogRecoveryInputs, database: string): Promise<string | undefined> {
  return withClient(client(inp, "admin", "postgres"), async (c) => {
    const r = await c.query<{ note: string | null }>("SELECT shobj_description(oid, 'pg_database') AS note FROM pg_database WHERE datname = $1", [database]);
    const note = r.rows[0]?.note;
    return note?.startsWith(RECOVERED_MARK) ? note.slice(RECOVERED_MARK.length) : undefined;
  });
}

export async function databaseExists(inp: CatalogRecoveryInputs, database: string): Promise<boolean> {
  return withClient(client(inp, "admin", "postgres"), async (c) => (await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [database])).rowCount === 1);
}

async function dropDatabase(inp: CatalogRecoveryInputs, database: string): Promise<void> {
  await withClient(client(inp, "admin", "postgres"), (c) => c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(database)} WITH (FORCE)`));
}

/**
 * A new catalog database as the stack declares it (owned by the owner role, connectable by the
 * writer and reader, which live in the server), with every migration applied as the owner
 * (`migrate: false` leaves it empty for pg_restore).
 */
export async function createCatalogDatabase(inp: CatalogRecoveryInputs, database: string, opts: { migrate: boolean }): Promise<void> {
  if (await databaseExists(inp, database)) {
    throw new Error(`the catalog database ${database} already exists on ${inp.catalog.host}:${inp.catalog.port}: use recovery.catalog 'existing', or drop or rename it first (nothing was changed).`);
  }
  const id = pg.escapeIdentifier;
  await withClient(client(inp, "admin", "postgres"), async (c) => {
    await c.query(`CREATE DATABASE ${id(database)} OWNER ${id(inp.catalog.owner)}`);
    await c.query(`REVOKE ALL ON DATABASE ${id(database)} FROM PUBLIC`);
    await c.query(`GRANT CONNECT ON DATABASE ${id(database)} TO ${id(inp.catalog.writer)}, ${id(inp.catalog.reader)}`);
  });
  if (!opts.migrate) return;
  const r = await withClient(client(inp, "owner", database), (c) => migrate(c));
  inp.log(`  created the catalog database ${database} and applied ${r.applied.length} migration(s) (${r.applied.at(-1) ?? "none"} last)`);
}

/** A directory for secret files, root's alone (the agent image runs as root); removed after use. */
function secretsDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "kdr-catalog-secrets-"));
  chmodSync(dir, 0o700);
  for (const [f, v] of Object.entries(files)) writeFileSync(join(dir, f), `${v}\n`, { mode: 0o600 });
  return dir;
}

function agentEnv(inp: CatalogRecoveryInputs, bucket: string, database: string, extra: Record<string, string> = {}): string[] {
  return Object.entries({
    [AGENT_ENV.tenantId]: inp.tenantId,
    [AGENT_ENV.s3Endpoint]: inp.region.endpoint,
    [AGENT_ENV.s3Region]: inp.region.name,
    [AGENT_ENV.s3Bucket]: bucket,
    [AGENT_ENV.catalogHost]: inp.catalog.host,
    [AGENT_ENV.catalogPort]: String(inp.catalog.port),
    [AGENT_ENV.catalogDatabase]: database,
    [AGENT_ENV.catalogUser]: inp.catalog.writer,
    ...extra,
  }).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
}

/**
 * Fills `database` from each of the region's buckets with the agent image's `catalog rebuild`
 * (this region's version ids; idempotent; damaged or half-written manifests are skipped and named).
 */
export async function rebuildCatalog(inp: CatalogRecoveryInputs, database: string, opts: { service?: string } = {}): Promise<RebuildResult[]> {
  const dir = secretsDir({ "kdr-s3-access-key": inp.restore.accessKey, "kdr-s3-secret-key": inp.restore.secretKey, "kdr-catalog-password": inp.catalog.writerPassword });
  try {
    const out: RebuildResult[] = [];
    for (const bucket of [...new Set(inp.buckets)]) {
      const json = await run(
        "docker",
        ["run", "--rm", "--network", "host", "-v", `${dir}:/run/secrets:ro`, ...agentEnv(inp, bucket, database, opts.service ? { [AGENT_ENV.service]: opts.service } : {}), inp.images.agent, "catalog", "rebuild", "--json"],
        inp.log,
      );
      const r = JSON.parse(json) as Omit<RebuildResult, "bucket">;
      out.push({ bucket, ...r });
      inp.log(`  rebuild from ${bucket} (${inp.region.name}): ${r.backups.inserted} backup(s) and ${r.walSegments.inserted} WAL segment(s) added, ${r.backups.completed} completed from their manifests, ${r.backups.known} known, ${r.copiesRecorded} copy record(s), ${r.skipped.length} skipped`);
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The last lines of a container's log, on one line (the container is removed afterwards). */
function logTail(container: string): Promise<string> {
  return new Promise((res) => {
    const c = spawn("docker", ["logs", "--tail", "6", container]);
    let t = "";
    c.stdout.on("data", (d: Buffer) => (t += d));
    c.stderr.on("data", (d: Buffer) => (t += d));
    c.on("close", () => res(t.trim().split("\n").slice(-3).join(" | ")));
    c.on("error", () => res("(no log)"));
  });
}

/** uid:gid of the postgres user in the PostgreSQL image (restored files must be its own). */
async function postgresOwner(inp: CatalogRecoveryInputs): Promise<string> {
  const out = await run("docker", ["run", "--rm", "--entrypoint", "sh", inp.images.postgres, "-c", 'echo "$(id -u postgres):$(id -g postgres)"'], inp.log);
  const owner = out.trim();
  if (!/^\d+:\d+$/.test(owner)) throw new Error(`the image ${inp.images.postgres} has no postgres user (got '${owner}').`);
  return owner;
}

async function count(c: pg.Client, table: string): Promise<number> {
  const r = await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
  return Number(r.rows[0]!.n);
}

/**
 * Restores the catalog database (`inp.catalog.database` in the catalog server's backups) to
 * `time` (or the newest point the region holds) from the region's backups of the catalog server,
 * into `into` (default the same name), which must not exist (with `replace`, an existing one is
 * dropped, once the restored copy is complete). Then, unless `restoreOnly`, the backups the region
 * holds beyond the point are added as a rebuild does.
 */
export async function restoreCatalog(inp: CatalogRecoveryInputs, opts: { time?: Date; replace?: boolean; into?: string; restoreOnly?: boolean } = {}): Promise<RestoreResult> {
  const t0 = Date.now();
  const source = inp.catalog.database;
  const target = opts.into ?? source;
  if (!inp.ageIdentity) throw new Error("restoring the catalog needs the age identity (secret ageIdentity): the catalog server's backups are encrypted with its recipient.");
  if (!opts.replace && (await databaseExists(inp, target))) {
    throw new Error(`the catalog database ${target} exists on ${inp.catalog.host}:${inp.catalog.port}: restoring would replace it. Pass --replace (the restore is made aside first), or use recovery.catalog 'existing'.`);
  }
  const stamp = `${Date.now().toString(36)}`;
  // Database names are cut at 63 bytes: keep the made-up ones whole.
  const scratchDb = `${target.slice(0, 36)}_kdr_restore_${stamp}`;
  const container = `kdr-catalog-restore-${stamp}`;
  const work = mkdtempSync(join(tmpdir(), "kdr-catalog-restore-"));
  chmodSync(work, 0o755);
  const secrets = secretsDir({
    "kdr-s3-access-key": inp.restore.accessKey,
    "kdr-s3-secret-key": inp.restore.secretKey,
    "kdr-catalog-password": inp.catalog.writerPassword,
    "kdr-age-identity": inp.ageIdentity,
  });
  let done = false;
  try {
    // 1. Where the catalog server's backups are: a scratch catalog of that one service.
    inp.log(`catalog restore: finding the catalog server's backups (service ${CATALOG_SERVICE}) in ${inp.region.name}`);
    await createCatalogDatabase(inp, scratchDb, { migrate: true });
    const found = await rebuildCatalog(inp, scratchDb, { service: CATALOG_SERVICE });
    if (found.every((r) => r.backups.inserted + r.backups.known === 0)) {
      throw new Error(`no backup of the catalog server (service ${CATALOG_SERVICE}) in ${inp.buckets.join(", ")} of region ${inp.region.name}: was catalog.backup on in the stack? Use recovery.catalog 'rebuild' instead.`);
    }
    // 2. The server's files at the point, in a scratch directory the PostgreSQL image will own.
    const owner = await postgresOwner(inp);
    const [uid, gid] = owner.split(":").map(Number) as [number, number];
    const bucket = found.find((r) => r.backups.inserted + r.backups.known > 0)!.bucket;
    inp.log(`catalog restore: restoring the catalog server from ${bucket} ${opts.time ? `to ${opts.time.toISOString()}` : "to the newest point"}`);
    const json = await run(
      "docker",
      [
        "run", "--rm", "--network", "host", "-v", `${secrets}:/run/secrets:ro`, "-v", `${work}:/restore`,
        ...agentEnv(inp, bucket, scratchDb, { [AGENT_ENV.service]: CATALOG_SERVICE, [AGENT_ENV.engine]: "postgres" }),
        inp.images.agent, "restore", "--target", "/restore/data", "--owner", owner, "--json", ...(opts.time ? ["--time", opts.time.toISOString()] : []),
      ],
      inp.log,
    );
    const r = JSON.parse(json) as { backupId: string; reaches: string; recoveryTarget: string };
    // 3. Replay: a server on the restored files, on its socket only, with its own access rules.
    writeFileSync(join(work, "data", "kdr_restore_hba.conf"), "local all all trust\n", { mode: 0o600 });
    chownSync(join(work, "data", "kdr_restore_hba.conf"), uid, gid);
    await run(
      "docker",
      [
        "run", "-d", "--name", container, "--network", "none", "-v", `${work}:/restore`, "-e", "PGDATA=/restore/data", inp.images.postgres,
        "postgres", "-c", "listen_addresses=", "-c", "port=5432", "-c", "unix_socket_directories=/var/run/postgresql",
        "-c", "hba_file=/restore/data/kdr_restore_hba.conf", "-c", "archive_mode=off", "-c", "ssl=off", "-c", "hot_standby=off",
        "-c", "shared_preload_libraries=", "-c", "logging_collector=off",
      ],
      inp.log,
    );
    const psql = (sql: string) => run("docker", ["exec", "-u", "postgres", container, "psql", "-h", "/var/run/postgresql", "-d", "postgres", "-Atc", sql], inp.log, { quiet: true });
    const deadline = Date.now() + 600_000;
    for (;;) {
      const state = await psql("SELECT pg_is_in_recovery()").catch(() => "");
      if (state.trim() === "f") break;
      const running = (await run("docker", ["inspect", "-f", "{{.State.Running}}", container], inp.log, { quiet: true })).trim();
      if (running !== "true") {
        throw new Error(`the restored catalog server stopped during its recovery (e.g. the WAL in ${inp.region.name} does not reach the point): ${await logTail(container)}`);
      }
      if (Date.now() > deadline) throw new Error(`the restored catalog server did not finish recovery in 600 s: ${await logTail(container)}`);
      await sleep(1000);
    }
    inp.log(`catalog restore: the restored server replayed its WAL and promoted`);
    // It was the catalog server: its slot would hold WAL in the copy for no one.
    await psql(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '${replicationSlotName(CATALOG_SERVICE)}'`);
    // 4. The catalog database out of it, into the live server (aside, then renamed).
    const has = await psql(`SELECT 1 FROM pg_database WHERE datname = '${source.replace(/'/g, "''")}'`);
    if (has.trim() !== "1") throw new Error(`the restored catalog server has no database ${source} at that point: choose a later --time, or recovery.catalog 'rebuild'.`);
    mkdirSync(join(work, "dump"), { mode: 0o700 });
    chownSync(join(work, "dump"), uid, gid);
    await run("docker", ["exec", "-u", "postgres", container, "pg_dump", "-h", "/var/run/postgresql", "-Fc", "-f", "/restore/dump/catalog.dump", source], inp.log);
    const aside = `${target.slice(0, 36)}_kdr_restored_${stamp}`;
    await createCatalogDatabase(inp, aside, { migrate: false });
    writeFileSync(join(work, "dump", "pgpass"), `*:*:*:${inp.catalog.adminUser}:${inp.catalog.adminPassword.replace(/([:\\])/g, "\\$1")}\n`, { mode: 0o600 });
    chownSync(join(work, "dump", "pgpass"), uid, gid);
    await run(
      "docker",
      ["run", "--rm", "--network", "host", "-v", `${work}:/restore`, "-u", owner, "-e", "PGPASSFILE=/restore/dump/pgpass", "--entrypoint", "pg_restore", inp.images.postgres,
        "-h", inp.catalog.host, "-p", String(inp.catalog.port), "-U", inp.catalog.adminUser, "-d", aside, "--exit-on-error", "/restore/dump/catalog.dump"],
      inp.log,
    );
    if (opts.replace) await dropDatabase(inp, target);
    await withClient(client(inp, "admin", "postgres"), (c) => c.query(`ALTER DATABASE ${pg.escapeIdentifier(aside)} RENAME TO ${pg.escapeIdentifier(target)}`));
    await markRecovered(inp, target, `restore to ${r.reaches} from ${inp.region.name}`);
    const restoredRows = await withClient(client(inp, "owner", target), async (c) => ({
      backups: await count(c, "backup_management"),
      recoveryLog: await count(c, "disaster_recovery_log"),
      healthRows: await count(c, "backup_health_monitoring"),
    }));
    inp.log(`catalog restore: ${target} restored (${restoredRows.backups} backup(s), ${restoredRows.recoveryLog} recovery log entr(ies), ${restoredRows.healthRows} health row(s) as of ${r.reaches})`);
    // 5. What the region holds beyond the point, with this region's version ids.
    const rebuild = opts.restoreOnly ? [] : await rebuildCatalog(inp, target);
    done = true;
    return { database: target, backupId: r.backupId, reaches: r.reaches, recoveryTarget: r.recoveryTarget, restoredRows, rebuild, durationSeconds: (Date.now() - t0) / 1000 };
  } finally {
    await run("docker", ["rm", "-f", "-v", container], inp.log, { quiet: true }).catch(() => undefined);
    await dropDatabase(inp, scratchDb).catch(() => undefined);
    // Left behind only by a failed restore: the half-made copy never replaces anything.
    const leftovers = await withClient(client(inp, "admin", "postgres"), (c) => c.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE $1", [`${target.slice(0, 36)}_kdr_restored_${stamp}`])).catch(() => ({ rows: [] as { datname: string }[] }));
    for (const { datname } of leftovers.rows) await dropDatabase(inp, datname).catch(() => undefined);
    // The restored files belong to the image's user: remove them from inside it.
    await run("docker", ["run", "--rm", "-v", `${work}:/restore`, "--entrypoint", "sh", inp.images.postgres, "-c", "rm -rf /restore/* /restore/.[!.]*"], inp.log, { quiet: true }).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
    rmSync(secrets, { recursive: true, force: true });
    if (!done) inp.log(`catalog restore: failed; the scratch database, container and files are removed${opts.replace ? "" : `, and ${target} was not created`}`);
  }
}

/** The outputs of a local deployment this procedure reads (written by the deployer). */
interface DeploymentOutputs {
  tenantId?: string;
  primaryBuckets: Record<string, string>;
  drBuckets: Record<string, string>;
  primaryRestoreCredentials?: { accessKey: string; secretKey: string };
  drRestoreCredentials: { accessKey: string; secretKey: string };
  catalog: { database: string; owner?: string; writer: string; reader: string };
}

/**
 * The inputs for a deployment of the local platform: its outputs (buckets, read-only keys, roles),
 * its generated secrets, and the platform's catalog server and images.
 */
export function localInputs(o: {
  platform: Platform;
  stack: string;
  stateDir: string;
  region: "primary" | "dr";
  log: (l: string) => void;
}): CatalogRecoveryInputs {
  const st = readState(o.stack, o.stateDir);
  if (!st) throw new Error(`no deployment of stack '${o.stack}' in ${o.stateDir}: deploy it first ('kryonix-dr deploy --stack ${o.stack}'), or run from the recovery stack with --from-env.`);
  const out = st.outputs as unknown as DeploymentOutputs;
  const creds = o.region === "dr" ? out.drRestoreCredentials : out.primaryRestoreCredentials;
  if (!creds || !out.tenantId || !out.catalog.owner) throw new Error(`the deployment of '${o.stack}' exports no read-only credentials for the ${o.region} region, tenant or catalog owner (an older version deployed it): redeploy it with this version ('kryonix-dr deploy --stack ${o.stack}').`);
  const secrets = generatedSecrets(o.stack, o.stateDir);
  const r = o.platform.regions[o.region];
  return {
    catalog: {
      host: o.platform.catalog.host,
      port: o.platform.catalog.port,
      adminUser: o.platform.catalog.user,
      adminPassword: o.platform.catalog.password,
      database: out.catalog.database,
      owner: out.catalog.owner,
      ownerPassword: secrets.catalogOwnerPassword!,
      writer: out.catalog.writer,
      writerPassword: secrets.catalogWriterPassword!,
      reader: out.catalog.reader,
    },
    tenantId: out.tenantId,
    region: { name: r.name, endpoint: r.endpoint },
    buckets: Object.values(o.region === "dr" ? out.drBuckets : out.primaryBuckets),
    restore: creds,
    ageIdentity: secrets.ageIdentity,
    images: { agent: o.platform.images.agent, postgres: o.platform.images.postgres },
    log: o.log,
  };
}
