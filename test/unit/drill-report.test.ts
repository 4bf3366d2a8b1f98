/**
 * The drill's text report (local/drill/report.ts) from a given report: with --data-size it says how
 * much each service held, and whether that data came back whole, per service.
 */
import { describe, expect, it } from "vitest";
import type { DrillReport } from "../../local/drill/drill.js";
import type { FailoverReport, FailoverServiceReport } from "../../local/drill/failover.js";
import { formatFailoverReport, formatReport } from "../../local/drill/report.js";
import type { ServiceReport } from "../../local/drill/verify.js";

const at = "2026-12-03T17:00:00.000Z";
const service = (name: string, seed?: ServiceReport["seed"]): ServiceReport => ({
  service: name,
  engine: "postgres",
  writes: 10,
  failedWrites: 0,
  restoredFromBackup: "b",
  recoveryPoint: at,
  expected: 9,
  restored: 9,
  missing: [],
  unexpected: [],
  straddling: 0,
  corrupted: [],
  dataLossSeconds: 0,
  rpoTargetSeconds: 60,
  rpoMet: true,
  priority: "P0",
  recoverySeconds: 30,
  rtoTargetSeconds: 900,
  rtoMet: true,
  ...(seed ? { seed } : {}),
});

const report = (services: ServiceReport[], dataSizeMiB: number): DrillReport => ({
  ok: true,
  runId: "d1",
  startedAt: at,
  finishedAt: at,
  target: "latest",
  stack: "local",
  dataSizeMiB,
  phases: dataSizeMiB ? [{ name: `seed ${dataSizeMiB} MiB into each service`, seconds: 12 }] : [{ name: "verify the recovered data", seconds: 5 }],
  rto: { seconds: 30, targetSeconds: 900, met: true, declaredAt: at, verifiedAt: at },
  services,
  backups: [],
  walSegments: 0,
  deployments: {},
  disaster: "services",
  failures: [],
  kept: false,
});

describe("formatReport with --data-size", () => {
  it("names the size in its headline and, per service, whether the seed data came back whole", () => {
    const text = formatReport(
      report(
        [
          service("postgresql", { bytes: 33 * 2 ** 20, fingerprint: "31000 rows, md5 aa", restoredFingerprint: "31000 rows, md5 aa", matched: true }),
          service("redis", { bytes: 40 * 2 ** 20, fingerprint: "33555 keys, sha1 bb", restoredFingerprint: "33000 keys, sha1 cc", matched: false }),
        ],
        32,
      ),
    );
    expect(text).toContain("recovery point: latest; 32 MiB seeded per service)");
    expect(text).toContain("    seed data 33 MiB: back whole (31000 rows, md5 aa)");
    expect(text).toContain("    seed data 40 MiB: DIFFERS: 33000 keys, sha1 cc, seeded 33555 keys, sha1 bb");
  });

  it("says nothing of seed data without --data-size", () => {
    const text = formatReport(report([service("postgresql")], 0));
    expect(text).not.toMatch(/seed/);
  });
});

describe("formatReport's backups", () => {
  it("counts the backups by kind and names each failed one with its error", () => {
    const r = report([service("redis")], 0);
    r.backups = [
      { service: "redis", type: "incremental", status: "completed", backupId: "b1" },
      { service: "redis", type: "incremental", status: "failed", backupId: "b2", error: "redis-cli exited 1: connection refused" },
      { service: "redis", type: "incremental", status: "failed", backupId: "b3" },
    ];
    const text = formatReport(r);
    expect(text).toContain("Backups during the drill: redis incremental completed x1, redis incremental failed x2; WAL segments uploaded:");
    expect(text).toContain("  failed: redis incremental b2: redis-cli exited 1: connection refused");
    expect(text).toContain("  failed: redis incremental b3: no error recorded");
    expect(text).not.toContain("b1:");
  });
});

describe("formatFailoverReport", () => {
  const svc = (service: string, reversedAfterSeconds?: number | null): FailoverServiceReport => ({
    service,
    engine: "postgres",
    rpoTargetSeconds: 300,
    failoverSeconds: 11,
    acknowledgedBeforeLoss: 200,
    missingBeyondRpo: [],
    missingWithinRpo: 0,
    dataLossSeconds: 0.8,
    followedBefore: "streaming",
    writesAfterFailover: 20,
    missingAfterFailover: [],
    drBackup: { backupId: "07c4fef1", type: "full", verifyStatus: "passed" },
    ...(reversedAfterSeconds !== undefined ? { reversedAfterSeconds } : {}),
  });
  const failover = (services: FailoverServiceReport[]): FailoverReport => ({
    ok: true,
    runId: "f1",
    disaster: "failover",
    startedAt: at,
    finishedAt: at,
    lostAt: at,
    phases: [{ name: "verify the promoted services", seconds: 0.4 }],
    services,
    activations: [],
    failures: [],
    kept: false,
  });

  it("says per service whether its DR backup reached the primary region once it returned (replication reversed)", () => {
    const text = formatFailoverReport(failover([svc("postgresql", 15.04), svc("redis", null)]));
    expect(text).toContain("    first backup in the DR region: full 07c4fef1, verify passed\n    replication reversed: that backup reached the primary region 15.0 s after it returned");
    expect(text).toContain("    replication reversed: that backup did not reach the primary region");
  });

  it("says nothing of reversal where the drill did not get that far", () => {
    expect(formatFailoverReport(failover([svc("postgresql")]))).not.toMatch(/reversed/);
  });

  it("reports the way back per service: how it followed, the hand-over's phases, the writes and the pause, the backup again", () => {
    const text = formatFailoverReport({
      ...failover([svc("postgresql", 15.04)]),
      failback: {
        generation: 2,
        services: [
          {
            service: "postgresql",
            engine: "postgres",
            returned: "kdr-local-postgresql-g2",
            followedBefore: "streaming from kdr-local-dr-postgresql",
            writesDuring: 310,
            writesFailedDuring: 12,
            longestWriteGapSeconds: 6.42,
            missing: [],
            handover: { recoveryId: "r1", seconds: 1.27, phases: { fence: 0.31, catch_up: 0.02, promote: 0.94 } },
            drStandby: "streaming from kdr-local-postgresql-g2",
            backedUpAfterSeconds: 21.5,
          },
        ],
      },
    });
    expect(text).toContain(
      "The way back (failback, generation 2):\n" +
        "  postgresql (postgres): returned as kdr-local-postgresql-g2, followed the promoted service by streaming from kdr-local-dr-postgresql; hand-over 1.3 s (fence 0.3 s, catch_up 0.0 s, promote 0.9 s)\n" +
        "    writes through the stable name: 310 acknowledged during the failback (12 failed), longest pause from the switch on 6.4 s; 0 missing on the returned service\n" +
        "    backed up again 21.5 s after the switch; the DR region's new standby: streaming from kdr-local-postgresql-g2",
    );
  });
});
