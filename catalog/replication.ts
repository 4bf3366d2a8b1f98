/**
 * Replication backlog, as each replicator reports it after every pass (migration 012): what it has
 * not copied to its replica region yet, per service, judged against the service's RPO by
 * `kryonix-dr status` and the health job alike (judgeReplication). object_copy says what was
 * copied; this says what was not, and whether the replicator is still at it.
 */
import { endpointOrigin } from "./copies.js";
import { camel, checkService } from "./sql.js";
import { SILENT_REPORTS } from "./standby.js";
import type { Db } from "./types.js";

export interface ReplicationPass {
  sourceEndpoint: string;
  sourceBucket: string;
  /** The replica's S3 server, region name and bucket. */
  endpoint: string;
  region: string;
  bucket: string;
  reportIntervalSeconds: number;
  /**
   * Per service, what is not copied yet. Undefined when the pass could not list the source: the
   * counts already recorded stay, only the error and the time of the report change.
   */
  pending?: Map<string, { objects: number; oldestAt: Date }>;
  /** Why the pass stopped short; null when it copied everything it found. */
  error: string | null;
}

export interface ReplicationRow {
  sourceEndpoint: string;
  sourceBucket: string;
  endpoint: string;
  region: string;
  bucket: string;
  service: string;
  pendingObjects: number;
  oldestPendingAt: Date | null;
  lastError: string | null;
  reportIntervalSeconds: number;
  reportedAt: Date;
}

/**
 * A pass's report, in one statement: each service listed gets its pending count; every other
 * service this replicator reported before has none pending now (its versions were all copied).
 */
export async function reportReplication(db: Db, p: ReplicationPass): Promise<void> {
  const services = [...(p.pending?.keys() ?? [])];
  for (const s of services) checkService(s);
  const pending = services.map((s) => p.pending!.get(s)!);
  await db.query(
    `WITH given AS (
       SELECT * FROM unnest($6::text[], $7::int[], $8::timestamptz[]) AS g(service_name, n, oldest)
     ), upserted AS (
       INSERT INTO replication_status AS r (source_endpoint, source_bucket, endpoint, region, bucket, service_name, pending_objects, oldest_pending_at, last_error, report_interval, reported_at)
       SELECT $1, $2, $3, $4, $5, service_name, n, CASE WHEN n > 0 THEN oldest END, $9, $10 * interval '1 second', now() FROM given
       ON CONFLICT (source_endpoint, source_bucket, endpoint, bucket, service_name) DO UPDATE SET
         region = EXCLUDED.region, pending_objects = EXCLUDED.pending_objects, oldest_pending_at = EXCLUDED.oldest_pending_at,
         last_error = EXCLUDED.last_error, report_interval = EXCLUDED.report_interval, reported_at = now()
       RETURNING service_name
     )
     UPDATE replication_status r SET
       pending_objects = CASE WHEN $11 THEN 0 ELSE r.pending_objects END,
       oldest_pending_at = CASE WHEN $11 THEN NULL ELSE r.oldest_pending_at END,
       last_error = $9, report_interval = $10 * interval '1 second', reported_at = now()
     WHERE r.source_endpoint = $1 AND r.source_bucket = $2 AND r.endpoint = $3 AND r.bucket = $5
       AND r.service_name NOT IN (SELECT service_name FROM given)`,
    [
      endpointOrigin(p.sourceEndpoint), p.sourceBucket, endpointOrigin(p.endpoint), p.region, p.bucket,
      services, pending.map((x) => x.objects), pending.map((x) => x.oldestAt), p.error, p.reportIntervalSeconds, p.pending !== undefined,
    ],
  );
}

/** A pass still at work: its rows are fresh, their counts those of its listing. */
export async function touchReplication(db: Db, p: Pick<ReplicationPass, "sourceEndpoint" | "sourceBucket" | "endpoint" | "bucket">): Promise<void> {
  await db.query(
    "UPDATE replication_status SET reported_at = now() WHERE source_endpoint = $1 AND source_bucket = $2 AND endpoint = $3 AND bucket = $4",
    [endpointOrigin(p.sourceEndpoint), p.sourceBucket, endpointOrigin(p.endpoint), p.bucket],
  );
}

/**
 * A replicator stopped on purpose (scaled to 0, removed, replaced) withdraws its rows: nothing is
 * judged of a replication that no longer runs. One that vanished without stopping leaves them,
 * and goes silent.
 */
export async function withdrawReplication(db: Db, p: Pick<ReplicationPass, "sourceEndpoint" | "sourceBucket" | "endpoint" | "bucket">): Promise<void> {
  await db.query(
    "DELETE FROM replication_status WHERE source_endpoint = $1 AND source_bucket = $2 AND endpoint = $3 AND bucket = $4",
    [endpointOrigin(p.sourceEndpoint), p.sourceBucket, endpointOrigin(p.endpoint), p.bucket],
  );
}

/** Every replicator's newest report per service, optionally of one service or replica region. */
export async function listReplication(db: Db, opts: { service?: string; region?: string } = {}): Promise<ReplicationRow[]> {
  const { rows } = await db.query(
    `SELECT source_endpoint, source_bucket, endpoint, region, bucket, service_name AS service, pending_objects, oldest_pending_at, last_error,
            extract(epoch FROM report_interval)::float8 AS report_interval_seconds, reported_at
     FROM replication_status
     WHERE ($1::text IS NULL OR service_name = $1) AND ($2::text IS NULL OR region = $2)
     ORDER BY service_name, region, source_bucket`,
    [opts.service ?? null, opts.region ?? null],
  );
  return rows.map((r) => camel<ReplicationRow>(r));
}

/**
 * Whether a service's copies in a region are within its RPO, and what to say: the replicator must
 * be reporting, and nothing it has not copied may have been stored more than the RPO ago.
 */
export function judgeReplication(r: ReplicationRow, rpoSeconds: number | null, now: Date = new Date()): { ok: boolean; message: string } {
  const where = `the copy of '${r.service}' in region ${r.region} (${r.sourceBucket} -> ${r.bucket})`;
  const fix = `see the replicator's log ('docker service logs' of the replication service of bucket ${r.sourceBucket})`;
  const silent = (now.getTime() - r.reportedAt.getTime()) / 1000;
  const error = r.lastError ? `; its last pass stopped: ${r.lastError}` : "";
  if (silent > SILENT_REPORTS * r.reportIntervalSeconds + 30) {
    return { ok: false, message: `${where}: its replicator last reported ${Math.round(silent)} s ago${error}: ${fix}` };
  }
  if (r.pendingObjects === 0 || !r.oldestPendingAt) {
    return { ok: !r.lastError, message: r.lastError ? `${where}: nothing was pending at its last listing${error}: ${fix}` : `${where}: up to date (reported ${Math.round(silent)} s ago)` };
  }
  const lag = Math.max(0, (now.getTime() - r.oldestPendingAt.getTime()) / 1000);
  const behind = `${r.pendingObjects} object version(s) not copied yet, the oldest stored ${Math.round(lag)} s ago`;
  if (rpoSeconds !== null && lag > rpoSeconds) {
    return { ok: false, message: `${where}: ${behind}: over the RPO of ${rpoSeconds} s, so a restore there would lose more than that${error}: ${fix}` };
  }
  return { ok: true, message: `${where}: ${behind}${rpoSeconds !== null ? ` (RPO ${rpoSeconds} s)` : ""}${error}` };
}
