/**
 * The Grafana dashboard of kryonix-dr, as JSON the stacks output (`monitoring.dashboard`): what the
 * seed's React dashboard shows, over the catalog (a PostgreSQL datasource logging in with the
 * read-only role, kryonix_dr_reader) and Prometheus (the agents' metrics). Both datasources are
 * dashboard variables, so the JSON imports into any Grafana as it is.
 *
 * Every SQL query runs against the real catalog as a reader login, and every PromQL expression
 * parses with promtool, in test/integration/dashboard.test.ts.
 */

export const DASHBOARD_UID = "kryonix-dr";

type Panel = Record<string, unknown>;
const CATALOG = { type: "grafana-postgresql-datasource", uid: "${catalog}" };
const PROMETHEUS = { type: "prometheus", uid: "${prometheus}" };

/** A panel's SQL targets (format table unless said). */
function sql(rawSql: string, format: "table" | "time_series" = "table") {
  return { datasource: CATALOG, editorMode: "code", format, rawQuery: true, rawSql: rawSql.replace(/\s+/g, " ").trim(), refId: "A" };
}
function promql(expr: string, legendFormat: string, refId = "A") {
  return { datasource: PROMETHEUS, editorMode: "code", expr, legendFormat, range: true, refId };
}

const SUCCESS_PERCENT = `round(100.0 * count(*) FILTER (WHERE backup_status = 'completed')
  / nullif(count(*) FILTER (WHERE backup_status IN ('completed', 'failed')), 0), 1)`;

/** The panels, in reading order; grid positions are given by `layout`. */
function panels(): Array<{ w: number; h: number; panel: Panel }> {
  const stat = (title: string, description: string, rawSql: string, unit: string, extra: Record<string, unknown> = {}) => ({
    w: 6,
    h: 4,
    panel: {
      type: "stat",
      title,
      description,
      datasource: CATALOG,
      targets: [sql(rawSql)],
      fieldConfig: { defaults: { unit, ...extra }, overrides: [] },
      options: { reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false }, colorMode: "value", graphMode: "none", textMode: "value" },
    },
  });
  return [
    stat("Backups", "Runs started in the dashboard's time range (catalog).", "SELECT count(*) AS backups FROM backup_management WHERE $__timeFilter(created_at)", "short"),
    stat("Success rate", "Completed among finished runs in the time range (failed runs count against it).", `SELECT ${SUCCESS_PERCENT} AS "success %" FROM backup_management WHERE $__timeFilter(created_at)`, "percent", {
      thresholds: { mode: "absolute", steps: [{ color: "red", value: null }, { color: "orange", value: 95 }, { color: "green", value: 99 }] },
    }),
    stat("Storage used", "Bytes stored by the backups still kept (completed, not expired), after compression and encryption, as measured.", "SELECT coalesce(sum(backup_size), 0) AS bytes FROM backup_management WHERE backup_status = 'completed'", "bytes"),
    stat("Last backup", "The newest completed backup of any service.", "SELECT extract(epoch FROM max(completed_at)) * 1000 AS last FROM backup_management WHERE backup_status = 'completed'", "dateTimeFromNow"),
    {
      w: 24,
      h: 8,
      panel: {
        type: "table",
        title: "Status per service",
        description: "Each service judged by its own schedule and targets (catalog view backup_health): stale after two missed runs, unverified when no verify passed since.",
        datasource: CATALOG,
        targets: [
          sql(`SELECT service_name AS service, effective_status AS status, last_successful_backup AS "last backup",
            last_verified_backup AS "last verified", extract(epoch FROM now() - last_verified_backup) AS "verified age (s)",
            extract(epoch FROM rpo_target) AS "RPO target (s)", extract(epoch FROM rto_target) AS "RTO target (s)",
            failure_count AS "failures in a row", schedule_full AS "full", schedule_incremental AS "incremental"
            FROM backup_health ORDER BY service_name`),
        ],
        fieldConfig: {
          defaults: {},
          overrides: [
            {
              matcher: { id: "byName", options: "status" },
              properties: [
                { id: "custom.cellOptions", value: { type: "color-background" } },
                { id: "mappings", value: [{ type: "value", options: { healthy: { color: "green" }, unverified: { color: "yellow" }, degraded: { color: "orange" }, warning: { color: "orange" }, stale: { color: "red" }, critical: { color: "red" } } }] },
              ],
            },
          ],
        },
      },
    },
    {
      w: 12,
      h: 8,
      panel: {
        type: "bargauge",
        title: "Success per service",
        description: "Completed among finished runs of each service in the time range.",
        datasource: CATALOG,
        targets: [sql(`SELECT service_name AS service, ${SUCCESS_PERCENT} AS success FROM backup_management WHERE $__timeFilter(created_at) GROUP BY service_name ORDER BY service_name`)],
        fieldConfig: { defaults: { unit: "percent", min: 0, max: 100 }, overrides: [] },
        options: { orientation: "horizontal", displayMode: "gradient", reduceOptions: { calcs: ["lastNotNull"], fields: "/^success$/", values: true } },
      },
    },
    {
      w: 12,
      h: 8,
      panel: {
        type: "timeseries",
        title: "RPO now, against its target",
        description: "Seconds since each service's newest verified recovery point (time() minus kdr_recovery_point_timestamp_seconds), and its target.",
        datasource: PROMETHEUS,
        targets: [promql("time() - max by (service) (kdr_recovery_point_timestamp_seconds)", "{{service}}"), promql("max by (service) (kdr_rpo_target_seconds)", "{{service}} target", "B")],
        fieldConfig: { defaults: { unit: "s" }, overrides: [] },
      },
    },
    {
      w: 12,
      h: 8,
      panel: {
        type: "timeseries",
        title: "Backup duration",
        description: "Duration of each service's last run, by backup type.",
        datasource: PROMETHEUS,
        targets: [promql("max by (service, type) (kdr_backup_duration_seconds)", "{{service}} {{type}}")],
        fieldConfig: { defaults: { unit: "s" }, overrides: [] },
      },
    },
    {
      w: 12,
      h: 8,
      panel: {
        type: "timeseries",
        title: "Failed runs and WAL lag",
        description: "Failed runs per hour, and seconds since the last WAL segment reached the object store (PostgreSQL).",
        datasource: PROMETHEUS,
        targets: [promql("sum by (service) (increase(kdr_backup_failures_total[1h]))", "{{service}} failed/h"), promql("max by (service) (kdr_wal_lag_seconds)", "{{service}} WAL lag (s)", "B")],
        fieldConfig: { defaults: {}, overrides: [] },
      },
    },
    {
      w: 24,
      h: 8,
      panel: {
        type: "timeseries",
        title: "Stored size per backup",
        description: "Bytes each completed backup stored (measured), over time.",
        datasource: CATALOG,
        targets: [
          sql(
            `SELECT completed_at AS time, service_name || ' ' || backup_type AS metric, backup_size AS value FROM backup_management
              WHERE backup_status = 'completed' AND backup_type <> 'wal' AND $__timeFilter(completed_at) ORDER BY 1`,
            "time_series",
          ),
        ],
        fieldConfig: { defaults: { unit: "bytes", custom: { drawStyle: "points", pointSize: 5 } }, overrides: [] },
      },
    },
    {
      w: 24,
      h: 8,
      panel: {
        type: "table",
        title: "Recoveries and drills",
        description: "The newest recoveries (drills included) with their RTO and data loss against the targets.",
        datasource: CATALOG,
        targets: [
          sql(`SELECT initiated_at AS started, incident_type AS incident, array_to_string(affected_services, ', ') AS services,
            recovery_status AS status, recovery_target AS target, extract(epoch FROM actual_recovery_time) AS "RTO (s)",
            extract(epoch FROM rto_target) AS "RTO target (s)", data_loss_seconds AS "data loss (s)", rto_met AS "RTO met", rpo_met AS "RPO met"
            FROM disaster_recovery_log ORDER BY initiated_at DESC LIMIT 20`),
        ],
      },
    },
    {
      w: 24,
      h: 8,
      panel: {
        type: "table",
        title: "Recent failures",
        description: "Failed runs in the time range, newest first, with the agent's reason.",
        datasource: CATALOG,
        targets: [
          sql(`SELECT failed_at AS failed, service_name AS service, backup_type AS type, error_message AS reason FROM backup_management
            WHERE backup_status = 'failed' AND $__timeFilter(created_at) ORDER BY failed_at DESC LIMIT 20`),
        ],
      },
    },
  ];
}

/** Panels laid out left to right, wrapping at Grafana's 24 columns. */
function layout(list: Array<{ w: number; h: number; panel: Panel }>): Panel[] {
  let x = 0;
  let y = 0;
  let rowH = 0;
  return list.map(({ w, h, panel }, i) => {
    if (x + w > 24) {
      x = 0;
      y += rowH;
      rowH = 0;
    }
    const placed = { id: i + 1, gridPos: { x, y, w, h }, ...panel };
    x += w;
    rowH = Math.max(rowH, h);
    return placed;
  });
}

/** The dashboard JSON (Grafana's schema 39; imports into Grafana 10 and later). */
export function grafanaDashboard(): Record<string, unknown> {
  return {
    uid: DASHBOARD_UID,
    title: "kryonix-dr: backups and recovery",
    tags: ["kryonix-dr", "backup"],
    timezone: "utc",
    schemaVersion: 39,
    refresh: "1m",
    time: { from: "now-7d", to: "now" },
    templating: {
      list: [
        { name: "catalog", label: "Catalog (PostgreSQL, read-only role)", type: "datasource", query: "grafana-postgresql-datasource", current: {} },
        { name: "prometheus", label: "Prometheus", type: "datasource", query: "prometheus", current: {} },
      ],
    },
    panels: layout(panels()),
  };
}

/** Every query of the dashboard: SQL for the catalog, PromQL for Prometheus (what the tests run). */
export function dashboardQueries(d: Record<string, unknown> = grafanaDashboard()): { sql: string[]; promql: string[] } {
  const targets = (d.panels as Array<{ targets?: Array<{ rawSql?: string; expr?: string }> }>).flatMap((p) => p.targets ?? []);
  return { sql: targets.flatMap((t) => (t.rawSql ? [t.rawSql] : [])), promql: targets.flatMap((t) => (t.expr ? [t.expr] : [])) };
}
