/**
 * The report's rendering (cli/report.ts) from given data: verdicts against each service's own
 * target, escaping, and the text summary. Its data from a real catalog, and the page in Chromium,
 * are in test/integration/dashboard.test.ts.
 */
import { describe, expect, it } from "vitest";
import { reportHtml, reportText, type ReportData } from "../../cli/report.js";
import type { ServiceStatus } from "../../cli/commands/status.js";

const now = "2026-12-02T06:00:00.000Z";
function service(name: string, ageSeconds: number, extra: Partial<ServiceStatus> = {}): ServiceStatus {
  return {
    tenantId: "t",
    service: name,
    engine: "volume",
    effectiveStatus: "healthy",
    restorable: { recoveryPoint: now, ageSeconds, baseBackupId: "b", baseType: "full", chainLength: 1, walSegments: 0 },
    restoreProblem: null,
    newestCompleted: null,
    newestVerified: { backupId: "b", type: "full", recoveryPoint: "2026-12-02T05:50:00.000Z", ageSeconds: 600, verifiedAt: now },
    verifyFailures: 0,
    lastFailure: null,
    runningRuns: 0,
    runningSilentSeconds: null,
    completedBackups: 3,
    storedBytes: 2048,
    avgCompressionRatio: 0.5,
    repositories: [],
    drCopies: [],
    standbys: [],
    replication: [],
    stale: false,
    ok: true,
    attention: [],
    ...extra,
  };
}

const data: ReportData = {
  generatedAt: now,
  days: 7,
  cards: { backups: 10, completed: 9, failed: 1, successPercent: 90, storedBytes: 4096, lastBackupAt: now },
  status: {
    catalogTime: now,
    maxAgeSeconds: null,
    healthy: false,
    tenants: [
      {
        tenantId: "t",
        services: [service("redis", 120), service("files<x>", 7200, { ok: false, attention: ['last run failed: "disk" <full>'] })],
        recoveries: [
          { recoveryId: "r", status: "completed", incidentType: "drill", services: ["redis"], startedAt: now, completedAt: now, recoverySeconds: 42, rtoTargetSeconds: 900, rtoMet: true, dataLossSeconds: 0.7, rpoTargetSeconds: 300, rpoMet: true, error: null },
        ],
      },
    ],
  },
  rpoTargets: { redis: 300, "files<x>": 3600 },
  history: [
    { service: "redis", type: "full", completedAt: "2026-12-01T06:00:00.000Z", storedBytes: 1000, durationSeconds: 3 },
    { service: "redis", type: "incremental", completedAt: "2026-12-02T05:00:00.000Z", storedBytes: 500, durationSeconds: 1 },
  ],
};

describe("kryonix-dr report rendering", () => {
  it("judges each service against its own RPO target", () => {
    const text = reportText(data);
    expect(text).toContain("  ok redis: 2 min 0 s of 5 min 0 s;");
    expect(text).toMatch(/ {2}!! files<x>: 2 h 0 min of 1 h 0 min;.* - last run failed/);
    expect(text).toContain("Backups: 10 (9 completed, 1 failed); success rate 90 %");
    expect(text).toContain("drill (redis): completed, RTO 42.0 s of 15 min 0 s, data loss 0.7 s");
  });

  it("escapes what comes from the catalog", () => {
    const html = reportHtml(data);
    expect(html).toContain("<td>files&lt;x&gt;</td>");
    expect(html).toContain("last run failed: &quot;disk&quot; &lt;full&gt;");
    expect(html).not.toContain("<x>");
  });

  it("charts each service's backups as points, and says so when the period has none", () => {
    const html = reportHtml(data);
    expect(html.match(/<circle /g)).toHaveLength(4);
    expect(reportHtml({ ...data, history: [] })).toContain("Stored size per backup: no completed backup in the period.");
  });
});
