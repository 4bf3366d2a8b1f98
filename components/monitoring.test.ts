/** The generated Alertmanager and Prometheus configs; both run for real in test/integration/prometheus.test.ts. */
import { describe, expect, it } from "vitest";
import { alertmanagerConfig, prometheusConfig } from "./monitoring.js";

describe("alertmanagerConfig", () => {
  it("routes every alert to each target as a webhook, grouped per alert, service and backup type, resolved notices on", () => {
    const y = alertmanagerConfig(JSON.stringify({ oncall: "https://ntfy.example/kryonix-dr", whatsapp: "http://gateway.internal:3000/send" }));
    expect(y).toContain("group_by: [alertname, service, type]");
    expect(y).toContain("repeat_interval: 4h");
    expect(y).toContain('- { url: "https://ntfy.example/kryonix-dr", send_resolved: true }');
    expect(y).toContain('- { url: "http://gateway.internal:3000/send", send_resolved: true }');
  });

  it("refuses targets that are not JSON, empty, or not http(s) URLs, naming the key and the fix", () => {
    expect(() => alertmanagerConfig("oncall=https://x")).toThrow(/kryonix-dr:notificationTargets is not JSON: set it to \{"<name>": "https:\/\/\.\.\."\}/);
    expect(() => alertmanagerConfig("{}")).toThrow(/must map names to http\(s\) URLs \(it is empty\)/);
    expect(() => alertmanagerConfig(JSON.stringify({ mail: "ops@example.com" }))).toThrow(/not a URL: mail/);
  });
});

describe("prometheusConfig", () => {
  it("sends to the Alertmanager only when there is one", () => {
    expect(prometheusConfig("scrape_configs: []", 15)).not.toContain("alerting:");
    expect(prometheusConfig("scrape_configs: []", 15, "am:9093")).toContain('alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ["am:9093"]');
  });
});
