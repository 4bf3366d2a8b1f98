/**
 * Where each stored object's copies are (migration 009): the replicator records every version it
 * copies to another region with that region's version id; a restore from that region translates
 * the catalog's (primary) version ids through it; `replicationLag` says, per service, how far the
 * copies are behind.
 */
import { BACKUP_CLASSES } from "../contract/index.js";
import type { Db } from "./types.js";

export interface ObjectCopy {
  /** The S3 server the copy is on (URL origin): what identifies a region's copies. */
  endpoint: string;
  /** That region's name, as the stack config names it (for people). */
  region: string;
  bucket: string;
  key: string;
  /** The bucket the catalog's version id is in, when known (a WAL segment row names none). */
  sourceBucket?: string;
  sourceVersionId: string;
  /** The copy's version id in its region; null when that bucket is not versioned. */
  copyVersionId: string | null;
  sourceCreatedAt?: Date;
  sizeBytes?: number;
}

/** The protected service an object key belongs to (`<class>/<service>/...`), if it follows the layout. */
export function serviceOfKey(key: string): string | undefined {
  const [cls, service] = key.split("/");
  return service && (BACKUP_CLASSES as readonly string[]).includes(cls!) ? service : undefined;
}

/** Records one copy; recording the same copy again changes nothing but the copy's version id. */
export async function recordCopy(db: Db, c: ObjectCopy): Promise<void> {
  await db.query(
    `INSERT INTO object_copy (endpoint, region, bucket, object_key, source_bucket, source_version_id, copy_version_id, service_name, source_created_at, size_bytes)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
     ON CONFLICT (endpoint, bucket, object_key, source_version_id) DO UPDATE SET copy_version_id = EXCLUDED.copy_version_id`,
    [endpointOrigin(c.endpoint), c.region, c.bucket, c.key, c.sourceBucket ?? null, c.sourceVersionId, c.copyVersionId, serviceOfKey(c.key) ?? null, c.sourceCreatedAt ?? null, c.sizeBytes ?? null],
  );
}

/** An endpoint as copies are keyed: its URL origin (scheme, host, port). */
export function endpointOrigin(endpoint: string): string {
  return new URL(endpoint).origin;
}

/**
 * The version id of each listed source version's copy in `bucket` on `endpoint`, keyed
 * `<key>\n<source version>`. Versions with no recorded copy there are absent.
 */
export async function copyVersions(db: Db, endpoint: string, bucket: string, refs: ReadonlyArray<{ key: string; versionId: string }>): Promise<Map<string, string | null>> {
  const out = new Map<string, string | null>();
  if (refs.length === 0) return out;
  const r = await db.query<{ object_key: string; source_version_id: string; copy_version_id: string | null }>(
    `SELECT object_key, source_version_id, copy_version_id FROM object_copy
     WHERE endpoint = $1 AND bucket = $2 AND (object_key, source_version_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))`,
    [endpointOrigin(endpoint), bucket, refs.map((x) => x.key), refs.map((x) => x.versionId)],
  );
  for (const row of r.rows) out.set(`${row.object_key}\n${row.source_version_id}`, row.copy_version_id);
  return out;
}

export interface ReplicationLag {
  service: string;
  region: string;
  /** When the newest object of the service that has a copy in the region was stored at the source. */
  newestCopiedSourceAt: Date | null;
  /** When that copy was made. */
  lastCopiedAt: Date | null;
  copies: number;
}

/** Per service and region: the newest source object that has a copy, and when it was copied. */
export async function replicationLag(db: Db, opts: { region?: string; service?: string } = {}): Promise<ReplicationLag[]> {
  const r = await db.query<{ service_name: string; region: string; newest: Date | null; last: Date | null; n: string }>(
    `SELECT service_name, region, max(source_created_at) AS newest, max(copied_at) AS last, count(*) AS n
     FROM object_copy
     WHERE service_name IS NOT NULL AND ($1::text IS NULL OR region = $1) AND ($2::text IS NULL OR service_name = $2)
     GROUP BY service_name, region ORDER BY service_name, region`,
    [opts.region ?? null, opts.service ?? null],
  );
  return r.rows.map((x) => ({ service: x.service_name, region: x.region, newestCopiedSourceAt: x.newest, lastCopiedAt: x.last, copies: Number(x.n) }));
}

/**
 * Which of these versions in a region's bucket are themselves recorded copies (made by a
 * replicator into that bucket): a replicator never sends a copy back where it came from.
 */
export async function copiesAmong(db: Db, endpoint: string, bucket: string, versionIds: string[]): Promise<Set<string>> {
  if (versionIds.length === 0) return new Set();
  const { rows } = await db.query<{ v: string }>(
    "SELECT copy_version_id AS v FROM object_copy WHERE endpoint = $1 AND bucket = $2 AND copy_version_id = ANY($3::text[])",
    [endpointOrigin(endpoint), bucket, versionIds],
  );
  return new Set(rows.map((r) => r.v));
}

/**
 * The source version ids of every copy recorded into `bucket` on `endpoint` from `sourceBucket`
 * (or from a bucket not recorded): what a replicator starting without its state has copied.
 */
export async function copiedSources(db: Db, endpoint: string, bucket: string, sourceBucket: string): Promise<string[]> {
  const { rows } = await db.query<{ v: string }>(
    "SELECT source_version_id AS v FROM object_copy WHERE endpoint = $1 AND bucket = $2 AND (source_bucket = $3 OR source_bucket IS NULL)",
    [endpointOrigin(endpoint), bucket, sourceBucket],
  );
  return rows.map((r) => r.v);
}
