/**
 * Monitoring hooks the observability work builds on: a Prometheus scrape config that finds every
 * kryonix-dr service by label on its metrics port, alert rules generated from the thresholds and
 * RPO targets in config, and the notification targets as a Swarm secret.
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import { AGENT_ENV, DEFAULT_METRICS_PORT, LABELS, SECRET_FILES } from "../contract/index.js";
import { NOTIFY_ALERTMANAGER_PATH, parseNotificationTargets } from "../contract/notify.js";
import { AGENT_BIN, HEALTHCHECK } from "./backup-sidecar.js";
import { grafanaDashboard } from "./dashboard.js";
import { base64Secret, dockerLabels, secretFileName, validateInput } from "./shared.js";

export interface MonitoringArgs {
  /** Port of the agents' /metrics. @default contract.DEFAULT_METRICS_PORT */
  readonly metricsPort?: pulumi.Input<number>;
  /** Warn when RPO reaches this fraction of the target. @default 0.8 */
  readonly rpoWarningRatio?: pulumi.Input<number>;
  /** Failed runs per service in 24 h that raise an alert. @default 1 */
  readonly failedRunsPerDay?: pulumi.Input<number>;
  /** Age of the oldest object version the replicator has not copied yet that raises an alert, in seconds. @default 900 */
  readonly replicationLagSeconds?: pulumi.Input<number>;
  /**
   * Notification targets (contract/notify.ts: ntfy, webhook, email by name), a secret that only
   * the notify relay holds. @default none: nobody is told
   */
  readonly notificationTargets?: pulumi.Input<string>;
  /** The notify relay (an agent): where Alertmanager and the agents send; needed with notificationTargets. */
  readonly relay?: { image: pulumi.Input<string>; serviceName: string; networks: pulumi.Input<pulumi.Input<string>[]>; placement?: pulumi.Input<string>[] };
  /** How long a sidecar must not answer /metrics before KryonixDrAgentDown fires. @default 300 */
  readonly agentDownSeconds?: pulumi.Input<number>;
  /**
   * Run Prometheus itself with this scrape config and these rules, on a manager node (Swarm
   * service discovery reads the Docker socket), on the agents' networks. @default none: the
   * platform's own Prometheus takes the outputs scrapeConfig and alertRules.
   */
  readonly prometheus?: {
    image: pulumi.Input<string>;
    serviceName: pulumi.Input<string>;
    scrapeIntervalSeconds: number;
    /** Alertmanager's group_interval: how soon a change in an alert group (an alert added, one resolved) is told after the group's last notice. @default 60 */
    groupIntervalSeconds?: number;
    networks: pulumi.Input<pulumi.Input<string>[]>;
    publishedPort?: number;
  };
}

/** prometheus.yml: the generated scrape config, the rule file, and the scrape interval. */
export function prometheusConfig(scrape: string, scrapeIntervalSeconds: number, alertmanager?: string): string {
  return [
    "global:",
    `  scrape_interval: ${scrapeIntervalSeconds}s`,
    `  evaluation_interval: ${scrapeIntervalSeconds}s`,
    "rule_files:",
    `  - ${PROMETHEUS_RULES_FILE}`,
    ...(alertmanager ? ["alerting:", "  alertmanagers:", "    - static_configs:", `        - targets: [${JSON.stringify(alertmanager)}]`] : []),
    scrape,
  ].join("\n");
}

/**
 * alertmanager.yml: every alert group goes to the notify relay (which holds the targets, formats
 * the notice and sends it to ntfy, webhooks and email), when it fires and when it resolves. One
 * notice per alert, service, backup type and tier (a replicator's), repeated every 4 h while it lasts.
 */
export function alertmanagerConfig(relayUrl: string, groupIntervalSeconds = 60): string {
  return [
    "route:",
    "  receiver: kryonix-dr",
    "  group_by: [alertname, service, type, tier]",
    "  group_wait: 10s",
    `  group_interval: ${groupIntervalSeconds}s`,
    "  repeat_interval: 4h",
    "receivers:",
    "  - name: kryonix-dr",
    "    webhook_configs:",
    `      - { url: ${JSON.stringify(relayUrl + NOTIFY_ALERTMANAGER_PATH)}, send_resolved: true, max_alerts: 20 }`,
    "",
  ].join("\n");
}
/** Where agents and Alertmanager reach the relay: its Swarm service name on their network. */
export function notifyRelayUrl(serviceName: string, port: number): string {
  return `http://${serviceName}:${port}`;
}

export const PROMETHEUS_RULES_FILE = "/etc/prometheus/rules/kryonix-dr.yml";

export function scrapeConfig(metricsPort: number): string {
  const label = (l: string) => `__meta_dockerswarm_service_label_${l.replace(/[^a-zA-Z0-9_]/g, "_")}`;
  return [
    "scrape_configs:",
    "  - job_name: kryonix-dr",
    "    dockerswarm_sd_configs:",
    "      - host: unix:///var/run/docker.sock",
    "        role: tasks",
    `        port: ${metricsPort}`,
    "    relabel_configs:",
    `      - source_labels: [${label(LABELS.managed)}]`,
    "        regex: \"true\"",
    "        action: keep",
    // Only the agents serve /metrics (sidecars, replicators, crons, a DR standby's WAL follower),
    // and only running tasks: the task list also holds each service's stopped ones.
    `      - source_labels: [${label(LABELS.role)}]`,
    "        regex: \"sidecar|replicator|cron-.*|standby-follower\"",
    "        action: keep",
    "      - source_labels: [__meta_dockerswarm_task_desired_state]",
    "        regex: running",
    "        action: keep",
    // service: what a sidecar protects, or what a follower's standby stands in for.
    `      - source_labels: [${label(LABELS.service)}]`,
    "        target_label: service",
    `      - source_labels: [${label(LABELS.protects)}]`,
    "        regex: (.+)",
    "        target_label: service",
    `      - source_labels: [${label(LABELS.role)}]`,
    "        target_label: kdr_role",
    // A replicator copies one tier's bucket: its alerts name it.
    `      - source_labels: [${label(LABELS.tier)}]`,
    "        regex: (.+)",
    "        target_label: tier",
    "",
  ].join("\n");
}

/** How long after a successful restore drill the next one is overdue: a weekly drill, plus a day. */
export const DRILL_OVERDUE_SECONDS = 8 * 86_400;

/**
 * The alert rules. A service's series come from more than one agent (its sidecar, and the cron
 * container whose health and verify jobs report on it), so every comparison between two metrics
 * first takes one value per service (`max by (service)`): matching raw series on(service) would
 * fail with duplicate series the moment both report, and the rule would stop evaluating.
 */
export function alertRules(t: { rpoWarningRatio: number; failedRunsPerDay: number; replicationLagSeconds: number; agentDownSeconds?: number }): string {
  const rule = (alert: string, expr: string, severity: string, summary: string, forDuration = "5m") =>
    [`      - alert: ${alert}`, `        expr: ${expr}`, `        for: ${forDuration}`, `        labels: { severity: ${severity} }`, `        annotations: { summary: ${JSON.stringify(summary)} }`].join("\n");
  const one = (metric: string) => `max by (service) (${metric})`;
  // The age of the newest recovery point any agent reports: a cron container's value is as old as
  // its last health run, and the newest point wins, so it can neither hold nor hide an alert.
  const rpoAge = `(time() - ${one("kdr_recovery_point_timestamp_seconds")})`;
  return [
    "groups:",
    "  - name: kryonix-dr",
    "    rules:",
    rule("KryonixDrRpoBreached", `${rpoAge} > on(service) ${one("kdr_rpo_target_seconds")}`, "critical", "{{ $labels.service }}: newest recovery point is older than its RPO target", "1m"),
    rule("KryonixDrRpoAtRisk", `${rpoAge} > on(service) (${one("kdr_rpo_target_seconds")} * ${t.rpoWarningRatio})`, "warning", `{{ $labels.service }}: RPO above ${t.rpoWarningRatio * 100}% of target`),
    // Verify and restore-drill jobs count their failures under their own type: their own alerts.
    rule("KryonixDrBackupFailures", `sum by (service, type) (increase(kdr_backup_failures_total{type!~"verify|restore"}[1d])) >= ${t.failedRunsPerDay}`, "warning", "{{ $labels.service }}: backup runs failed in the last 24 h", "0m"),
    rule("KryonixDrVerifyFailed", 'sum by (service) (increase(kdr_backup_failures_total{type="verify"}[1d])) > 0', "critical", "{{ $labels.service }}: a verify failed in the last 24 h (a backup may be damaged, or the verify could not run: kryonix-dr status and the cron container's log say which)", "0m"),
    rule("KryonixDrDrillFailed", 'sum by (service) (increase(kdr_backup_failures_total{type="restore"}[8d])) > 0', "critical", "{{ $labels.service }}: a restore drill failed in the last 8 days (see the cron container's log)", "0m"),
    rule("KryonixDrDrillOverdue", `time() - ${one("kdr_restore_drill_last_success_timestamp_seconds")} > ${DRILL_OVERDUE_SECONDS}`, "warning", `{{ $labels.service }}: no successful restore drill for more than ${DRILL_OVERDUE_SECONDS / 86_400} days`, "1h"),
    // Backups that completed but that no verify has passed: "verified" lags far behind.
    rule("KryonixDrUnverified", `time() - ${one("kdr_backup_last_verified_timestamp_seconds")} > on(service) (2 * ${one("kdr_rpo_target_seconds")} + 3600)`, "warning", "{{ $labels.service }}: no verified recovery point within twice its RPO target (plus an hour for the verify cron)", "15m"),
    // WAL lag is measured against each service's own RPO target: it is the RPO of PostgreSQL.
    rule("KryonixDrWalLag", `${one("kdr_wal_lag_seconds")} > on(service) ${one("kdr_rpo_target_seconds")}`, "critical", "{{ $labels.service }}: WAL is not reaching the object store within the RPO", "1m"),
    // The threshold is already a duration: a minute more only keeps a slow pass from flapping it.
    rule("KryonixDrReplicationLag", `kdr_replication_lag_seconds > ${t.replicationLagSeconds}`, "warning", `the DR copy of the {{ $labels.tier }} backups is more than ${t.replicationLagSeconds} s behind the primary (see the replicator's log)`, "1m"),
    // The agent already moved on to a new generation; a person must still find out why one broke.
    rule("KryonixDrResticRepositoryReplaced", "increase(kdr_restic_repository_failures_total[1d]) > 0", "critical", "{{ $labels.service }}: a restic repository was found unusable and replaced by a new generation (kryonix-dr status shows why)", "0m"),
    // A standby that stopped replaying would make a failover wait for it, or lose what it holds.
    rule("KryonixDrStandbyStuck", "kdr_standby_replay_lag_segments > 0", "warning", "{{ $labels.service }}: the DR standby has not replayed WAL staged 10 min ago (see its follower's log)", "10m"),
    // Streaming is the standby's fast feed; the copied WAL its fallback, behind by the WAL switch and the replication interval.
    rule("KryonixDrStandbyNotStreaming", "kdr_standby_streaming == 0", "warning", "{{ $labels.service }}: the DR standby has not streamed from its primary for 10 min (a PostgreSQL standby then follows only the WAL copied to the DR region, a Redis replica nothing): a failover now would lose more (see its follower's log)", "10m"),
    rule("KryonixDrAgentDown", 'up{job="kryonix-dr"} == 0', "critical", "{{ $labels.service }}: backup agent not answering /metrics", `${t.agentDownSeconds ?? 300}s`),
    "",
  ].join("\n");
}

export class Monitoring extends pulumi.ComponentResource {
  public readonly scrapeConfigId: pulumi.Output<string>;
  public readonly alertRulesId: pulumi.Output<string>;
  /** The scrape config and rule file themselves, for a Prometheus the platform already runs. */
  public readonly scrapeConfig: pulumi.Output<string>;
  public readonly alertRules: pulumi.Output<string>;
  /** The Grafana dashboard (JSON, its datasources as variables: the catalog's reader login and Prometheus). */
  public readonly dashboard: string = JSON.stringify(grafanaDashboard(), null, 2);
  public readonly notificationSecretId?: pulumi.Output<string>;
  /** The notify relay's service, when there are notification targets. */
  public readonly notifyRelayServiceId?: pulumi.Output<string>;
  /** The Prometheus service, when args.prometheus asked for one. */
  public readonly prometheusServiceId?: pulumi.Output<string>;

  constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
    super("kryonix:monitoring:Monitoring", name, {}, opts);
    validateInput(args.rpoWarningRatio ?? 0.8, (ratio) => {
      if (!(ratio > 0 && ratio <= 1)) {
        throw new pulumi.ResourceError(`kryonix-dr:monitoring.rpoWarningRatio is ${ratio}; accepted: a number in (0, 1]`, this);
      }
    });
    validateInput(args.agentDownSeconds ?? 300, (secs) => {
      if (!(Number.isInteger(secs) && secs >= 0 && secs <= 86_400)) {
        throw new pulumi.ResourceError(`kryonix-dr:monitoring.agentDownSeconds is ${secs}; accepted: whole seconds from 0 to 86400`, this);
      }
    });
    if (args.notificationTargets !== undefined) {
      // Checked at preview, with the key and the fix; a stack file's `secure:` value the local
      // tooling cannot decrypt arrives as "[secret]" (local/program.ts): nothing to check there.
      validateInput(args.notificationTargets, (json) => {
        if (json !== "[secret]") parseNotificationTargets(json);
      });
      if (!args.relay) throw new pulumi.ResourceError("internal: notificationTargets without a notify relay to hold them", this);
    }
    const thresholds = pulumi
      .all([args.rpoWarningRatio ?? 0.8, args.failedRunsPerDay ?? 1, args.replicationLagSeconds ?? 900, args.agentDownSeconds ?? 300])
      .apply(([rpoWarningRatio, failedRunsPerDay, replicationLagSeconds, agentDownSeconds]) => ({ rpoWarningRatio, failedRunsPerDay, replicationLagSeconds, agentDownSeconds }));
    this.scrapeConfig = pulumi.output(args.metricsPort ?? DEFAULT_METRICS_PORT).apply(scrapeConfig);
    this.alertRules = thresholds.apply(alertRules);
    const scrape = new docker.ServiceConfig(`${name}-scrape`, { dataRaw: this.scrapeConfig, labels: dockerLabels({ [LABELS.role]: "monitoring" }) }, { parent: this });
    const rules = new docker.ServiceConfig(`${name}-alert-rules`, { dataRaw: this.alertRules, labels: dockerLabels({ [LABELS.role]: "monitoring" }) }, { parent: this });
    let relayUrl: pulumi.Output<string> | undefined;
    if (args.notificationTargets !== undefined && args.relay) {
      const r = args.relay;
      const secret = new docker.Secret(
        `${name}-notification-targets`,
        { data: base64Secret(args.notificationTargets), labels: dockerLabels({ [LABELS.role]: "notify" }) },
        { parent: this },
      );
      this.notificationSecretId = secret.id;
      const port = pulumi.output(args.metricsPort ?? DEFAULT_METRICS_PORT);
      relayUrl = port.apply((n) => notifyRelayUrl(r.serviceName, n));
      const relay = new docker.Service(
        `${name}-notify`,
        {
          name: r.serviceName,
          labels: dockerLabels({ [LABELS.role]: "notify" }),
          taskSpec: {
            containerSpec: {
              image: r.image,
              commands: ["node", AGENT_BIN, "notify-relay"],
              env: { [AGENT_ENV.metricsPort]: port.apply(String) },
              secrets: [{ secretId: secret.id, secretName: secret.name, fileName: secretFileName(SECRET_FILES.notificationTargets), fileMode: 0o400 }],
              healthcheck: { tests: HEALTHCHECK, interval: "30s", timeout: "15s", retries: 3, startPeriod: "10s" },
            },
            networksAdvanceds: pulumi.output(r.networks).apply((ns) => ns.map((n) => ({ id: n }))),
            placement: { constraints: r.placement ?? [] },
            restartPolicy: { condition: "any", delay: "5s" },
          },
          // Reached by name through DNS: a VIP needs IPVS, which some hosts lack.
          endpointSpec: { mode: "dnsrr" },
        },
        { parent: this },
      );
      this.notifyRelayServiceId = relay.id;
    }
    if (args.prometheus) {
      const p = args.prometheus;
      // Alertmanager, when there is someone to notify: it sends every group to the relay.
      let alertmanagerTarget: pulumi.Output<string> | undefined;
      if (relayUrl !== undefined) {
        const amConfig = new docker.ServiceConfig(
          `${name}-alertmanager-config`,
          { dataRaw: relayUrl.apply((url) => alertmanagerConfig(url, p.groupIntervalSeconds)), labels: dockerLabels({ [LABELS.role]: "monitoring" }) },
          { parent: this },
        );
        const am = new docker.Service(
          `${name}-alertmanager`,
          {
            name: pulumi.interpolate`${p.serviceName}-alertmanager`,
            labels: dockerLabels({ [LABELS.role]: "monitoring" }),
            taskSpec: {
              containerSpec: {
                image: p.image,
                commands: ["prometheus-alertmanager"],
                args: ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager", "--cluster.listen-address="],
                configs: [{ configId: amConfig.id, configName: amConfig.name, fileName: "/etc/alertmanager/alertmanager.yml" }],
                mounts: [{ type: "tmpfs", target: "/alertmanager" }],
              },
              networksAdvanceds: pulumi.output(p.networks).apply((ns) => ns.map((n) => ({ id: n }))),
            },
            // Prometheus reaches the task through DNS: a VIP needs IPVS, which some hosts lack.
            endpointSpec: { mode: "dnsrr" },
          },
          { parent: this },
        );
        alertmanagerTarget = pulumi.interpolate`${am.name}:9093`;
      }
      const main = new docker.ServiceConfig(
        `${name}-prometheus-config`,
        {
          dataRaw: pulumi.all([this.scrapeConfig, alertmanagerTarget]).apply(([sc, target]) => prometheusConfig(sc, p.scrapeIntervalSeconds, target)),
          labels: dockerLabels({ [LABELS.role]: "monitoring" }),
        },
        { parent: this },
      );
      const prometheus = new docker.Service(
        `${name}-prometheus`,
        {
          name: p.serviceName,
          labels: dockerLabels({ [LABELS.role]: "monitoring" }),
          taskSpec: {
            containerSpec: {
              image: p.image,
              // Swarm service discovery reads the Docker socket, which only root may open.
              user: "root",
              configs: [
                { configId: main.id, configName: main.name, fileName: "/etc/prometheus/prometheus.yml" },
                { configId: rules.id, configName: rules.name, fileName: PROMETHEUS_RULES_FILE },
              ],
              mounts: [
                { type: "bind", source: "/var/run/docker.sock", target: "/var/run/docker.sock", readOnly: true },
                // The TSDB in memory: no anonymous volume is left behind when the service goes.
                { type: "tmpfs", target: "/prometheus" },
              ],
            },
            placement: { constraints: ["node.role == manager"] },
            networksAdvanceds: pulumi.output(p.networks).apply((ns) => ns.map((n) => ({ id: n }))),
          },
          // Published on the node itself (host mode): the ingress routing mesh is not needed to reach
          // one Prometheus, and it is not available everywhere.
          endpointSpec: p.publishedPort ? { ports: [{ targetPort: 9090, publishedPort: p.publishedPort, protocol: "tcp", publishMode: "host" }] } : undefined,
        },
        { parent: this },
      );
      this.prometheusServiceId = prometheus.id;
    }
    this.scrapeConfigId = scrape.id;
    this.alertRulesId = rules.id;
    this.registerOutputs({ scrapeConfigId: this.scrapeConfigId, alertRulesId: this.alertRulesId });
  }
}
