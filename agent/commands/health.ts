/** `kdr-agent health`: the age of the newest verified recovery point against the RPO. */
import type pg from "pg";
import * as cat from "../catalog.js";
import type { Settings } from "../config.js";
import { m } from "../metrics.js";
import { fmtSeconds } from "../storage/progress.js";

export interface HealthSummary {
  service: string;
  healthy: boolean;
  rpoTargetSeconds: number;
  /** Seconds since the newest verified recovery point (verified base + contiguous WAL), or null. */
  ageSeconds: number | null;
  /** That point itself (ISO), or null: what the cron container exports (an age it exports would freeze). */
  recoveryPoint: string | null;
  /** The copies of this service into this region, as each replicator last reported its backlog. */
  replication?: Array<{ ok: boolean; sourceBucket: string; pendingObjects: number; reportedAt: string; message: string }>;
  /** The warm standby of this service in this region (the dr stack), as its follower last reported it. */
  standby?: { ok: boolean; state: string; lagSeconds: number | null; lagBytes: number | null; reportedAt: string; message: string };
  message: string;
}

export async function runHealth(s: Settings, c: pg.Client): Promise<HealthSummary> {
  const service = s.service;
  const rpo = s.rpoSeconds;
  const newest = await cat.verifiedRecoveryPoint(c, service, { tenantId: s.tenantId });
  const age = newest?.ageSeconds ?? null;
  m.rpoTarget.set({ service }, rpo);
  if (newest) m.recoveryPoint.set({ service }, newest.point.getTime() / 1000);
  const backupsOk = age !== null && age <= rpo;
  // In the region of a warm standby (the dr stack's health job), the standby is judged too.
  const region = s.get("s3Region");
  const row = region
    ? (
        await cat.listStandbys(c, { tenantId: s.tenantId, service, region }).catch((e: Error & { code?: string }) => {
          throw e.code === "42P01" ? new Error(`the catalog has no standby_status table (migration 011): run 'kryonix-dr migrate', then the health check again`) : e;
        })
      )[0]
    : undefined;
  const judged = row ? cat.judgeStandby(row) : undefined;
  const standby = row && judged ? { ok: judged.ok, state: row.state, lagSeconds: row.lagSeconds, lagBytes: row.lagBytes, reportedAt: row.reportedAt.toISOString(), message: `${judged.ok ? "ok" : "BEHIND"}: ${judged.message}` } : undefined;
  // In a region copies go to (the dr stack's health job), each replicator's backlog is judged too.
  const copies = region
    ? (
        await cat.listReplication(c, { service, region }).catch((e: Error & { code?: string }) => {
          throw e.code === "42P01" ? new Error(`the catalog has no replication_status table (migration 012): run 'kryonix-dr migrate', then the health check again`) : e;
        })
      ).map((r) => {
        const j = cat.judgeReplication(r, rpo);
        return { ok: j.ok, sourceBucket: r.sourceBucket, pendingObjects: r.pendingObjects, reportedAt: r.reportedAt.toISOString(), message: `${j.ok ? "ok" : "BEHIND"}: ${j.message}` };
      })
    : [];
  const backups =
    age === null
      ? `STALE: '${service}' has no verified backup; run 'kdr-agent backup --type full' then 'kdr-agent verify'.`
      : backupsOk
        ? `ok: the newest verified recovery point of '${service}' is ${fmtSeconds(age)} old (RPO ${fmtSeconds(rpo)})`
        : `STALE: the newest verified recovery point of '${service}' is ${fmtSeconds(age)} old, over the RPO of ${fmtSeconds(rpo)}: check the schedule and the last runs ('kdr-agent list'), then verify.`;
  return {
    service,
    healthy: backupsOk && (standby?.ok ?? true) && copies.every((x) => x.ok),
    rpoTargetSeconds: rpo,
    ageSeconds: age === null ? null : Math.round(age),
    recoveryPoint: newest?.point.toISOString() ?? null,
    ...(standby ? { standby } : {}),
    ...(copies.length ? { replication: copies } : {}),
    message: [backups, ...(standby ? [standby.message] : []), ...copies.map((x) => x.message)].join("\n"),
  };
}
