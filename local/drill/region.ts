/**
 * Region loss for `kryonix-dr drill --disaster region`: waiting until the DR region holds copies
 * of the backups (the catalog server's own included), losing the primary region (its S3 server
 * stopped, the catalog database dropped), and bringing the primary region back for the platform
 * afterwards. Getting the catalog back is local/catalog-recovery.ts (`kryonix-dr catalog`). Each
 * step is a command of docs/runbooks.md §4.
 */
import { resolve } from "node:path";
import pg from "pg";
import * as cat from "../../catalog/queries.js";
import { CATALOG_SERVICE } from "../../contract/index.js";
import { run as runLogged } from "../catalog-recovery.js";
import type { Platform } from "../platform.js";
import type { DrillRun } from "./phases.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
      // PostgreSQL's writes are in its WAL (below): any base of this drill restores them, as the
      // seeded drill's, taken before the writes (phases.ts watchBackups). The others' backups hold
      // the writes only when they end after the writes began.
      const pgBase = s.engine === "postgres";
      const { rows } = await db.query<{ n: string }>(
        `SELECT count(*) AS n FROM backup_management b JOIN backup_artifact a USING (backup_id)
         JOIN object_copy c ON c.object_key = a.object_key AND c.source_version_id = a.version_id
         WHERE b.tenant_id = $1 AND b.service_name = $2 AND b.backup_status = 'completed' AND a.role = 'manifest' AND ${pgBase ? "b.backup_type <> 'wal' AND b.created_at >= $3" : "b.recovery_point_end > $3"}`,
        [run.tenantId, s.name, new Date(pgBase ? run.startedAt : writesStart)],
      );
      if (Number(rows[0]!.n) === 0) missing.push(`${s.name}: no ${pgBase ? "base of this drill" : "backup with the writes"} copied to the DR region yet`);
      if (s.engine === "postgres") {
        const w = await db.query<{ n: string }>(
          `SELECT count(*) AS n FROM wal_segment w JOIN object_copy c ON c.object_key = w.object_key AND c.source_version_id = w.version_id
           WHERE w.tenant_id = $1 AND w.service_name = $2 AND w.uploaded_at > $3`,
          [run.tenantId, s.name, new Date(writesStart)],
        );
        if (Number(w.rows[0]!.n) === 0) missing.push(`${s.name}: no WAL of the writes copied to the DR region yet`);
      }
    }
    if (run.catalogMode === "restore") {
      // The catalog comes back from its server's own backups: one must be in the DR region.
      const { rows } = await db.query<{ n: string }>(
        `SELECT count(*) AS n FROM backup_management b JOIN backup_artifact a USING (backup_id)
         JOIN object_copy c ON c.object_key = a.object_key AND c.source_version_id = a.version_id
         WHERE b.service_name = $1 AND b.backup_status = 'completed' AND a.role = 'manifest'`,
        [CATALOG_SERVICE],
      );
      if (Number(rows[0]!.n) === 0) missing.push(`${CATALOG_SERVICE}: no backup of the catalog server copied to the DR region yet`);
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
