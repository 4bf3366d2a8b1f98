/**
 * The agent's side of the catalog: opening a connection from settings, and the queries the
 * runner needs, written against the schema in catalog/migrations (the one source of truth).
 */
import { hostname } from "node:os";
import pg from "pg";
import { ConfigError, type Settings } from "./config.js";

export async function connectCatalog(s: Settings): Promise<pg.Client> {
  const c = new pg.Client({
    host: s.require("catalogHost"),
    port: s.int("catalogPort", 5432),
    database: s.get("catalogDatabase") ?? "kryonix_dr",
    user: s.require("catalogUser"),
    password: s.secret("catalogPassword"),
    application_name: "kdr-agent",
    connectionTimeoutMillis: 15000,
  });
  try {
    await c.connect();
  } catch (e) {
    throw new ConfigError(`cannot connect to the catalog ${s.get("catalogUser")}@${s.get("catalogHost")}:${s.int("catalogPort", 5432)}/${s.get("catalogDatabase") ?? "kryonix_dr"}: ${(e as Error).message}. Check KDR_CATALOG_* and the kdr-catalog-password secret.`);
  }
  // An agent killed mid-query must not leave an idle transaction holding locks.
  await c.query("SET idle_in_transaction_session_timeout = '60s'");
  return c;
}

export type BackupType = "full" | "incremental" | "logical";

export interface ArtifactRow {
  role: string;
  object_key: string;
  version_id: string | null;
  sha256: string;
  size_bytes: string;
  raw_size: string | null;
  metadata: { name?: string; rawSha256?: string } & Record<string, unknown>;
}

export interface BackupRow {
  backup_id: string;
  tenant_id: string;
  service_name: string;
  engine: string;
  backup_type: string;
  backup_status: string;
  storage_bucket: string;
  storage_prefix: string;
  backup_location: string;
  raw_size: string | null;
  backup_size: string | null;
  compression_ratio: string | null;
  started_at: Date;
  completed_at: Date | null;
  duration: unknown;
  recovery_point_start: Date | null;
  recovery_point_end: Date | null;
  timeline: number | null;
  start_lsn: string | null;
  end_lsn: string | null;
  checksum: string | null;
  tool: string | null;
  tool_version: string | null;
  encryption_key_id: string | null;
  parent_backup_id: string | null;
  error_message: string | null;
  verified_at: Date | null;
  verify_status: string | null;
  retention_until: Date | null;
  metadata: Record<string, unknown>;
}

export async function createBackup(
  c: pg.ClientBase,
  r: { backupId: string; tenantId: string; service: string; engine: string; type: BackupType; bucket: string; prefix: string; region?: string; runToken: string; parentBackupId?: string },
): Promise<string> {
  const res = await c.query<{ backup_id: string }>(
    `INSERT INTO backup_management (backup_id, tenant_id, service_name, engine, backup_type, storage_bucket, storage_prefix, storage_region,
       run_host, run_pid, run_token, heartbeat_at, parent_backup_id, backup_status)
     VALUES ($12,$1,$2,$3,$4,$5,$6,$7,$8,$9,$10, now(), $11, 'pending') RETURNING backup_id`,
    [r.tenantId, r.service, r.engine, r.type, r.bucket, r.prefix, r.region ?? null, hostname(), process.pid, r.runToken, r.parentBackupId ?? null, r.backupId],
  );
  return res.rows[0]!.backup_id;
}

export async function markRunning(c: pg.ClientBase, id: string): Promise<void> {
  await c.query("UPDATE backup_management SET backup_status = 'running', started_at = now(), heartbeat_at = now() WHERE backup_id = $1", [id]);
}

export async function heartbeat(c: pg.ClientBase, id: string): Promise<void> {
  await c.query("UPDATE backup_management SET heartbeat_at = now() WHERE backup_id = $1 AND backup_status = 'running'", [id]);
}

export interface Completion {
  rawSize: number;
  backupSize: number;
  recoveryPointStart: Date;
  recoveryPointEnd: Date;
  timeline?: number;
  startLsn?: string;
  endLsn?: string;
  checksum?: string;
  tool: string;
  toolVersion: string;
  keyId: string;
  retentionUntil?: Date;
  metadata: Record<string, unknown>;
  artifacts: { role: string; key: string; versionId?: string; sha256: string; sizeBytes: number; rawSize?: number; metadata: Record<string, unknown> }[];
}

/** Artifacts and the completed status land in one transaction: all or nothing. */
export async function completeBackup(c: pg.ClientBase, id: string, d: Completion): Promise<void> {
  await c.query("BEGIN");
  try {
    for (const a of d.artifacts) {
      await c.query(
        `INSERT INTO backup_artifact (backup_id, role, object_key, version_id, sha256, size_bytes, raw_size, metadata) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
        [id, a.role, a.key, a.versionId ?? null, a.sha256, a.sizeBytes, a.rawSize ?? null, JSON.stringify(a.metadata)],
      );
    }
    const r = await c.query(
      `UPDATE backup_management SET backup_status = 'completed', completed_at = now(), raw_size = $2, backup_size = $3,
         recovery_point_start = $4, recovery_point_end = $5, timeline = $6, start_lsn = $7, end_lsn = $8, checksum = $9,
         tool = $10, tool_version = $11, encryption_key_id = $12, retention_until = $13, metadata = metadata || $14::jsonb
       WHERE backup_id = $1 AND backup_status = 'running'`,
      [id, d.rawSize, d.backupSize, d.recoveryPointStart, d.recoveryPointEnd, d.timeline ?? null, d.startLsn ?? null, d.endLsn ?? null, d.checksum ?? null, d.tool, d.toolVersion, d.keyId, d.retentionUntil ?? null, JSON.stringify(d.metadata)],
    );
    if (r.rowCount !== 1) throw new Error(`backup ${id} is no longer running (another agent reconciled it as failed); its objects will not be used.`);
    await c.query("COMMIT");
  } catch (e) {
    await c.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
}

export async function failBackup(c: pg.ClientBase, id: string, message: string): Promise<void> {
  await c.query(
    "UPDATE backup_management SET backup_status = 'failed', failed_at = now(), error_message = $2 WHERE backup_id = $1 AND backup_status IN ('pending','running')",
    [id, message.slice(0, 4000) || "failed"],
  );
}

/**
 * Called while holding the service lock, so every pending/running row of the service belongs
 * to a run that died: it becomes failed with a reason that says so.
 */
export async function reconcileStaleRuns(c: pg.ClientBase, tenantId: string, service: string): Promise<string[]> {
  const r = await c.query<{ backup_id: string }>(
    `UPDATE backup_management SET backup_status = 'failed', failed_at = now(),
       error_message = format('agent %s (pid %s) stopped during the run (last heartbeat %s); reconciled by the next run', run_host, run_pid, heartbeat_at)
     WHERE tenant_id = $1 AND service_name = $2 AND backup_status IN ('pending','running') RETURNING backup_id`,
    [tenantId, service],
  );
  return r.rows.map((x) => x.backup_id);
}

export async function recordWalSegment(
  c: pg.ClientBase,
  w: { tenantId: string; service: string; timeline: number; segment: string; key: string; versionId?: string; sha256: string; sizeBytes: number; rawSize: number; coversUntil: Date; keyId: string },
): Promise<void> {
  await c.query(
    `INSERT INTO wal_segment (tenant_id, service_name, timeline, segment_name, object_key, version_id, sha256, size_bytes, raw_size, covers_until, encryption_key_id)
     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)
     ON CONFLICT (tenant_id, service_name, timeline, segment_name) DO UPDATE SET
       object_key = EXCLUDED.object_key, version_id = EXCLUDED.version_id, sha256 = EXCLUDED.sha256,
       size_bytes = EXCLUDED.size_bytes, raw_size = EXCLUDED.raw_size, covers_until = EXCLUDED.covers_until, uploaded_at = now()`,
    [w.tenantId, w.service, w.timeline, w.segment, w.key, w.versionId ?? null, w.sha256, w.sizeBytes, w.rawSize, w.coversUntil, w.keyId],
  );
}

export async function recordVerification(c: pg.ClientBase, id: string, passed: boolean, details: Record<string, unknown>): Promise<void> {
  await c.query("UPDATE backup_management SET verified_at = now(), verify_status = $2, verify_details = $3 WHERE backup_id = $1", [
    id,
    passed ? "passed" : "failed",
    JSON.stringify(details),
  ]);
}

export async function getBackup(c: pg.ClientBase, id: string): Promise<BackupRow | undefined> {
  return (await c.query<BackupRow>("SELECT * FROM backup_management WHERE backup_id = $1", [id])).rows[0];
}

export async function artifactsOf(c: pg.ClientBase, id: string): Promise<ArtifactRow[]> {
  return (await c.query<ArtifactRow>("SELECT * FROM backup_artifact WHERE backup_id = $1 ORDER BY created_at, object_key", [id])).rows;
}

/** Newest completed backup of a type (by recovery point), optionally not after `before`. */
export async function latestGoodBackup(c: pg.ClientBase, tenantId: string, service: string, types: string[] = ["full"], before?: Date): Promise<BackupRow | undefined> {
  const r = await c.query<BackupRow>(
    `SELECT * FROM backup_management WHERE tenant_id = $1 AND service_name = $2 AND backup_status = 'completed'
       AND backup_type = ANY($3) AND ($4::timestamptz IS NULL OR recovery_point_end <= $4)
       AND coalesce(verify_status, 'passed') <> 'failed'
     ORDER BY recovery_point_end DESC LIMIT 1`,
    [tenantId, service, types, before ?? null],
  );
  return r.rows[0];
}

export interface WalRow {
  segment_name: string;
  timeline: number;
  object_key: string;
  version_id: string | null;
  sha256: string;
  size_bytes: string;
  raw_size: string | null;
  covers_until: Date;
}

/** WAL segment file name holding `lsn` (16 MiB segments, PostgreSQL's default). */
export function walFileName(timeline: number, lsn: string, segBytes = 16 * 1024 * 1024): string {
  const [hi, lo] = lsn.split("/").map((x) => parseInt(x, 16)) as [number, number];
  const segsPerId = 0x100000000 / segBytes;
  const segno = hi * segsPerId + Math.floor(lo / segBytes);
  const h = (n: number) => n.toString(16).toUpperCase().padStart(8, "0");
  return h(timeline) + h(Math.floor(segno / segsPerId)) + h(segno % segsPerId);
}

/**
 * PostgreSQL recovery plan: the newest good base whose recovery point is not after the target,
 * and the contiguous run of WAL segments from the base's start up to the first segment that
 * covers the target (or to the last one uploaded).
 */
export async function recoveryPlan(c: pg.ClientBase, tenantId: string, service: string, targetTime?: Date): Promise<{ base: BackupRow; walSegments: WalRow[]; reaches: Date; gap?: string }> {
  const base = await latestGoodBackup(c, tenantId, service, ["full"], targetTime);
  if (!base) {
    throw new Error(`no completed, unfailed full backup of '${service}'${targetTime ? ` with a recovery point at or before ${targetTime.toISOString()}` : ""} in the catalog: run 'kdr-agent list' to see what exists.`);
  }
  const wal = (
    await c.query<WalRow>(
      `SELECT * FROM wal_segment WHERE tenant_id = $1 AND service_name = $2 AND segment_name NOT LIKE '%.history' ORDER BY timeline, segment_name`,
      [tenantId, service],
    )
  ).rows;
  const segments: WalRow[] = [];
  let reaches = base.recovery_point_end!;
  let gap: string | undefined;
  if (base.start_lsn && base.timeline) {
    const first = walFileName(base.timeline, base.start_lsn);
    let expect = first;
    for (const w of wal) {
      if (w.segment_name < first || w.timeline !== base.timeline) continue;
      if (w.segment_name !== expect) {
        gap = `WAL segment ${expect} is missing from the archive; recovery can only reach ${reaches.toISOString()}`;
        break;
      }
      segments.push(w);
      if (w.covers_until > reaches) reaches = w.covers_until;
      if (targetTime && w.covers_until >= targetTime) break;
      expect = nextSegment(expect);
    }
  }
  return { base, walSegments: segments, reaches, gap };
}

function nextSegment(name: string): string {
  const tl = name.slice(0, 8);
  let hi = parseInt(name.slice(8, 16), 16);
  let lo = parseInt(name.slice(16, 24), 16) + 1;
  if (lo > 0xff) {
    lo = 0;
    hi++;
  }
  const h = (n: number) => n.toString(16).toUpperCase().padStart(8, "0");
  return tl + h(hi) + h(lo);
}

export async function listBackups(c: pg.ClientBase, tenantId: string, service?: string, limit = 50): Promise<BackupRow[]> {
  return (
    await c.query<BackupRow>(
      `SELECT * FROM backup_management WHERE tenant_id = $1 AND ($2::text IS NULL OR service_name = $2) ORDER BY created_at DESC LIMIT $3`,
      [tenantId, service ?? null, limit],
    )
  ).rows;
}

/**
 * Seconds since the newest recovery point a restore is known to reach from VERIFIED data:
 * the newest verified backup, extended (PostgreSQL) by the contiguous WAL uploaded after it.
 */
export async function verifiedRecoveryPoint(c: pg.ClientBase, tenantId: string, service: string, engine: string): Promise<{ point?: Date; verifiedBackup?: BackupRow }> {
  const v = (
    await c.query<BackupRow>(
      `SELECT * FROM backup_management WHERE tenant_id = $1 AND service_name = $2 AND backup_status = 'completed' AND verify_status = 'passed'
         AND backup_type IN ('full','incremental') ORDER BY recovery_point_end DESC LIMIT 1`,
      [tenantId, service],
    )
  ).rows[0];
  if (!v) return {};
  let point = v.recovery_point_end!;
  if (engine === "postgres") {
    const base = v.backup_type === "full" ? v : await getBackup(c, (v.metadata as { baseBackupId?: string }).baseBackupId ?? v.parent_backup_id ?? "");
    if (base?.start_lsn) {
      const plan = await recoveryPlan(c, tenantId, service).catch(() => undefined);
      if (plan && plan.base.backup_id === base.backup_id && plan.reaches > point) point = plan.reaches;
    }
  }
  return { point, verifiedBackup: v };
}

export async function expireBackup(c: pg.ClientBase, id: string): Promise<void> {
  await c.query("UPDATE backup_management SET backup_status = 'expired', expired_at = now() WHERE backup_id = $1 AND backup_status IN ('completed','failed')", [id]);
}
