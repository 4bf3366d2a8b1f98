/** The generated Alertmanager and Prometheus configs; both run for real in test/integration/prometheus.test.ts. */
import { describe, expect, it } from "vitest";
import { alertmanagerConfig, prometheusConfig } from "./monitoring.js";

describe("alertmanagerConfig", () => {
  it("sends every group to the notify relay, grouped per alert, service and backup type, resolved notices on", () => {
    const y = alertmanagerConfig("http://kdr-notify:9469");
    expect(y).toContain("group_by: [alertname, service, type, tier]");
    expect(y).toContain("repeat_interval: 4h");
    expect(y).toContain("group_interval: 60s");
    expect(alertmanagerConfig("http://kdr-notify:9469", 15)).toContain("group_interval: 15s");
    expect(y).toContain('- { url: "http://kdr-notify:9469/alertmanager", send_resolved: true, max_alerts: 20 }');
    // The targets (and their credentials) are the relay's alone.
    expect(y).not.toMatch(/ntfy|smtp|password/);
  });
});

describe("prometheusConfig", () => {
  it("sends to the Alertmanager only when there is one", () => {
    expect(prometheusConfig("scrape_configs: []", 15)).not.toContain("alerting:");
    expect(prometheusConfig("scrape_configs: []", 15, "am:9093")).toContain('alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ["am:9093"]');
  });
});
