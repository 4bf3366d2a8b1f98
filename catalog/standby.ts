/**
 * Warm standbys' replication, as their followers report it (migration 011): how far each standby
 * is behind its primary, judged against the service's RPO by `kryonix-dr status` and the health
 * job alike (judgeStandby).
 */
import { camel, checkService, checkUuid } from "./sql.js";
import type { Db } from "./types.js";

export interface StandbyReport {
  tenantId: string;
  service: string;
  region: string;
  engine: "postgres" | "redis";
  standbyHost: string;
  primaryHost: string;
  state: "following" | "promoted" | "unreachable";
  streaming: boolean;
  lagBytes: number | null;
  lagSeconds: number | null;
  lastReplayedAt: Date | null;
  rpoTargetSeconds: number | null;
  reportIntervalSeconds: number;
  detail: string | null;
  /** The reporting follower process (a random id): the one that ran at a promotion cannot undo it. */
  reporter?: string;
}

export interface StandbyRow extends StandbyReport {
  reportedAt: Date;
}

/** The follower's look, replacing its previous one. */
export async function reportStandby(db: Db, r: StandbyReport): Promise<void> {
  checkUuid("tenantId", r.tenantId);
  checkService(r.service);
  await db.query(
    `INSERT INTO standby_status (tenant_id, service_name, region, engine, standby_host, primary_host, state, streaming, lag_bytes, lag_seconds,
                                 last_replayed_at, rpo_target, report_interval, detail, reported_at, reporter)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 * interval '1 second', $13 * interval '1 second', $14, now(), $15)
     ON CONFLICT (tenant_id, service_name, region) DO UPDATE SET
       engine = EXCLUDED.engine, standby_host = EXCLUDED.standby_host, primary_host = EXCLUDED.primary_host, state = EXCLUDED.state,
       streaming = EXCLUDED.streaming, lag_bytes = EXCLUDED.lag_bytes, lag_seconds = EXCLUDED.lag_seconds,
       last_replayed_at = EXCLUDED.last_replayed_at, rpo_target = EXCLUDED.rpo_target, report_interval = EXCLUDED.report_interval,
       detail = EXCLUDED.detail, reported_at = now(), reporter = EXCLUDED.reporter, promoted_at = NULL, promoted_reporter = NULL
     WHERE standby_status.promoted_at IS NULL
        OR (EXCLUDED.state = 'following' AND EXCLUDED.reporter IS DISTINCT FROM standby_status.promoted_reporter)`,
    [r.tenantId, r.service, r.region, r.engine, r.standbyHost, r.primaryHost, r.state, r.streaming, r.lagBytes, r.lagSeconds, r.lastReplayedAt, r.rpoTargetSeconds, r.reportIntervalSeconds, r.detail, r.reporter ?? null],
  );
}

/**
 * The activation's word on a standby it promoted: it is a primary now. Its follower goes with the
 * promotion, so its row would otherwise read as a follower gone silent; a last look of that
 * follower (the server restarting under it) no longer replaces the row. No row: nothing to do.
 */
export async function markStandbyPromoted(db: Db, o: { tenantId: string; service: string; region: string; by?: "activate" | "switchover" }): Promise<void> {
  await db.query(
    `UPDATE standby_status SET state = 'promoted', streaming = false, lag_bytes = NULL, lag_seconds = NULL,
            detail = 'promoted by kdr-agent standby ' || $4 || ' at ' || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), reported_at = now(), promoted_at = now(), promoted_reporter = reporter
     WHERE tenant_id = $1 AND service_name = $2 AND region = $3`,
    [o.tenantId, o.service, o.region, o.by ?? "activate"],
  );
}

/** A follower stopped on purpose withdraws its standby's row; a promoted standby's stays (it says so). */
export async function withdrawStandby(db: Db, o: { tenantId: string; service: string; region: string }): Promise<void> {
  await db.query("DELETE FROM standby_status WHERE tenant_id = $1 AND service_name = $2 AND region = $3 AND promoted_at IS NULL", [o.tenantId, o.service, o.region]);
}

/** Every standby's newest report, optionally of one tenant, service or region. */
export async function listStandbys(db: Db, opts: { tenantId?: string; service?: string; region?: string } = {}): Promise<StandbyRow[]> {
  const { rows } = await db.query(
    `SELECT tenant_id, service_name AS service, region, engine, standby_host, primary_host, state, streaming,
            lag_bytes::float8 AS lag_bytes, lag_seconds, last_replayed_at,
            extract(epoch FROM rpo_target)::float8 AS rpo_target_seconds, extract(epoch FROM report_interval)::float8 AS report_interval_seconds,
            detail, reported_at
     FROM standby_status
     WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR service_name = $2) AND ($3::text IS NULL OR region = $3)
     ORDER BY tenant_id, service_name, region`,
    [opts.tenantId ?? null, opts.service ?? null, opts.region ?? null],
  );
  return rows.map((r) => camel<StandbyRow>(r));
}

/** A follower that has not reported for this many of its intervals (plus a margin) has stopped looking. */
export const SILENT_REPORTS = 3;

/**
 * Whether a standby is fit to take over within its service's RPO, and what to say. Judged the
 * same way by `status` and the health job: the follower must be reporting, the standby answering,
 * its lag known (the primary answering) and no larger than the RPO. A promoted standby is a
 * primary: its backups are judged as any service's.
 */
export function judgeStandby(r: StandbyRow, now: Date = new Date()): { ok: boolean; message: string } {
  const where = `the ${r.engine === "postgres" ? "PostgreSQL" : "Redis"} standby ${r.standbyHost} of '${r.service}' (${r.region})`;
  // A promoted standby has no follower any more: its silence is expected.
  if (r.state === "promoted") return { ok: true, message: `${where} is promoted: a primary now${r.detail ? ` (${r.detail})` : ""}` };
  const silent = (now.getTime() - r.reportedAt.getTime()) / 1000;
  if (silent > SILENT_REPORTS * r.reportIntervalSeconds + 30) {
    return { ok: false, message: `${where}: its follower last reported ${Math.round(silent)} s ago: see 'docker service logs ${r.standbyHost}-follower'` };
  }
  if (r.state === "unreachable") return { ok: false, message: `${where} does not answer${r.detail ? ` (${r.detail})` : ""}: see 'docker service ps ${r.standbyHost}'` };
  const how = r.streaming ? `streams from ${r.primaryHost}` : r.engine === "postgres" ? "does not stream (it replays the WAL copied to this region)" : `its link to ${r.primaryHost} is down`;
  if (r.lagSeconds === null || r.lagBytes === null) {
    return { ok: false, message: `${where} ${how}; how far behind it is cannot be measured: the primary ${r.primaryHost} does not answer${r.lastReplayedAt ? ` (last write applied ${r.lastReplayedAt.toISOString()})` : ""}` };
  }
  const lag = `${r.lagSeconds.toFixed(0)} s / ${r.lagBytes} bytes behind`;
  if (r.rpoTargetSeconds !== null && r.lagSeconds > r.rpoTargetSeconds) {
    return { ok: false, message: `${where} ${how}, ${lag}: over the RPO of ${r.rpoTargetSeconds} s; promoting it now would lose that much: see its follower's log ('docker service logs ${r.standbyHost}-follower')` };
  }
  return { ok: true, message: `${where} ${how}, ${lag}${r.rpoTargetSeconds !== null ? ` (RPO ${r.rpoTargetSeconds} s)` : ""}` };
}
