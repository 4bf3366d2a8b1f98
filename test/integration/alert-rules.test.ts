/**
 * The alert rules the program generates (components/monitoring.ts, with the prod stack's
 * thresholds), checked and evaluated by Prometheus's own promtool (Debian's prometheus 2.42,
 * unpacked by platform-up): each rule fires on the series that should fire it, after its `for`,
 * with its labels and summary, and stays silent on a healthy service.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { alertRules } from "../../components/monitoring.js";
import { DEFAULTS } from "../../stacks/config.js";
import { readPlatform } from "../../local/platform.js";

const promtool = readPlatform().tools.promtool;
const dir = mkdtempSync(join(tmpdir(), "kdrtest-rules-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The prod defaults: warn at 80 % of the RPO, alert on 1 failed run a day, DR copy 900 s behind. */
const rules = alertRules(DEFAULTS.monitoring);
writeFileSync(join(dir, "rules.yml"), rules);

/** What the scrape config makes of a sidecar's series: its service and the job. */
const at = (metric: string, service: string) => `${metric}{job="kryonix-dr", service="${service}"}`;

interface AlertTest {
  eval_time: string;
  alertname: string;
  exp_alerts: Array<{ exp_labels: Record<string, string>; exp_annotations?: Record<string, string> }>;
}

function promtoolTest(inputSeries: Array<{ series: string; values: string }>, alerts: AlertTest[], interval = "1m"): { status: number | null; out: string } {
  const file = join(dir, `test-${Math.random().toString(36).slice(2)}.yml`);
  // JSON is YAML: promtool reads it as its unit-test file.
  writeFileSync(file, JSON.stringify({ rule_files: ["rules.yml"], evaluation_interval: interval, tests: [{ interval, input_series: inputSeries, alert_rule_test: alerts }] }));
  const r = spawnSync(promtool, ["test", "rules", file], { cwd: dir, encoding: "utf8" });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** Every alert the rule file defines (a healthy service fires none of them). */
const ALERTS = [...rules.matchAll(/alert: (\w+)/g)].map((m) => m[1]!);

describe("generated alert rules, evaluated by promtool", () => {
  it("pass promtool check rules", () => {
    const r = spawnSync(promtool, ["check", "rules", join(dir, "rules.yml")], { encoding: "utf8" });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/SUCCESS: \d+ rules found/);
  });

  it("RPO: at risk past 80 % of the target for 5 min (warning), breached past the target for 1 min (critical)", () => {
    // The newest recovery point stays at unix time -30 (30 s before the test's start): its age is
    // above 240 s (80 % of 300) from minute 4, above 300 s from minute 5.
    const r = promtoolTest(
      [
        { series: at("kdr_recovery_point_timestamp_seconds", "postgresql"), values: "-30x12" },
        { series: at("kdr_rpo_target_seconds", "postgresql"), values: "300x12" },
      ],
      [
        { eval_time: "5m", alertname: "KryonixDrRpoBreached", exp_alerts: [] },
        {
          eval_time: "6m",
          alertname: "KryonixDrRpoBreached",
          // A comparison on(service) keeps only the service label (and the rule's severity).
          exp_alerts: [{ exp_labels: { service: "postgresql", severity: "critical" }, exp_annotations: { summary: "postgresql: newest recovery point is older than its RPO target" } }],
        },
        { eval_time: "8m", alertname: "KryonixDrRpoAtRisk", exp_alerts: [] },
        { eval_time: "9m", alertname: "KryonixDrRpoAtRisk", exp_alerts: [{ exp_labels: { service: "postgresql", severity: "warning" }, exp_annotations: { summary: "postgresql: RPO above 80% of target" } }] },
      ],
    );
    expect(r.status, r.out).toBe(0);
  });

  it("stays silent for a healthy service (recovery point 30 s old, WAL 10 s behind, no failures, agent up)", () => {
    const r = promtoolTest(
      [
        // A recovery point 30 s old at every minute (the series starts at unix time 0).
        { series: at("kdr_recovery_point_timestamp_seconds", "redis"), values: "-30+60x20" },
        { series: at("kdr_rpo_target_seconds", "redis"), values: "300x20" },
        { series: at("kdr_wal_lag_seconds", "redis"), values: "10x20" },
        { series: at("kdr_backup_failures_total", "redis"), values: "0x20" },
        { series: at("kdr_restic_repository_failures_total", "redis"), values: "0x20" },
        { series: at("up", "redis"), values: "1x20" },
        { series: 'kdr_replication_lag_seconds{job="kryonix-dr"}', values: "20x20" },
        // A standby replaying what it is given: now and then a segment ahead, never for long.
        { series: at("kdr_standby_replay_lag_segments", "postgresql"), values: "0 1 0 0 1 0x15" },
        // Streaming, but for a moment (a primary restart).
        { series: at("kdr_standby_streaming", "postgresql"), values: "1x5 0 0 1x13" },
        // Verified a minute ago (the series starts at unix time 0: its value is the minute), drilled now.
        { series: at("kdr_backup_last_verified_timestamp_seconds", "redis"), values: "0+60x20" },
        { series: at("kdr_restore_drill_last_success_timestamp_seconds", "redis"), values: "0+60x20" },
        { series: 'kdr_backup_failures_total{job="kryonix-dr", service="redis", type="verify"}', values: "0x20" },
        { series: 'kdr_backup_failures_total{job="kryonix-dr", service="redis", type="restore"}', values: "0x20" },
      ],
      ALERTS.map((alertname) => ({ eval_time: "20m", alertname, exp_alerts: [] })),
    );
    expect(r.status, r.out).toBe(0);
  });

  it("a DR standby that stopped replaying the WAL staged for it: warning after 10 min", () => {
    const r = promtoolTest(
      [{ series: at("kdr_standby_replay_lag_segments", "postgresql"), values: "0x2 3x14" }],
      [
        { eval_time: "11m", alertname: "KryonixDrStandbyStuck", exp_alerts: [] },
        { eval_time: "13m", alertname: "KryonixDrStandbyStuck", exp_alerts: [{ exp_labels: { job: "kryonix-dr", service: "postgresql", severity: "warning" }, exp_annotations: { summary: "postgresql: the DR standby has not replayed WAL staged 10 min ago (see its follower's log)" } }] },
      ],
    );
    expect(r.status, r.out).toBe(0);
  });

  it("a DR standby that stopped streaming from its primary: warning after 10 min", () => {
    const r = promtoolTest(
      [{ series: at("kdr_standby_streaming", "postgresql"), values: "1x2 0x14" }],
      [
        { eval_time: "11m", alertname: "KryonixDrStandbyNotStreaming", exp_alerts: [] },
        { eval_time: "13m", alertname: "KryonixDrStandbyNotStreaming", exp_alerts: [{ exp_labels: { job: "kryonix-dr", service: "postgresql", severity: "warning" }, exp_annotations: { summary: "postgresql: the DR standby has not streamed from its primary for 10 min (a PostgreSQL standby then follows only the WAL copied to the DR region, a Redis replica nothing): a failover now would lose more (see its follower's log)" } }] },
      ],
    );
    expect(r.status, r.out).toBe(0);
  });

  it("WAL lag past the service's own RPO target: critical after 1 min", () => {
    const r = promtoolTest(
      [
        { series: at("kdr_wal_lag_seconds", "postgresql"), values: "10x3 400x5" },
        { series: at("kdr_rpo_target_seconds", "postgresql"), values: "300x8" },
      ],
      [
        { eval_time: "4m", alertname: "KryonixDrWalLag", exp_alerts: [] },
        { eval_time: "5m", alertname: "KryonixDrWalLag", exp_alerts: [{ exp_labels: { service: "postgresql", severity: "critical" }, exp_annotations: { summary: "postgresql: WAL is not reaching the object store within the RPO" } }] },
      ],
    );
    expect(r.status, r.out).toBe(0);
  });

  it("a failed run, a replaced restic repository: at once; an agent down: after 5 min; the DR copy 900 s behind: after 1 min more", () => {
    const r = promtoolTest(
      [
        { series: at("kdr_backup_failures_total", "redis"), values: "0x3 1x5" },
        { series: at("kdr_restic_repository_failures_total", "files"), values: "0x3 1x5" },
        { series: at("up", "files"), values: "1x2 0x8" },
        { series: 'kdr_replication_lag_seconds{job="kryonix-dr", kdr_role="replicator", tier="critical"}', values: "100x2 1000x8" },
      ],
      [
        { eval_time: "2m", alertname: "KryonixDrBackupFailures", exp_alerts: [] },
        { eval_time: "4m", alertname: "KryonixDrBackupFailures", exp_alerts: [{ exp_labels: { service: "redis", severity: "warning" }, exp_annotations: { summary: "redis: backup runs failed in the last 24 h" } }] },
        { eval_time: "4m", alertname: "KryonixDrResticRepositoryReplaced", exp_alerts: [{ exp_labels: { job: "kryonix-dr", service: "files", severity: "critical" }, exp_annotations: { summary: "files: a restic repository was found unusable and replaced by a new generation (kryonix-dr status shows why)" } }] },
        { eval_time: "7m", alertname: "KryonixDrAgentDown", exp_alerts: [] },
        { eval_time: "8m", alertname: "KryonixDrAgentDown", exp_alerts: [{ exp_labels: { job: "kryonix-dr", service: "files", severity: "critical" }, exp_annotations: { summary: "files: backup agent not answering /metrics" } }] },
        { eval_time: "3m", alertname: "KryonixDrReplicationLag", exp_alerts: [] },
        { eval_time: "4m", alertname: "KryonixDrReplicationLag", exp_alerts: [{ exp_labels: { job: "kryonix-dr", kdr_role: "replicator", tier: "critical", severity: "warning" }, exp_annotations: { summary: "the DR copy of the critical backups is more than 900 s behind the primary (see the replicator's log)" } }] },
      ],
    );
    expect(r.status, r.out).toBe(0);
  });

  it("a service reported by its sidecar and by the cron container (two series each) is judged once, not dropped as duplicate series", () => {
    const two = (metric: string, values: string) => [
      { series: `${metric}{job="kryonix-dr", instance="10.0.0.5:9464", kdr_role="sidecar", service="postgresql"}`, values },
      { series: `${metric}{job="kryonix-dr", instance="10.0.0.9:9464", kdr_role="cron-drill", service="postgresql"}`, values },
    ];
    const r = promtoolTest(
      [...two("kdr_recovery_point_timestamp_seconds", "-220x5"), ...two("kdr_rpo_target_seconds", "300x5"), ...two("kdr_wal_lag_seconds", "400x5")],
      [
        { eval_time: "3m", alertname: "KryonixDrRpoBreached", exp_alerts: [{ exp_labels: { service: "postgresql", severity: "critical" }, exp_annotations: { summary: "postgresql: newest recovery point is older than its RPO target" } }] },
        { eval_time: "3m", alertname: "KryonixDrWalLag", exp_alerts: [{ exp_labels: { service: "postgresql", severity: "critical" }, exp_annotations: { summary: "postgresql: WAL is not reaching the object store within the RPO" } }] },
      ],
    );
    expect(r.status, r.out).toBe(0);
  });

  it("a cron container's older recovery point (its health job runs every 2 h) neither holds an RPO alert nor hides one when the sidecar is gone", () => {
    const rpo = (role: string, service: string, values: string) => ({ series: `kdr_recovery_point_timestamp_seconds{job="kryonix-dr", kdr_role="${role}", service="${service}"}`, values });
    const r = promtoolTest(
      [
        // redis: the sidecar's point 30 s old at every minute; the cron's health run at minute 0
        // saw a point 400 s old then (over the target), and exports it until its next run.
        rpo("sidecar", "redis", "-30+60x20"),
        rpo("cron-maintenance", "redis", "-400x20"),
        { series: at("kdr_rpo_target_seconds", "redis"), values: "300x20" },
        // postgresql: its sidecar gone after minute 2 (its last point, 90, read for 5 min more);
        // the cron's point from minute 0 ages on, past the target.
        rpo("sidecar", "postgresql", "-30+60x2"),
        rpo("cron-maintenance", "postgresql", "0x20"),
        { series: at("kdr_rpo_target_seconds", "postgresql"), values: "300x20" },
      ],
      [
        // redis never: the newest point (the sidecar's) is 30 s old. postgresql: 90 is the newest
        // point it has from minute 2, so its age passes 240 s at 5.5 min (pending 5 min) and 300 s
        // at 6.5 min (pending 1 min); the cron's point keeps it when the sidecar's is gone.
        { eval_time: "1m", alertname: "KryonixDrRpoAtRisk", exp_alerts: [] },
        { eval_time: "10m", alertname: "KryonixDrRpoAtRisk", exp_alerts: [] },
        ...["12m", "20m"].map((eval_time) => ({ eval_time, alertname: "KryonixDrRpoAtRisk", exp_alerts: [{ exp_labels: { service: "postgresql", severity: "warning" }, exp_annotations: { summary: "postgresql: RPO above 80% of target" } }] })),
        { eval_time: "6m", alertname: "KryonixDrRpoBreached", exp_alerts: [] },
        { eval_time: "8m", alertname: "KryonixDrRpoBreached", exp_alerts: [{ exp_labels: { service: "postgresql", severity: "critical" }, exp_annotations: { summary: "postgresql: newest recovery point is older than its RPO target" } }] },
        { eval_time: "20m", alertname: "KryonixDrRpoBreached", exp_alerts: [{ exp_labels: { service: "postgresql", severity: "critical" }, exp_annotations: { summary: "postgresql: newest recovery point is older than its RPO target" } }] },
      ],
    );
    expect(r.status, r.out).toBe(0);
  });

  it("a failed verify and a failed restore drill: critical at once, not counted as failed backups", () => {
    const r = promtoolTest(
      [
        { series: 'kdr_backup_failures_total{job="kryonix-dr", kdr_role="cron-drill", service="postgresql", type="verify"}', values: "0x2 1x5" },
        { series: 'kdr_backup_failures_total{job="kryonix-dr", kdr_role="cron-drill", service="redis", type="restore"}', values: "0x2 1x5" },
      ],
      [
        { eval_time: "1m", alertname: "KryonixDrVerifyFailed", exp_alerts: [] },
        {
          eval_time: "4m",
          alertname: "KryonixDrVerifyFailed",
          exp_alerts: [{ exp_labels: { service: "postgresql", severity: "critical" }, exp_annotations: { summary: "postgresql: a verify failed in the last 24 h (a backup may be damaged, or the verify could not run: kryonix-dr status and the cron container's log say which)" } }],
        },
        { eval_time: "4m", alertname: "KryonixDrDrillFailed", exp_alerts: [{ exp_labels: { service: "redis", severity: "critical" }, exp_annotations: { summary: "redis: a restore drill failed in the last 8 days (see the cron container's log)" } }] },
        { eval_time: "4m", alertname: "KryonixDrBackupFailures", exp_alerts: [] },
      ],
    );
    expect(r.status, r.out).toBe(0);
  });

  it("no verified recovery point within twice the RPO plus an hour: warning after 15 min", () => {
    // RPO target 1800 s: the verified point (frozen at unix time 0) is overdue after 2 x 1800 + 3600 = 7200 s.
    const r = promtoolTest(
      [
        { series: at("kdr_backup_last_verified_timestamp_seconds", "files"), values: "0x200" },
        { series: at("kdr_rpo_target_seconds", "files"), values: "1800x200" },
      ],
      [
        { eval_time: "120m", alertname: "KryonixDrUnverified", exp_alerts: [] },
        { eval_time: "136m", alertname: "KryonixDrUnverified", exp_alerts: [{ exp_labels: { service: "files", severity: "warning" }, exp_annotations: { summary: "files: no verified recovery point within twice its RPO target (plus an hour for the verify cron)" } }] },
      ],
    );
    expect(r.status, r.out).toBe(0);
  });

  it("no successful restore drill for 8 days: warning after an hour more", () => {
    const r = promtoolTest(
      // A sample every 4 min (within Prometheus's 5 min lookback), evaluated as often.
      [{ series: at("kdr_restore_drill_last_success_timestamp_seconds", "redis"), values: "0x3000" }],
      [
        { eval_time: "192h", alertname: "KryonixDrDrillOverdue", exp_alerts: [] },
        { eval_time: "194h", alertname: "KryonixDrDrillOverdue", exp_alerts: [{ exp_labels: { service: "redis", severity: "warning" }, exp_annotations: { summary: "redis: no successful restore drill for more than 8 days" } }] },
      ],
      "4m",
    );
    expect(r.status, r.out).toBe(0);
  });
});
