/**
 * Region loss for `kryonix-dr drill --disaster region`: waiting until the DR region holds copies
 * of the backups, losing the primary region (its S3 server stopped, the catalog database
 * dropped), getting a catalog back from the DR region alone (a new database, migrated, rebuilt by
 * the agent image's `catalog rebuild` from each DR bucket), and bringing the primary region back
 * for the platform afterwards. Each step is a command of docs/runbooks.md §4.
 */
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pg from "pg";
import * as cat from "../../catalog/queries.js";
import { AGENT_ENV } from "../../contract/index.js";
import { migrate } from "../../catalog/migrate.js";
import { readState } from "../deployer.js";
import { generatedSecrets } from "../local-stack.js";
import type { Platform } from "../platform.js";
import type { DrillRun } from "./phases.js";
import { LOCAL_STACK } from "./stacks.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The local deployment's outputs the region drill reads (written by the deployer). */
interface LocalOutputs {
  drBuckets: Record<string, string>;
  drRestoreCredentials: { accessKey: string; secretKey: string };
  catalog: { database: string; writer: string; reader: string };
}

function localOutputs(run: DrillRun): LocalOutputs {
  const st = readState(LOCAL_STACK, run.stateDir);
  if (!st) throw new Error(`the local stack's deployment state is missing in ${run.stateDir}: deploy it first.`);
  return st.outputs as unknown as LocalOutputs;
}

/** Runs a command to completion; its output goes to the drill's log, indented. */
function runLogged(cmd: string, args: string[], log: (l: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let tail = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => {
      tail = (tail + d.toString()).slice(-4000);
      for (const line of d.toString().split("\n")) if (line.trim()) log(`    ${line}`);
    });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolvePromise(out) : reject(new Error(`${cmd} ${args.join(" ")} exited ${code}: ${tail.trim()}`))));
  });
}

/** Stops or starts one S3 region of the local platform (scripts/region.sh). */
export async function setRegion(action: "stop" | "start", region: "primary" | "dr", projectDir: string, log: (l: string) => void): Promise<void> {
  await runLogged("bash", [resolve(projectDir, "scripts", "region.sh"), action, region], log);
}

/**
 * Waits until, for every service, the DR region holds a copy of a completed backup holding the
 * drill's writes (its manifest copied last), and for PostgreSQL WAL archived since the writes
 * began. The writers keep writing meanwhile.
 */
export async function waitForCopies(run: DrillRun, db: pg.Pool, writesStart: number): Promise<void> {
  const deadline = Date.now() + 240_000;
  for (;;) {
    const missing: string[] = [];
    for (const s of run.services) {
      const { rows } = await db.query<{ n: string }>(
        `SELECT count(*) AS n FROM backup_management b JOIN backup_artifact a USING (backup_id)
         JOIN object_copy c ON c.object_key = a.object_key AND c.source_version_id = a.version_id
         WHERE b.tenant_id = $1 AND b.service_name = $2 AND b.backup_status = 'completed' AND a.role = 'manifest' AND b.recovery_point_end > $3`,
        [run.tenantId, s.name, new Date(writesStart)],
      );
      if (Number(rows[0]!.n) === 0) missing.push(`${s.name}: no backup with the writes copied to the DR region yet`);
      if (s.engine === "postgres") {
        const w = await db.query<{ n: string }>(
          `SELECT count(*) AS n FROM wal_segment w JOIN object_copy c ON c.object_key = w.object_key AND c.source_version_id = w.version_id
           WHERE w.tenant_id = $1 AND w.service_name = $2 AND w.uploaded_at > $3`,
          [run.tenantId, s.name, new Date(writesStart)],
        );
        if (Number(w.rows[0]!.n) === 0) missing.push(`${s.name}: no WAL of the writes copied to the DR region yet`);
      }
    }
    const lag = await cat.replicationLag(db);
    run.log(`  DR copies: ${lag.map((l) => `${l.service} ${l.copies} object(s), newest from ${l.newestCopiedSourceAt?.toISOString() ?? "-"}`).join("; ") || "none yet"}`);
    if (missing.length === 0) return;
    if (Date.now() > deadline) throw new Error(`the DR region did not receive the backups in 240 s: ${missing.join("; ")}. See 'docker service logs' of the local stack's replicator services.`);
    await sleep(5000);
  }
}

/** The catalog server as its admin. */
function adminClient(p: Platform, database = "postgres"): pg.Client {
  const c = new pg.Client({ host: p.catalog.host, port: p.catalog.port, user: p.catalog.user, password: p.catalog.password, database });
  c.on("error", () => undefined);
  return c;
}

/** The region's catalog database goes with it: dropped, whatever is connected. */
export async function dropCatalog(run: DrillRun, database: string): Promise<void> {
  const c = adminClient(run.platform);
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(database)} WITH (FORCE)`);
  } finally {
    await c.end().catch(() => undefined);
  }
  run.log(`  dropped the catalog database ${database}`);
}

/**
 * A new, empty catalog: the database (owned by the catalog owner, connectable by the writer and
 * reader roles, which live in the server, not the database) and every migration, applied as the
 * owner, as `kryonix-dr migrate` does.
 */
export async function createCatalog(run: DrillRun, database: string): Promise<void> {
  const out = localOutputs(run);
  const secrets = generatedSecrets(LOCAL_STACK, run.stateDir);
  const admin = adminClient(run.platform);
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(database)} OWNER kryonix_dr_owner`);
    await admin.query(`REVOKE ALL ON DATABASE ${pg.escapeIdentifier(database)} FROM PUBLIC`);
    await admin.query(`GRANT CONNECT ON DATABASE ${pg.escapeIdentifier(database)} TO ${pg.escapeIdentifier(out.catalog.writer)}, ${pg.escapeIdentifier(out.catalog.reader)}`);
  } finally {
    await admin.end().catch(() => undefined);
  }
  const owner = new pg.Client({ host: run.platform.catalog.host, port: run.platform.catalog.port, user: "kryonix_dr_owner", password: secrets.catalogOwnerPassword, database });
  await owner.connect();
  try {
    const r = await migrate(owner);
    run.log(`  created the catalog database ${database} and applied ${r.applied.length} migration(s) (${r.applied.at(-1) ?? "none"} last)`);
  } finally {
    await owner.end().catch(() => undefined);
  }
}

/**
 * Rebuilds the new catalog from each DR bucket with the agent image (`kdr-agent catalog rebuild`),
 * reading with the DR region's restore credentials (read-only). Returns the rebuild summaries.
 */
export async function rebuildFromDr(run: DrillRun, database: string): Promise<Array<{ bucket: string; backups: { inserted: number }; walSegments: { inserted: number }; skipped: { key: string; reason: string }[] }>> {
  const out = localOutputs(run);
  const secrets = generatedSecrets(LOCAL_STACK, run.stateDir);
  const dir = mkdtempSync(join(tmpdir(), "kdr-rebuild-"));
  chmodSync(dir, 0o755);
  try {
    // Files readable by the image's user, in a directory only root lists.
    for (const [f, v] of Object.entries({
      "kdr-s3-access-key": out.drRestoreCredentials.accessKey,
      "kdr-s3-secret-key": out.drRestoreCredentials.secretKey,
      "kdr-catalog-password": secrets.catalogWriterPassword!,
    })) writeFileSync(join(dir, f), `${v}\n`, { mode: 0o644 });
    const dr = run.platform.regions.dr;
    const sums = [];
    for (const bucket of [...new Set(Object.values(out.drBuckets))]) {
      const json = await runLogged(
        "docker",
        [
          "run", "--rm", "--network", "host", "-v", `${dir}:/run/secrets:ro`,
          ...Object.entries({
            [AGENT_ENV.s3Endpoint]: dr.endpoint,
            [AGENT_ENV.s3Region]: dr.name,
            [AGENT_ENV.s3Bucket]: bucket,
            [AGENT_ENV.catalogHost]: run.platform.catalog.host,
            [AGENT_ENV.catalogPort]: String(run.platform.catalog.port),
            [AGENT_ENV.catalogDatabase]: database,
            [AGENT_ENV.catalogUser]: out.catalog.writer,
          }).flatMap(([k, v]) => ["-e", `${k}=${v}`]),
          run.platform.images.agent, "catalog", "rebuild", "--json",
        ],
        run.log,
      );
      sums.push({ bucket, ...(JSON.parse(json) as { backups: { inserted: number }; walSegments: { inserted: number }; skipped: { key: string; reason: string }[] }) });
    }
    return sums;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
