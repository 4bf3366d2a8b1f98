/** Recovery plans (latest, a point in time, a backup id), consistent plans across services, and the RPO. */
import { latestGoodBackup, statusOf } from "./runs.js";
import { ARTIFACT_COLS, WAL_COLS, camel, checkDate, checkService } from "./sql.js";
import { CatalogError, DEFAULT_WAL_SEGMENT_SIZE, RESTORABLE_BASE_TYPES } from "./types.js";
import type { ArtifactRow, BackupRow, BackupType, Db, WalSegmentRow } from "./types.js";
import { lsnToSegmentNumber, walFileName, walSegmentNumber } from "./wal.js";

// ---------------------------------------------------------------------------------------------
// Recovery plans and RPO

export interface RecoveryPlan {
  service: string;
  /** What was asked for. */
  target: Date | "latest";
  /** The backup to restore first (a full, or the newest member of a delta chain). */
  base: BackupRow;
  /** Full backup first, then each delta up to `base` (just [base] without a chain). */
  chain: BackupRow[];
  /** Stored objects of every backup in the chain, in chain order. */
  artifacts: ArtifactRow[];
  /** Archived WAL to replay after the base, in order (empty for engines without WAL). */
  wal: WalSegmentRow[];
  /** Timeline history files the restore needs for its timeline. */
  history: WalSegmentRow[];
  /**
   * The point the restore will reach: the target time itself, or (for latest) the newest point
   * covered by the base and the contiguous WAL after it.
   */
  recoveryPoint: Date;
  /** For PostgreSQL: recovery_target_time to set (undefined means replay all of `wal`). */
  recoveryTargetTime?: Date;
}

export interface RecoveryPlanOptions {
  tenantId?: string;
  /** Only start from verified bases. */
  verifiedOnly?: boolean;
  /** @default full, incremental, differential */
  baseTypes?: BackupType[];
  walSegmentSize?: number;
}

/**
 * The base backup (with its delta chain) and the WAL needed to reach `target` (or the newest
 * recoverable point). Engines without WAL restore the newest snapshot at or before the target.
 * Throws a CatalogError saying what is covered when the target is in the future, before the oldest
 * good backup, or (with WAL) beyond the newest covered point or behind a gap in the WAL archive.
 */
export async function recoveryPlan(
  db: Db,
  service: string,
  target: Date | "latest" = "latest",
  opts: RecoveryPlanOptions = {},
): Promise<RecoveryPlan> {
  checkService(service);
  if (target !== "latest") checkDate("target", target);
  const at = target === "latest" ? undefined : target;
  const baseTypes = opts.baseTypes ?? [...RESTORABLE_BASE_TYPES];
  const segSize = opts.walSegmentSize ?? DEFAULT_WAL_SEGMENT_SIZE;
  const which = opts.verifiedOnly ? "verified " : "";

  if (at) {
    // The catalog's clock, not this host's: the two may differ, and the catalog stamps the backups.
    const now = (await db.query<{ now: Date }>("SELECT now() AS now")).rows[0]!.now;
    if (at.getTime() > now.getTime()) {
      throw new CatalogError(
        `target ${at.toISOString()} is in the future (the catalog's clock reads ${now.toISOString()}): nothing can be restored to a moment that has not happened. ` +
          `Choose a time at or before now, or 'latest'.`,
      );
    }
  }
  const base = await latestGoodBackup(db, service, { tenantId: opts.tenantId, type: baseTypes, before: at, verifiedOnly: opts.verifiedOnly });
  if (!base) {
    const oldest = await db.query<{ rp: Date; n: string }>(
      `SELECT min(recovery_point_end) AS rp, count(*) AS n FROM backup_management
       WHERE service_name = $1 AND backup_status = 'completed' AND backup_type = ANY($2)
         AND verify_status IS DISTINCT FROM 'failed' AND (NOT $3 OR verify_status = 'passed')
         AND ($4::uuid IS NULL OR tenant_id = $4)`,
      [service, baseTypes, opts.verifiedOnly ?? false, opts.tenantId ?? null],
    );
    const o = oldest.rows[0]!;
    if (Number(o.n) === 0) {
      // Completed backups that failed verification are not restored from; say which, and why.
      const failed = await db.query<{ backup_id: string; rp: Date; details: unknown }>(
        `SELECT backup_id, recovery_point_end AS rp, verify_details AS details FROM backup_management
         WHERE service_name = $1 AND backup_status = 'completed' AND backup_type = ANY($2) AND verify_status = 'failed'
           AND ($3::uuid IS NULL OR tenant_id = $3) AND ($4::timestamptz IS NULL OR recovery_point_end <= $4)
         ORDER BY recovery_point_end DESC LIMIT 3`,
        [service, baseTypes, opts.tenantId ?? null, at ?? null],
      );
      if (failed.rows.length > 0) {
        const why = failed.rows.map((f) => `${f.backup_id} (point ${f.rp.toISOString()}): ${verifyError(f.details)}`).join("; ");
        throw new CatalogError(
          `every completed ${baseTypes.join("/")} backup of '${service}'${at ? ` before ${at.toISOString()}` : ""} failed verification, so none is restored from: ${why}. ` +
            `If the cause is outside the backup (a tool missing where verify ran, storage unreachable), fix it and verify again ('kdr-agent verify --backup-id <id>'); otherwise take a new full backup.`,
        );
      }
      throw new CatalogError(`no ${which}completed ${baseTypes.join("/")} backup of '${service}' in the catalog: nothing to restore from. Run a full backup${opts.verifiedOnly ? " and verify it" : ""} first.`);
    }
    throw new CatalogError(
      `target ${at!.toISOString()} is before the oldest good ${which}backup of '${service}' (its recovery point is ${o.rp.toISOString()}): ` +
        `choose a time at or after ${o.rp.toISOString()}, or 'latest'.`,
    );
  }

  // The delta chain back to a full backup.
  const chain: BackupRow[] = [base];
  for (let cur = base; cur.parentBackupId; ) {
    const parent = await statusOf(db, cur.parentBackupId);
    if (!parent || parent.backupStatus !== "completed" || parent.verifyStatus === "failed") {
      throw new CatalogError(
        `backup ${cur.backupId} of '${service}' needs its parent ${cur.parentBackupId}, which is ${parent ? `${parent.backupStatus}${parent.verifyStatus === "failed" ? " and failed verification" : ""}` : "missing"}: ` +
          `the chain is broken. Restore from an earlier full backup (pass an earlier target) or take a new full backup.`,
      );
    }
    if (chain.some((b) => b.backupId === parent.backupId)) throw new CatalogError(`backup chain of ${base.backupId} loops at ${parent.backupId}: the catalog is inconsistent.`);
    chain.unshift(parent);
    cur = parent;
  }
  const artRes = await db.query(
    `SELECT ${ARTIFACT_COLS} FROM backup_artifact WHERE backup_id = ANY($1::uuid[]) ORDER BY created_at, object_key`,
    [chain.map((b) => b.backupId)],
  );
  const arts = artRes.rows.map((r) => camel<ArtifactRow>(r));
  const artifacts = chain.flatMap((b) => arts.filter((a) => a.backupId === b.backupId));
  const baseEnd = base.recoveryPointEnd!;

  // Engines without WAL: the backup's own recovery point is all there is.
  const walStartLsn = base.metadata?.walIncluded === false ? base.startLsn : (base.endLsn ?? base.startLsn);
  const timeline = base.timeline ?? 1;
  const hasWal = walStartLsn
    ? (await db.query(`SELECT 1 FROM wal_segment WHERE service_name = $1 AND ($2::uuid IS NULL OR tenant_id = $2) AND expired_at IS NULL LIMIT 1`, [service, opts.tenantId ?? null])).rows.length > 0
    : false;
  if (!walStartLsn || !hasWal) {
    // A snapshot restores the state at its own recovery point: for a target after the newest
    // snapshot that is the newest one (the gap is data loss the report shows), as 'latest' would
    // give at that moment. Only a target still in the future is refused (checked above).
    return { service, target, base, chain, artifacts, wal: [], history: [], recoveryPoint: baseEnd };
  }

  const first = lsnToSegmentNumber(walStartLsn, segSize);
  // Only this timeline's segments from the base on (names of equal width sort in LSN order), and
  // the history files: a week of 60 s switches is 10k rows a plan need not read.
  const walRes = await db.query(
    `SELECT ${WAL_COLS} FROM wal_segment
     WHERE service_name = $1 AND ($2::uuid IS NULL OR tenant_id = $2) AND expired_at IS NULL
       AND ((timeline = $3 AND segment_name >= $4) OR segment_name LIKE '%.history')
     ORDER BY timeline, segment_name`,
    [service, opts.tenantId ?? null, timeline, walFileName(timeline, first, segSize)],
  );
  const all = walRes.rows.map((r) => camel<WalSegmentRow>(r));
  const history = all.filter((s) => s.segmentName.endsWith(".history") && parseInt(s.segmentName.slice(0, 8), 16) <= timeline);
  // A completed segment supersedes the .partial of the same name.
  const byNo = new Map<bigint, WalSegmentRow>();
  for (const s of all) {
    if (s.timeline !== timeline || s.segmentName.endsWith(".history")) continue;
    const no = walSegmentNumber(s.segmentName, segSize);
    const prev = byNo.get(no);
    if (!prev || prev.segmentName.endsWith(".partial")) byNo.set(no, s);
  }
  const mustReach = base.endLsn ? lsnToSegmentNumber(base.endLsn, segSize) : first;
  const wal: WalSegmentRow[] = [];
  let coveredUntil = baseEnd;
  for (let no = first; ; no++) {
    const seg = byNo.get(no);
    if (!seg) break;
    wal.push(seg);
    if (seg.coversUntil > coveredUntil) coveredUntil = seg.coversUntil;
    // A .partial is the newest piece there is; nothing after it can be contiguous.
    if (seg.segmentName.endsWith(".partial")) break;
    if (at && no >= mustReach && seg.coversUntil.getTime() >= at.getTime()) break;
  }
  const missing = walFileName(timeline, first + BigInt(wal.length), segSize);
  if (base.metadata?.walIncluded === false && (wal.length === 0 || first + BigInt(wal.length) <= mustReach)) {
    throw new CatalogError(
      `base ${base.backupId} of '${service}' was taken without its WAL and archived segment ${missing} is missing: it cannot be made consistent. Restore from another base.`,
    );
  }
  if (at && coveredUntil.getTime() < at.getTime()) {
    const gap = wal.length > 0 || byNo.size > 0 ? ` (archived WAL stops being contiguous before segment ${missing})` : "";
    throw new CatalogError(
      `target ${at.toISOString()} is beyond the newest covered point of '${service}': base ${base.backupId} plus archived WAL reach ${coveredUntil.toISOString()}${gap}. ` +
        `Choose a time at or before ${coveredUntil.toISOString()}, or 'latest'.`,
    );
  }
  return {
    service, target, base, chain, artifacts, wal, history,
    recoveryPoint: at ?? coveredUntil,
    ...(at ? { recoveryTargetTime: at } : {}),
  };
}

export interface ConsistentPlans {
  /** The one point in time every plan restores to (or, for engines without WAL, just before). */
  point: Date;
  plans: RecoveryPlan[];
}

/**
 * One recovery point across several services: for `latest`, the newest time every service can
 * reach (the minimum of their latest points); then each service's plan for that time. Services
 * with WAL restore to exactly that point; the others to their newest backup at or before it.
 */
export async function consistentRecoveryPlans(
  db: Db,
  services: string[],
  target: Date | "latest" = "latest",
  opts: RecoveryPlanOptions = {},
): Promise<ConsistentPlans> {
  if (services.length === 0) throw new CatalogError("no services given: name the services to recover together.");
  let point: Date;
  if (target === "latest") {
    const latest = await Promise.all(services.map((s) => recoveryPlan(db, s, "latest", opts)));
    point = new Date(Math.min(...latest.map((p) => p.recoveryPoint.getTime())));
  } else {
    point = target;
  }
  const plans: RecoveryPlan[] = [];
  for (const s of services) plans.push(await recoveryPlan(db, s, point, opts));
  return { point, plans };
}

/**
 * The newest VERIFIED recovery point of a service and its age in seconds (on the catalog's
 * clock), or null when it has none. Defined as the recovery point
 * `recoveryPlan(service, 'latest', { verifiedOnly: true })` reaches: a verified base plus the
 * contiguous archived WAL after it. WAL segments count as verified by the SHA-256 recorded at
 * upload (the agent hashes the bytes it stored); an unverified newer base does not improve RPO
 * until a verify passes.
 */
export async function verifiedRecoveryPoint(db: Db, service: string, opts: { tenantId?: string; now?: Date } = {}): Promise<{ point: Date; ageSeconds: number } | null> {
  let plan: RecoveryPlan;
  try {
    plan = await recoveryPlan(db, service, "latest", { tenantId: opts.tenantId, verifiedOnly: true });
  } catch (e) {
    if (e instanceof CatalogError && /^no verified completed/.test(e.message)) return null;
    throw e;
  }
  const now = opts.now ?? (await db.query<{ now: Date }>("SELECT now() AS now")).rows[0]!.now;
  return { point: plan.recoveryPoint, ageSeconds: Math.max(0, (now.getTime() - plan.recoveryPoint.getTime()) / 1000) };
}

/** The reason a failed verify recorded (verify_details.error, else the details as JSON). */
function verifyError(details: unknown): string {
  const d = details as { error?: unknown } | null;
  if (d && typeof d.error === "string") return d.error.length > 300 ? `${d.error.slice(0, 299)}…` : d.error;
  return details === null || details === undefined ? "no reason recorded" : JSON.stringify(details).slice(0, 300);
}
