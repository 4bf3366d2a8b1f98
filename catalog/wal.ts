/** The WAL archive: segments recorded, expired and listed; LSN and segment-name arithmetic. */
import { LSN_RE } from "./runs.js";
import { WAL_COLS, camel, checkBytes, checkDate, checkService, checkSha256, checkUuid } from "./sql.js";
import { CatalogError, DEFAULT_WAL_SEGMENT_SIZE } from "./types.js";
import type { Db, WalSegmentRow } from "./types.js";

// ---------------------------------------------------------------------------------------------
// WAL archive

export interface WalSegmentInput {
  tenantId: string;
  service: string;
  timeline: number;
  /** File name as PostgreSQL writes it: 24 hex digits (optionally .partial) or TTTTTTTT.history. */
  segmentName: string;
  objectKey: string;
  versionId?: string | null;
  sha256: string;
  /** Stored bytes. */
  sizeBytes: number;
  rawSize?: number | null;
  /** SHA-256 of the plaintext: a second upload of the same segment is told by it. */
  rawSha256?: string | null;
  /** Newest point in time replaying this segment reaches. */
  coversUntil: Date;
  startLsn?: string;
  endLsn?: string;
  encryptionKeyId?: string;
}

/**
 * Records an uploaded WAL segment. Uploading the same segment again with the same content (the
 * same plaintext SHA-256: age makes every upload's stored bytes differ) is a no-op (inserted:
 * false) that keeps the first upload's object. A `.partial` segment is re-recorded as it grows. A
 * completed segment that arrives with different content is refused: two writers or a forked
 * timeline, which must be looked at, not papered over.
 */
export async function recordWalSegment(db: Db, s: WalSegmentInput): Promise<{ segment: WalSegmentRow; inserted: boolean }> {
  checkUuid("tenantId", s.tenantId);
  checkService(s.service);
  if (!/^([0-9A-F]{24}(\.partial)?|[0-9A-F]{8}\.history)$/.test(s.segmentName)) {
    throw new CatalogError(`WAL file name '${s.segmentName}' is invalid: expected 24 uppercase hex digits (optionally .partial) or TTTTTTTT.history, as in pg_wal.`);
  }
  if (!Number.isInteger(s.timeline) || s.timeline < 1) throw new CatalogError(`timeline must be an integer >= 1; got ${s.timeline}.`);
  checkSha256(`sha256 of WAL segment ${s.segmentName}`, s.sha256);
  checkBytes("sizeBytes", s.sizeBytes);
  checkBytes("rawSize", s.rawSize);
  if (s.rawSha256 != null) checkSha256(`raw sha256 of WAL segment ${s.segmentName}`, s.rawSha256);
  checkDate("coversUntil", s.coversUntil);
  if (!s.coversUntil) throw new CatalogError("coversUntil is required: the newest point in time this segment lets a restore reach.");
  const { rows } = await db.query(
    `INSERT INTO wal_segment AS w (tenant_id, service_name, timeline, segment_name, object_key, version_id, sha256,
                                   size_bytes, raw_size, covers_until, start_lsn, end_lsn, encryption_key_id, raw_sha256)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::pg_lsn, $12::pg_lsn, $13, $14)
     ON CONFLICT ON CONSTRAINT wal_segment_once DO UPDATE SET
       object_key = EXCLUDED.object_key, version_id = EXCLUDED.version_id, sha256 = EXCLUDED.sha256,
       size_bytes = EXCLUDED.size_bytes, raw_size = EXCLUDED.raw_size, raw_sha256 = EXCLUDED.raw_sha256,
       covers_until = greatest(w.covers_until, EXCLUDED.covers_until),
       start_lsn = coalesce(EXCLUDED.start_lsn, w.start_lsn), end_lsn = coalesce(EXCLUDED.end_lsn, w.end_lsn),
       encryption_key_id = coalesce(EXCLUDED.encryption_key_id, w.encryption_key_id),
       uploaded_at = CASE WHEN w.sha256 = EXCLUDED.sha256 THEN w.uploaded_at ELSE now() END,
       expired_at = NULL
     WHERE w.sha256 = EXCLUDED.sha256 OR w.segment_name LIKE '%.partial'
     RETURNING ${WAL_COLS}, (xmax = 0) AS inserted`,
    [
      s.tenantId, s.service, s.timeline, s.segmentName, s.objectKey, s.versionId ?? null, s.sha256, s.sizeBytes,
      s.rawSize ?? null, s.coversUntil, s.startLsn ?? null, s.endLsn ?? null, s.encryptionKeyId ?? null, s.rawSha256 ?? null,
    ],
  );
  if (!rows[0]) {
    const { rows: prev } = await db.query(
      `SELECT ${WAL_COLS} FROM wal_segment WHERE tenant_id = $1 AND service_name = $2 AND timeline = $3 AND segment_name = $4`,
      [s.tenantId, s.service, s.timeline, s.segmentName],
    );
    const was = prev[0] ? camel<WalSegmentRow>(prev[0]) : undefined;
    // The same plaintext uploaded again: the first object stays the archived one.
    if (was && s.rawSha256 && was.rawSha256 === s.rawSha256) return { segment: was, inserted: false };
    throw new CatalogError(
      `WAL segment ${s.segmentName} (timeline ${s.timeline}) of ${s.service} is already archived at '${was?.objectKey}' with other content ` +
        `(plaintext SHA-256 ${was?.rawSha256 ?? "not recorded"}, this upload's ${s.rawSha256 ?? "not given"}). Refusing to replace archived WAL: check for a second agent streaming this service or a promoted replica on the same timeline.`,
    );
  }
  const { inserted, ...seg } = camel<WalSegmentRow & { inserted: boolean }>(rows[0]);
  return { segment: seg, inserted };
}

/** Marks archived WAL as deleted by prune, so plans never count on it. */
export async function expireWalSegments(db: Db, tenantId: string, service: string, segmentIds: string[]): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE wal_segment SET expired_at = now() WHERE tenant_id = $1 AND service_name = $2 AND segment_id = ANY($3::uuid[]) AND expired_at IS NULL`,
    [tenantId, service, segmentIds],
  );
  return rowCount ?? 0;
}

export async function listWalSegments(
  db: Db,
  service: string,
  opts: { tenantId?: string; timeline?: number; includeExpired?: boolean } = {},
): Promise<WalSegmentRow[]> {
  checkService(service);
  const { rows } = await db.query(
    `SELECT ${WAL_COLS} FROM wal_segment
     WHERE service_name = $1 AND ($2::uuid IS NULL OR tenant_id = $2) AND ($3::int IS NULL OR timeline = $3)
       AND ($4 OR expired_at IS NULL)
     ORDER BY timeline, segment_name`,
    [service, opts.tenantId ?? null, opts.timeline ?? null, opts.includeExpired ?? false],
  );
  return rows.map((r) => camel<WalSegmentRow>(r));
}

/** The newest point a service's archived WAL claims (covers_until), or undefined before its first segment. */
export async function newestWalCoverage(db: Db, service: string, tenantId: string): Promise<Date | undefined> {
  checkService(service);
  const { rows } = await db.query<{ at: Date | null }>(
    `SELECT max(covers_until) AS at FROM wal_segment WHERE tenant_id = $1 AND service_name = $2 AND segment_name NOT LIKE '%.history' AND covers_until > 'epoch'`,
    [tenantId, service],
  );
  return rows[0]?.at ?? undefined;
}

/** The newest timeline a service's archived WAL or completed backups are on (a promotion starts a new one), or undefined. */
export async function newestTimeline(db: Db, service: string, tenantId: string): Promise<number | undefined> {
  checkService(service);
  const { rows } = await db.query<{ tl: number | null }>(
    `SELECT greatest((SELECT max(timeline) FROM wal_segment WHERE tenant_id = $1 AND service_name = $2),
                     (SELECT max(timeline) FROM backup_management WHERE tenant_id = $1 AND service_name = $2 AND backup_status = 'completed')) AS tl`,
    [tenantId, service],
  );
  return rows[0]?.tl ?? undefined;
}

/** The newest completed, not failed, full backup of a service on a timeline. */
export async function newestBaseOnTimeline(db: Db, service: string, tenantId: string, timeline: number): Promise<string | undefined> {
  checkService(service);
  const { rows } = await db.query<{ backup_id: string }>(
    `SELECT backup_id FROM backup_management WHERE tenant_id = $1 AND service_name = $2 AND backup_type = 'full' AND backup_status = 'completed'
        AND verify_status IS DISTINCT FROM 'failed' AND timeline = $3 ORDER BY recovery_point_end DESC LIMIT 1`,
    [tenantId, service, timeline],
  );
  return rows[0]?.backup_id;
}

/** Segment number of an LSN ('X/Y'). */
export function lsnToSegmentNumber(lsn: string, segmentSize = DEFAULT_WAL_SEGMENT_SIZE): bigint {
  if (!LSN_RE.test(lsn)) throw new CatalogError(`'${lsn}' is not a PostgreSQL LSN (X/Y hex).`);
  const [hi, lo] = lsn.split("/") as [string, string];
  return ((BigInt("0x" + hi) << 32n) | BigInt("0x" + lo)) / BigInt(segmentSize);
}

/** WAL file name (as in pg_wal) of a timeline and segment number. */
export function walFileName(timeline: number, segno: bigint, segmentSize = DEFAULT_WAL_SEGMENT_SIZE): string {
  const perId = 0x100000000n / BigInt(segmentSize);
  const h = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, "0");
  return h(timeline) + h(segno / perId) + h(segno % perId);
}

/** Segment number of a WAL file name (the .partial suffix ignored). */
export function walSegmentNumber(name: string, segmentSize = DEFAULT_WAL_SEGMENT_SIZE): bigint {
  const perId = 0x100000000n / BigInt(segmentSize);
  return BigInt("0x" + name.slice(8, 16)) * perId + BigInt("0x" + name.slice(16, 24));
}
