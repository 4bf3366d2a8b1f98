/**
 * `kryonix-dr status`: the on-call view of the catalog. For every protected service: what a
 * restore would reach now, how old it is, whether it is verified, what is failing; and how the
 * last recoveries and drills went. Reads only (SELECT and STABLE functions), so the
 * kryonix_dr_reader role is enough.
 */
import { isUuid } from "../../contract/index.js";
import { catalogClientFromEnv } from "../catalog-env.js";
import { parseFlags, UsageError, type Command } from "../command.js";
import * as cat from "../../catalog/queries.js";
import { listResticRepositories, type ResticRepositoryRow } from "../../catalog/repositories.js";
import { fmtBytes, fmtSeconds } from "../../agent/storage/progress.js";

const USAGE = `Usage: kryonix-dr status [--tenant <uuid>] [--max-age <seconds>] [--recoveries <n>] [--json]

For every service in the backup catalog: the point a restore reaches now (base backup plus
archived WAL for PostgreSQL) and its age, the newest completed and newest verified backup,
verify failures, the last failed run, runs in progress, stored bytes and the measured
stored/raw ratio, the catalog's effective health, and its warm standby in the DR region (how far
behind, against the RPO); then the newest recovery and drill records.

  --tenant <uuid>      only this tenant (default: every tenant, grouped by tenant)
  --max-age <seconds>  mark a service STALE when its newest restorable point is older than this
  --recoveries <n>     recovery records to show per tenant (default 5)
  --json               print one JSON object instead of the tables

Exit code: 0 when every service is healthy (effective status healthy or degraded, a restore plan
exists, and it is within --max-age); 1 when any needs attention (the output ends with what to do);
2 for a usage error. Connection from the standard libpq environment: PGHOST, PGPORT, PGDATABASE,
PGUSER, PGPASSWORD (and PGSSLMODE); a member of kryonix_dr_reader is enough.`;

const OK_STATUSES: readonly string[] = ["healthy", "degraded"];
/** A run silent this long is presumed dead: the agent's own reconcile default (reconcileStaleRuns). */
const SILENT_RUN_SECONDS = 900;

export interface ServiceStatus {
  tenantId: string;
  service: string;
  engine: string | null;
  /** backup_health.effective_status; null when the service has no health row yet (no run finished). */
  effectiveStatus: cat.EffectiveHealth | null;
  /** What a restore of 'latest' reaches now; null when no plan exists (see restoreProblem). */
  restorable: {
    recoveryPoint: string;
    ageSeconds: number;
    baseBackupId: string;
    baseType: cat.BackupType;
    chainLength: number;
    walSegments: number;
  } | null;
  restoreProblem: string | null;
  newestCompleted: { backupId: string; type: cat.BackupType; completedAt: string; ageSeconds: number; recoveryPoint: string } | null;
  newestVerified: { backupId: string; type: cat.BackupType; recoveryPoint: string; ageSeconds: number; verifiedAt: string } | null;
  verifyFailures: number;
  /** The newest finished run, when it failed. */
  lastFailure: { backupId: string; failedAt: string; ageSeconds: number; error: string | null } | null;
  runningRuns: number;
  /** Seconds since the quietest of those runs last reported (heartbeat, else start); null when none runs. */
  runningSilentSeconds: number | null;
  completedBackups: number;
  storedBytes: number;
  avgCompressionRatio: number | null;
  /** Volume services: each restic repository generation, oldest first; failed ones say why. */
  repositories: Array<{ generation: number; status: "active" | "failed"; createdAt: string; failedAt: string | null; failure: string | null }>;
  /** Warm standbys of the service (the dr stack), as their followers last reported, judged against the RPO. */
  standbys: Array<{ region: string; standbyHost: string; state: string; streaming: boolean; lagSeconds: number | null; lagBytes: number | null; rpoTargetSeconds: number | null; reportedAgeSeconds: number; ok: boolean; message: string }>;
  /** Copies in other regions (recorded by the replicator): per region, how fresh the newest copied object is. */
  drCopies: Array<{ region: string; copies: number; newestCopiedSourceAt: string | null; newestCopiedAgeSeconds: number | null; lastCopiedAt: string | null }>;
  /** Each replicator's backlog of the service (what is not copied to its region yet), judged against the RPO. */
  replication: Array<{ region: string; sourceBucket: string; bucket: string; pendingObjects: number; oldestPendingAgeSeconds: number | null; lastError: string | null; reportedAgeSeconds: number; ok: boolean; message: string }>;
  /** The newest restorable point is older than --max-age. */
  stale: boolean;
  ok: boolean;
  /** What is wrong and what to do, one entry each; empty when ok. */
  attention: string[];
}

export interface RecoveryStatus {
  recoveryId: string;
  status: string;
  incidentType: string;
  services: string[];
  startedAt: string;
  completedAt: string | null;
  recoverySeconds: number | null;
  rtoTargetSeconds: number | null;
  rtoMet: boolean | null;
  dataLossSeconds: number | null;
  rpoTargetSeconds: number | null;
  rpoMet: boolean | null;
  error: string | null;
}

export interface StatusReport {
  /** The catalog's clock: every age is measured against it. */
  catalogTime: string;
  maxAgeSeconds: number | null;
  healthy: boolean;
  tenants: Array<{ tenantId: string; services: ServiceStatus[]; recoveries: RecoveryStatus[] }>;
}

const age = (now: Date, t: Date) => Math.max(0, (now.getTime() - t.getTime()) / 1000);

/** What needs doing about a service, from the facts; empty when it is fine. */
function attentionFor(s: Omit<ServiceStatus, "ok" | "attention">, health: cat.HealthRow | undefined, maxAge: number | null): string[] {
  const out: string[] = [];
  if (s.restoreProblem) {
    out.push(
      s.completedBackups === 0 || /^no completed/.test(s.restoreProblem)
        ? "no backup to restore from: run kdr-agent backup --type full in its sidecar"
        : `no restore plan: ${s.restoreProblem}`,
    );
  }
  if (s.lastFailure && s.effectiveStatus !== null && !OK_STATUSES.includes(s.effectiveStatus)) {
    out.push(`newest run failed (${health?.failureCount ?? 1} in a row): ${oneLine(s.lastFailure.error ?? "no reason recorded", 160)}; fix it, then run kdr-agent backup --type full`);
  }
  switch (s.effectiveStatus) {
    case null:
      if (!s.restoreProblem) out.push("no backup run has finished yet (no health row): run kdr-agent backup --type full");
      break;
    case "critical":
    case "warning":
      if (s.verifyFailures > 0 || (health?.verifyFailureCount ?? 0) > 0) {
        out.push(`${s.effectiveStatus}: verify failed on ${s.verifyFailures} backup(s): take a new full backup (kdr-agent backup --type full) and run kdr-agent verify`);
      } else if (!s.lastFailure) {
        out.push(`${s.effectiveStatus}: ${health?.failureCount ?? "?"} failed run(s) recorded: check the sidecar's log, then run kdr-agent backup --type full`);
      }
      break;
    case "stale":
      if (!s.restoreProblem) {
        out.push(`stale: no successful backup within twice the schedule (${fmtSeconds(health?.backupFrequencySeconds ?? 0)}): check the sidecar's schedule and run kdr-agent backup --type full`);
      }
      break;
    case "unverified":
      out.push(`unverified: ${s.newestVerified ? `the newest verified recovery point is ${fmtSeconds(s.newestVerified.ageSeconds)} old` : "no backup has passed a verify"}: run kdr-agent verify`);
      break;
  }
  if (s.runningSilentSeconds !== null && s.runningSilentSeconds > SILENT_RUN_SECONDS) {
    out.push(
      `a run has not reported for ${fmtSeconds(s.runningSilentSeconds)} (its agent is presumably dead): check the sidecar's log; ` +
        `its next kdr-agent backup records the leftover run as failed`,
    );
  }
  const active = s.repositories.find((r) => r.status === "active");
  const lastFailed = s.repositories.filter((r) => r.status === "failed").at(-1);
  if (lastFailed && (!active || active.generation < lastFailed.generation)) {
    out.push(`restic repository generation ${lastFailed.generation} failed and no newer one is in use: run kdr-agent backup --type full in its sidecar (it starts the next generation)`);
  }
  if (s.stale && s.restorable) {
    out.push(
      `STALE: a restore now reaches ${s.restorable.recoveryPoint}, ${fmtSeconds(s.restorable.ageSeconds)} ago (over --max-age ${fmtSeconds(maxAge!)}): ` +
        `run kdr-agent backup${s.engine === "postgres" ? " and check WAL archiving (the sidecar's pg_receivewal)" : ""}`,
    );
  }
  return out;
}

async function serviceStatus(
  db: cat.Db,
  sum: cat.ServiceBackupSummary,
  health: cat.HealthRow | undefined,
  repos: ResticRepositoryRow[],
  now: Date,
  maxAge: number | null,
): Promise<ServiceStatus> {
  let restorable: ServiceStatus["restorable"] = null;
  let restoreProblem: string | null = null;
  try {
    const plan = await cat.recoveryPlan(db, sum.serviceName, "latest", { tenantId: sum.tenantId });
    restorable = {
      recoveryPoint: plan.recoveryPoint.toISOString(),
      ageSeconds: age(now, plan.recoveryPoint),
      baseBackupId: plan.base.backupId,
      baseType: plan.base.backupType,
      chainLength: plan.chain.length,
      walSegments: plan.wal.length,
    };
  } catch (e) {
    if (!(e instanceof cat.CatalogError)) throw e;
    restoreProblem = e.message;
  }
  const nc = sum.newestCompleted;
  const nv = sum.newestVerified;
  const lf = sum.lastFinished?.backupStatus === "failed" ? sum.lastFinished : null;
  const facts: Omit<ServiceStatus, "ok" | "attention"> = {
    tenantId: sum.tenantId,
    service: sum.serviceName,
    engine: sum.engine,
    effectiveStatus: health?.effectiveStatus ?? null,
    restorable,
    drCopies: [],
    standbys: [],
    replication: [],
    restoreProblem,
    newestCompleted: nc
      ? { backupId: nc.backupId, type: nc.backupType, completedAt: nc.completedAt.toISOString(), ageSeconds: age(now, nc.completedAt), recoveryPoint: nc.recoveryPointEnd.toISOString() }
      : null,
    newestVerified: nv
      ? { backupId: nv.backupId, type: nv.backupType, recoveryPoint: nv.recoveryPointEnd.toISOString(), ageSeconds: age(now, nv.recoveryPointEnd), verifiedAt: nv.verifiedAt.toISOString() }
      : null,
    verifyFailures: sum.verifyFailures,
    lastFailure: lf ? { backupId: lf.backupId, failedAt: lf.finishedAt.toISOString(), ageSeconds: age(now, lf.finishedAt), error: lf.errorMessage } : null,
    runningRuns: sum.runningRuns,
    runningSilentSeconds: sum.oldestRunSignOfLife ? age(now, sum.oldestRunSignOfLife) : null,
    completedBackups: sum.completedBackups,
    storedBytes: sum.storedBytes,
    avgCompressionRatio: sum.avgCompressionRatio,
    repositories: repos.map((r) => ({ generation: r.generation, status: r.status, createdAt: r.createdAt.toISOString(), failedAt: r.failedAt?.toISOString() ?? null, failure: r.failure })),
    stale: maxAge !== null && restorable !== null && restorable.ageSeconds > maxAge,
  };
  const attention = attentionFor(facts, health, maxAge);
  return { ...facts, ok: attention.length === 0, attention };
}

function recoveryStatus(r: cat.RecoveryLogRow): RecoveryStatus {
  return {
    recoveryId: r.recoveryId,
    status: r.recoveryStatus,
    incidentType: r.incidentType,
    services: r.affectedServices ?? [],
    startedAt: r.initiatedAt.toISOString(),
    completedAt: r.completedAt?.toISOString() ?? null,
    recoverySeconds: r.actualRecoverySeconds,
    rtoTargetSeconds: r.rtoTargetSeconds,
    rtoMet: r.rtoMet,
    dataLossSeconds: r.dataLossSeconds,
    rpoTargetSeconds: r.rpoTargetSeconds,
    rpoMet: r.rpoMet,
    error: r.errorMessage,
  };
}

/** Reads the whole report; exported for tests and other commands. */
export async function statusReport(db: cat.Db, opts: { tenantId?: string; maxAgeSeconds?: number; recoveries?: number } = {}): Promise<StatusReport> {
  const now = (await db.query<{ now: Date }>("SELECT now() AS now")).rows[0]!.now;
  const maxAge = opts.maxAgeSeconds ?? null;
  // One after another: a pg.Client runs one query at a time (and warns when handed two).
  const summaries = await cat.serviceBackupSummaries(db, { tenantId: opts.tenantId });
  const health = await cat.serviceHealth(db, { tenantId: opts.tenantId });
  const repos = await listResticRepositories(db, { tenantId: opts.tenantId });
  const lags = await cat.replicationLag(db);
  const standbys = await cat.listStandbys(db, { tenantId: opts.tenantId });
  const backlogs = await cat.listReplication(db);
  const healthOf = new Map(health.map((h) => [`${h.tenantId}/${h.serviceName}`, h]));
  const tenantIds = [...new Set(summaries.map((s) => s.tenantId))];
  if (opts.tenantId && !tenantIds.includes(opts.tenantId)) tenantIds.push(opts.tenantId);
  const tenants: StatusReport["tenants"] = [];
  for (const tenantId of tenantIds) {
    const services: ServiceStatus[] = [];
    for (const s of summaries.filter((x) => x.tenantId === tenantId)) {
      const own = repos.filter((r) => r.tenantId === tenantId && r.serviceName === s.serviceName);
      const st = await serviceStatus(db, s, healthOf.get(`${tenantId}/${s.serviceName}`), own, now, maxAge);
      st.drCopies = lags
        .filter((l) => l.service === s.serviceName)
        .map((l) => ({
          region: l.region,
          copies: l.copies,
          newestCopiedSourceAt: l.newestCopiedSourceAt?.toISOString() ?? null,
          newestCopiedAgeSeconds: l.newestCopiedSourceAt ? age(now, l.newestCopiedSourceAt) : null,
          lastCopiedAt: l.lastCopiedAt?.toISOString() ?? null,
        }));
      for (const sb of standbys.filter((x) => x.tenantId === tenantId && x.service === s.serviceName)) {
        const j = cat.judgeStandby(sb, now);
        st.standbys.push({ region: sb.region, standbyHost: sb.standbyHost, state: sb.state, streaming: sb.streaming, lagSeconds: sb.lagSeconds, lagBytes: sb.lagBytes, rpoTargetSeconds: sb.rpoTargetSeconds, reportedAgeSeconds: age(now, sb.reportedAt), ok: j.ok, message: j.message });
        if (!j.ok) st.attention.push(`standby: ${j.message}`);
      }
      const rpo = healthOf.get(`${tenantId}/${s.serviceName}`)?.rpoTargetSeconds ?? null;
      for (const r of backlogs.filter((x) => x.service === s.serviceName)) {
        const j = cat.judgeReplication(r, rpo, now);
        st.replication.push({
          region: r.region, sourceBucket: r.sourceBucket, bucket: r.bucket, pendingObjects: r.pendingObjects,
          oldestPendingAgeSeconds: r.oldestPendingAt ? age(now, r.oldestPendingAt) : null, lastError: r.lastError, reportedAgeSeconds: age(now, r.reportedAt), ok: j.ok, message: j.message,
        });
        if (!j.ok) st.attention.push(`replication: ${j.message}`);
      }
      st.ok = st.attention.length === 0;
      services.push(st);
    }
    const recoveries = (await cat.listRecoveries(db, { tenantId, limit: opts.recoveries ?? 5 })).map(recoveryStatus);
    tenants.push({ tenantId, services, recoveries });
  }
  // An empty catalog protects nothing: that is not healthy.
  const healthy = tenants.length > 0 && tenants.every((t) => t.services.length > 0 && t.services.every((s) => s.ok));
  return { catalogTime: now.toISOString(), maxAgeSeconds: maxAge, healthy, tenants };
}

// ---------------------------------------------------------------------------------------------
// Text

function oneLine(s: string, max: number): string {
  const flat = s.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(header), ...rows.map(line)];
}

const ago = (s: number | undefined | null) => (s === undefined || s === null ? "-" : fmtSeconds(s));
const met = (v: boolean | null) => (v === null ? "?" : v ? "met" : "MISSED");
const vsTarget = (v: number | null, target: number | null) => `${v === null ? "-" : fmtSeconds(v)} / ${target === null ? "no target" : fmtSeconds(target)}`;

function serviceStatusWord(s: ServiceStatus): string {
  if (s.restoreProblem) return "NO-RESTORE";
  if (s.stale) return "STALE";
  return s.effectiveStatus ?? "unknown";
}

export function formatStatus(r: StatusReport): string {
  const out: string[] = [`catalog time ${r.catalogTime}${r.maxAgeSeconds !== null ? `; --max-age ${fmtSeconds(r.maxAgeSeconds)}` : ""}`];
  if (r.tenants.length === 0) out.push("", "the catalog has no services yet: no backup has been recorded.");
  for (const t of r.tenants) {
    out.push("", `tenant ${t.tenantId}: ${t.services.length} service(s), ${t.services.filter((s) => !s.ok).length} need attention`);
    if (t.services.length > 0) {
      out.push(
        ...table(
          ["SERVICE", "ENGINE", "STATUS", "RESTORE AGE", "NEWEST BACKUP", "VERIFIED AGE", "VERIFY FAILS", "RUNNING", "STORED", "STORED/RAW"],
          t.services.map((s) => [
            s.service,
            s.engine ?? "-",
            serviceStatusWord(s),
            ago(s.restorable?.ageSeconds),
            s.newestCompleted ? `${s.newestCompleted.type}, ${fmtSeconds(s.newestCompleted.ageSeconds)} ago` : "none",
            ago(s.newestVerified?.ageSeconds),
            String(s.verifyFailures),
            String(s.runningRuns),
            fmtBytes(s.storedBytes),
            s.avgCompressionRatio === null ? "-" : s.avgCompressionRatio.toFixed(3),
          ]),
        ),
      );
      out.push("");
      for (const s of t.services) {
        if (s.restorable) {
          const p = s.restorable;
          out.push(
            `  ${s.service}: restores to ${p.recoveryPoint} from ${p.baseType} ${p.baseBackupId}` +
              `${p.chainLength > 1 ? ` (chain of ${p.chainLength})` : ""}${p.walSegments ? ` + ${p.walSegments} WAL segment(s)` : ""}` +
              `${s.newestVerified ? `; newest verified point ${s.newestVerified.recoveryPoint}` : "; nothing verified"}`,
          );
        } else {
          out.push(`  ${s.service}: cannot restore: ${oneLine(s.restoreProblem ?? "", 240)}`);
        }
        for (const g of s.repositories.filter((x) => x.status === "failed")) {
          out.push(`  ${s.service}: restic repository generation ${g.generation} FAILED at ${g.failedAt}: ${oneLine(g.failure ?? "", 200)}`);
        }
        const inUse = s.repositories.find((x) => x.status === "active");
        if (inUse && s.repositories.length > 1) out.push(`  ${s.service}: restic repository generation ${inUse.generation} in use since ${inUse.createdAt}`);
        for (const c of s.drCopies) {
          out.push(`  ${s.service}: ${c.copies} object(s) copied to region ${c.region}; the newest copied was stored ${ago(c.newestCopiedAgeSeconds)} ago, copied at ${c.lastCopiedAt ?? "-"}`);
        }
        for (const r of s.replication.filter((x) => !x.ok || x.pendingObjects > 0)) out.push(`  ${s.service}: ${r.ok ? "" : "BEHIND: "}${r.message}`);
        for (const b of s.standbys) out.push(`  ${s.service}: ${b.ok ? "" : "BEHIND: "}${b.message}; reported ${ago(b.reportedAgeSeconds)} ago`);
        if (s.lastFailure) out.push(`  ${s.service}: newest run FAILED at ${s.lastFailure.failedAt} (${fmtSeconds(s.lastFailure.ageSeconds)} ago): ${oneLine(s.lastFailure.error ?? "no reason recorded", 240)}`);
      }
    }
    if (t.recoveries.length === 0) {
      out.push("", "  no recovery or drill recorded for this tenant: prove the backups with kryonix-dr drill");
    } else {
      out.push("", "recent recoveries and drills (newest first):");
      out.push(
        ...table(
          ["STARTED", "TYPE", "STATUS", "SERVICES", "RECOVERY / RTO", "RTO", "DATA LOSS / RPO", "RPO", "ID"],
          t.recoveries.map((x) => [
            x.startedAt, x.incidentType, x.status, x.services.join(",") || "-",
            vsTarget(x.recoverySeconds, x.rtoTargetSeconds), met(x.rtoMet),
            vsTarget(x.dataLossSeconds, x.rpoTargetSeconds), met(x.rpoMet), x.recoveryId,
          ]),
        ).map((l) => `  ${l}`),
      );
      for (const x of t.recoveries) if (x.error) out.push(`  ${x.incidentType} ${x.startedAt} failed: ${oneLine(x.error, 240)}`);
    }
  }
  const bad = r.tenants.flatMap((t) => t.services.filter((s) => !s.ok).map((s) => ({ t, s })));
  if (bad.length > 0) {
    out.push("", "needs attention:");
    const many = r.tenants.length > 1;
    for (const { t, s } of bad) for (const a of s.attention) out.push(`  - ${s.service}${many ? ` (tenant ${t.tenantId})` : ""}: ${a}`);
  } else if (!r.healthy) {
    out.push("", "needs attention:", `  - no service is recorded in the catalog${r.tenants.length === 1 ? ` for tenant ${r.tenants[0]!.tenantId}` : ""}: check the tenant id, or deploy the backup sidecars and let them run a full backup`);
  } else {
    out.push("", "all services healthy");
  }
  return out.join("\n");
}

export const command: Command = {
  name: "status",
  summary: "On-call report from the catalog: what each service restores to now, verification, failures, recent drills",
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, {
      tenant: { type: "string" },
      "max-age": { type: "string" },
      recoveries: { type: "string" },
      json: { type: "boolean" },
    });
    if (values.tenant !== undefined && !isUuid(values.tenant)) {
      throw new UsageError(`--tenant '${values.tenant}' is not a UUID: pass the tenant id as recorded in the catalog, e.g. 4f6c...-....`);
    }
    const wholeNumber = (flag: string, v: string | undefined, min: number): number | undefined => {
      if (v === undefined) return undefined;
      if (!/^\d+$/.test(v) || Number(v) < min) throw new UsageError(`--${flag} '${v}' must be a whole number >= ${min}${flag === "max-age" ? " of seconds, e.g. --max-age 3600 for one hour" : ""}.`);
      return Number(v);
    };
    const maxAgeSeconds = wholeNumber("max-age", values["max-age"], 1);
    const recoveries = wholeNumber("recoveries", values.recoveries, 0);
    const client = await catalogClientFromEnv("kryonix-dr status");
    let report: StatusReport;
    try {
      // A status read must never hold locks or write, whatever role runs it.
      await client.query("SET default_transaction_read_only = on");
      report = await statusReport(client, { tenantId: values.tenant, maxAgeSeconds, recoveries });
    } catch (e) {
      if ((e as { code?: string }).code === "42P01") {
        throw new Error(`the catalog schema is missing in database '${process.env.PGDATABASE}' (${(e as Error).message}): apply it with kryonix-dr migrate, or point PGDATABASE at the catalog.`);
      }
      throw e;
    } finally {
      await client.end();
    }
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatStatus(report)}\n`);
    return report.healthy ? 0 : 1;
  },
};
