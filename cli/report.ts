/**
 * The weekly report (`kryonix-dr report`): what `status` knows, plus the period's history, as one
 * self-contained HTML page (inline CSS and SVG, no script, nothing fetched) and a plain-text
 * summary for email. Every figure is read from the catalog; nothing is estimated.
 */
import type { Db } from "../catalog/queries.js";
import { fmtBytes, fmtSeconds } from "../agent/storage/progress.js";
import { statusReport, type RecoveryStatus, type ServiceStatus, type StatusReport } from "./commands/status.js";

export interface ReportData {
  generatedAt: string;
  days: number;
  cards: { backups: number; completed: number; failed: number; successPercent: number | null; storedBytes: number; lastBackupAt: string | null };
  status: StatusReport;
  /** Each service's RPO target (seconds), from its health row (what its sidecar reported). */
  rpoTargets: Record<string, number>;
  /** Completed backups of the period (WAL segments left out), oldest first. */
  history: Array<{ service: string; type: string; completedAt: string; storedBytes: number; durationSeconds: number }>;
}

export async function reportData(db: Db, opts: { days: number; tenantId?: string }): Promise<ReportData> {
  const tenant = opts.tenantId ?? null;
  const since = "now() - $1 * interval '1 day'";
  const cards = (
    await db.query(
      `SELECT count(*)::int AS backups,
              count(*) FILTER (WHERE backup_status = 'completed')::int AS completed,
              count(*) FILTER (WHERE backup_status = 'failed')::int AS failed,
              (SELECT coalesce(sum(backup_size), 0)::bigint FROM backup_management WHERE backup_status = 'completed' AND ($2::uuid IS NULL OR tenant_id = $2)) AS stored,
              (SELECT max(completed_at) FROM backup_management WHERE backup_status = 'completed' AND ($2::uuid IS NULL OR tenant_id = $2)) AS last
         FROM backup_management WHERE created_at > ${since} AND backup_type <> 'wal' AND ($2::uuid IS NULL OR tenant_id = $2)`,
      [opts.days, tenant],
    )
  ).rows[0] as { backups: number; completed: number; failed: number; stored: string; last: Date | null };
  const finished = cards.completed + cards.failed;
  const targets = (await db.query("SELECT service_name, extract(epoch FROM rpo_target)::float8 AS rpo FROM backup_health WHERE rpo_target IS NOT NULL AND ($1::uuid IS NULL OR tenant_id = $1)", [tenant])).rows as Array<{ service_name: string; rpo: number }>;
  const history = (
    await db.query(
      `SELECT service_name, backup_type, completed_at, coalesce(backup_size, 0)::bigint AS stored, extract(epoch FROM duration)::float8 AS seconds
         FROM backup_management WHERE backup_status = 'completed' AND backup_type <> 'wal' AND completed_at > ${since} AND ($2::uuid IS NULL OR tenant_id = $2)
        ORDER BY completed_at`,
      [opts.days, tenant],
    )
  ).rows as Array<{ service_name: string; backup_type: string; completed_at: Date; stored: string; seconds: number | null }>;
  return {
    generatedAt: new Date().toISOString(),
    days: opts.days,
    cards: {
      backups: cards.backups,
      completed: cards.completed,
      failed: cards.failed,
      successPercent: finished > 0 ? Math.round((1000 * cards.completed) / finished) / 10 : null,
      storedBytes: Number(cards.stored),
      lastBackupAt: cards.last ? cards.last.toISOString() : null,
    },
    status: await statusReport(db, { tenantId: opts.tenantId, recoveries: 10 }),
    rpoTargets: Object.fromEntries(targets.map((t) => [t.service_name, t.rpo])),
    history: history.map((h) => ({ service: h.service_name, type: h.backup_type, completedAt: h.completed_at.toISOString(), storedBytes: Number(h.stored), durationSeconds: h.seconds ?? 0 })),
  };
}

const esc = (s: unknown) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
const when = (iso: string | null) => (iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "never");
const services = (d: ReportData) => d.status.tenants.flatMap((t) => t.services);
const recoveries = (d: ReportData) => d.status.tenants.flatMap((t) => t.recoveries);

/** A service's verdict: its newest restorable point against its RPO target. */
function rpoVerdict(s: ServiceStatus, target: number | undefined): { text: string; ok: boolean | null } {
  if (!s.restorable) return { text: s.restoreProblem ?? "nothing restorable", ok: false };
  if (target === undefined) return { text: `${fmtSeconds(s.restorable.ageSeconds)} (no target reported)`, ok: null };
  return { text: `${fmtSeconds(s.restorable.ageSeconds)} of ${fmtSeconds(target)}`, ok: s.restorable.ageSeconds <= target };
}

/** A small SVG chart: one row of points per service over the period, value on a shared scale. */
function chart(d: ReportData, title: string, value: (h: ReportData["history"][number]) => number, fmt: (v: number) => string): string {
  const rows = [...new Set(d.history.map((h) => h.service))].sort();
  if (rows.length === 0) return `<p class="muted">${esc(title)}: no completed backup in the period.</p>`;
  const W = 600;
  const rowH = 26;
  const left = 110;
  const t1 = Date.parse(d.generatedAt);
  const t0 = t1 - d.days * 86_400_000;
  const max = Math.max(...d.history.map(value), 1);
  const x = (iso: string) => left + ((Date.parse(iso) - t0) / (t1 - t0)) * (W - left - 10);
  const body = rows
    .map((svc, i) => {
      const y = 14 + i * rowH;
      const dots = d.history
        .filter((h) => h.service === svc)
        .map((h) => `<circle cx="${x(h.completedAt).toFixed(1)}" cy="${y}" r="${(2 + 7 * Math.sqrt(value(h) / max)).toFixed(1)}"><title>${esc(`${svc} ${h.type} ${when(h.completedAt)}: ${fmt(value(h))}`)}</title></circle>`)
        .join("");
      return `<text x="0" y="${y + 4}">${esc(svc)}</text><line x1="${left}" x2="${W - 10}" y1="${y}" y2="${y}"/>${dots}`;
    })
    .join("");
  const h = 14 + rows.length * rowH;
  return `<figure><figcaption>${esc(title)} (largest ${esc(fmt(max))}; each dot a backup, its area the value)</figcaption><svg viewBox="0 0 ${W} ${h}" role="img" aria-label="${esc(title)}">${body}</svg></figure>`;
}

export function reportHtml(d: ReportData): string {
  const c = d.cards;
  const card = (label: string, value: string, note: string) => `<div class="card"><div class="label">${esc(label)}</div><div class="value">${esc(value)}</div><div class="note">${esc(note)}</div></div>`;
  const svcRows = services(d)
    .map((s) => {
      const v = rpoVerdict(s, d.rpoTargets[s.service]);
      const cls = s.ok && v.ok !== false ? "ok" : "bad";
      return `<tr class="${cls}"><td>${esc(s.service)}</td><td>${esc(s.effectiveStatus ?? "no runs yet")}</td><td>${esc(v.text)}</td><td>${esc(s.newestVerified ? `${when(s.newestVerified.recoveryPoint)} (${fmtSeconds(s.newestVerified.ageSeconds)} ago)` : "none")}</td><td>${esc(fmtBytes(s.storedBytes))}</td><td>${esc(s.attention.join("; ") || "-")}</td></tr>`;
    })
    .join("");
  const recRows = recoveries(d)
    .map((r: RecoveryStatus) => {
      const rto = r.recoverySeconds === null ? "-" : `${fmtSeconds(r.recoverySeconds)}${r.rtoTargetSeconds !== null ? ` of ${fmtSeconds(r.rtoTargetSeconds)}` : ""}`;
      const loss = r.dataLossSeconds === null ? "-" : `${r.dataLossSeconds} s${r.rpoTargetSeconds !== null ? ` of ${r.rpoTargetSeconds} s` : ""}`;
      const cls = r.status === "completed" && r.rtoMet !== false && r.rpoMet !== false ? "ok" : "bad";
      return `<tr class="${cls}"><td>${esc(when(r.startedAt))}</td><td>${esc(r.incidentType)}</td><td>${esc(r.services.join(", "))}</td><td>${esc(r.status)}</td><td>${esc(rto)}</td><td>${esc(loss)}</td></tr>`;
    })
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>kryonix-dr report, ${esc(when(d.generatedAt))}</title>
<style>
*{box-sizing:border-box}body{font:14px/1.45 system-ui,sans-serif;margin:0;padding:16px;color:#1d2430;background:#f5f6f8;max-width:1200px;margin-inline:auto}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}.muted{color:#5b6472}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px}
.card{background:#fff;border-radius:8px;padding:12px;box-shadow:0 1px 2px #0002;min-width:0}.label{color:#5b6472;font-size:12px}.value{font-size:24px;font-weight:600;overflow-wrap:anywhere}.note{color:#5b6472;font-size:12px}
.scroll{overflow-x:auto;background:#fff;border-radius:8px;box-shadow:0 1px 2px #0002}
table{border-collapse:collapse;width:100%;min-width:720px}th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e3e6ea;vertical-align:top}
td{overflow-wrap:anywhere}tr.bad td:first-child{border-left:4px solid #c62828}tr.ok td:first-child{border-left:4px solid #2e7d32}
figure{margin:12px 0;background:#fff;border-radius:8px;padding:12px;box-shadow:0 1px 2px #0002}figcaption{color:#5b6472;margin-bottom:6px}
svg{width:100%;height:auto;display:block}svg text{font-size:12px;fill:#1d2430}svg line{stroke:#d5d9df}svg circle{fill:#1565c0;fill-opacity:.55}
@media (max-width:600px){th,td{padding:4px 6px;font-size:12px}.value{font-size:20px}}
</style></head><body>
<h1>kryonix-dr: backups and recovery</h1>
<p class="muted">The last ${d.days} days, from the catalog, generated ${esc(when(d.generatedAt))}. ${d.status.healthy ? "Every service is healthy." : "Some services need attention (below)."}</p>
<section class="cards">
${card("Backups", String(c.backups), `${c.completed} completed, ${c.failed} failed`)}
${card("Success rate", c.successPercent === null ? "-" : `${c.successPercent} %`, "completed among finished runs")}
${card("Storage used", fmtBytes(c.storedBytes), "backups kept, as stored")}
${card("Last backup", when(c.lastBackupAt), "newest completed, any service")}
</section>
<h2>Services: what a restore reaches now, against the RPO target</h2>
<div class="scroll"><table><thead><tr><th>Service</th><th>Status</th><th>Restore point age</th><th>Newest verified point</th><th>Stored</th><th>Attention</th></tr></thead><tbody>${svcRows || '<tr><td colspan="6">No service in the catalog.</td></tr>'}</tbody></table></div>
<h2>Recoveries and drills</h2>
<div class="scroll"><table><thead><tr><th>Started</th><th>Incident</th><th>Services</th><th>Status</th><th>RTO (of target)</th><th>Data loss (of target)</th></tr></thead><tbody>${recRows || '<tr><td colspan="6">No recovery or drill recorded.</td></tr>'}</tbody></table></div>
<h2>History</h2>
${chart(d, "Stored size per backup", (h) => h.storedBytes, fmtBytes)}
${chart(d, "Duration per backup", (h) => h.durationSeconds, fmtSeconds)}
</body></html>
`;
}

/** The plain-text summary for email (the seed's weekly report). */
export function reportText(d: ReportData): string {
  const c = d.cards;
  const lines = [
    `kryonix-dr report: the last ${d.days} days (generated ${when(d.generatedAt)})`,
    "",
    `Backups: ${c.backups} (${c.completed} completed, ${c.failed} failed); success rate ${c.successPercent === null ? "-" : `${c.successPercent} %`}`,
    `Storage used: ${fmtBytes(c.storedBytes)}; last backup ${when(c.lastBackupAt)}`,
    "",
    "Services (restore point age of RPO target; newest verified point):",
    ...services(d).map((s) => {
      const v = rpoVerdict(s, d.rpoTargets[s.service]);
      return `  ${v.ok === false || !s.ok ? "!!" : "ok"} ${s.service}: ${v.text}; verified ${s.newestVerified ? when(s.newestVerified.recoveryPoint) : "never"}${s.attention.length ? ` - ${s.attention.join("; ")}` : ""}`;
    }),
    "",
    "Recoveries and drills:",
    ...(recoveries(d).length
      ? recoveries(d).map((r) => `  ${when(r.startedAt)} ${r.incidentType} (${r.services.join(", ")}): ${r.status}${r.recoverySeconds !== null ? `, RTO ${fmtSeconds(r.recoverySeconds)}${r.rtoTargetSeconds !== null ? ` of ${fmtSeconds(r.rtoTargetSeconds)}` : ""}` : ""}${r.dataLossSeconds !== null ? `, data loss ${r.dataLossSeconds} s` : ""}`)
      : ["  none recorded"]),
  ];
  return `${lines.join("\n")}\n`;
}
