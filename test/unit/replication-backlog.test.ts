/**
 * The replicator's backlog (agent/replicate.ts backlogOf) and how status and the health job judge
 * it (catalog/replication.ts judgeReplication): pure functions, no catalog. The catalog round trip
 * (reportReplication, listReplication) runs against PostgreSQL in test/integration/status.test.ts
 * and agent-region.test.ts.
 */
import { describe, expect, it } from "vitest";
import { backlogOf } from "../../agent/replicate.js";
import { judgeReplication, type ReplicationRow } from "../../catalog/replication.js";

const now = new Date("2026-12-04T06:00:00Z");
const ago = (s: number) => new Date(now.getTime() - s * 1000);

describe("backlogOf", () => {
  it("is unknown until the source was listed", () => {
    expect(backlogOf({})).toBeUndefined();
  });

  it("counts per service what the pass did not copy, with the oldest; services with nothing left have 0; keys outside the layout or with an invalid service name are left out", () => {
    const pending = [
      { key: "wal/postgresql/000000010000000000000003.zst.age", versionId: "v3", lastModified: ago(400) },
      { key: "wal/postgresql/000000010000000000000004.zst.age", versionId: "v4", lastModified: ago(100) },
      { key: "full/postgresql/b1/base.tar.zst.age", versionId: "v5", lastModified: ago(500) },
      { key: "full/redis/b2/dump.rdb.zst.age", versionId: "v6", lastModified: ago(50) },
      { key: "notes/readme.txt", versionId: "v7", lastModified: ago(900) },
      // Not a service name the catalog takes: left out, rather than failing every report.
      { key: "full/Odd Name!/b3/x", versionId: "v8", lastModified: ago(950) },
    ];
    const m = backlogOf({ listed: { services: new Set(["postgresql", "redis", "files"]), pending, done: new Set(["v5", "v6"]) } })!;
    expect(Object.fromEntries([...m].map(([k, v]) => [k, { objects: v.objects, oldestAgo: v.objects ? (now.getTime() - v.oldestAt.getTime()) / 1000 : null }]))).toEqual({
      postgresql: { objects: 2, oldestAgo: 400 },
      redis: { objects: 0, oldestAgo: null },
      files: { objects: 0, oldestAgo: null },
    });
  });
});

const row = (o: Partial<ReplicationRow> = {}): ReplicationRow => ({
  sourceEndpoint: "http://rgw-primary:7480",
  sourceBucket: "kdr-backups-critical",
  endpoint: "http://rgw-dr:7480",
  region: "dr",
  bucket: "kdr-backups-critical-dr",
  service: "postgresql",
  pendingObjects: 0,
  oldestPendingAt: null,
  lastError: null,
  reportIntervalSeconds: 30,
  reportedAt: ago(10),
  ...o,
});

describe("judgeReplication", () => {
  const where = "the copy of 'postgresql' in region dr (kdr-backups-critical -> kdr-backups-critical-dr)";
  const fix = "see the replicator's log ('docker service logs' of the replication service of bucket kdr-backups-critical)";

  it("nothing pending and a pass that finished: fine", () => {
    expect(judgeReplication(row(), 300, now)).toEqual({ ok: true, message: `${where}: up to date (reported 10 s ago)` });
  });

  it("a backlog younger than the RPO is shown and fine; older, it needs attention and says what a restore there would lose", () => {
    expect(judgeReplication(row({ pendingObjects: 3, oldestPendingAt: ago(120) }), 300, now)).toEqual({
      ok: true,
      message: `${where}: 3 object version(s) not copied yet, the oldest stored 120 s ago (RPO 300 s)`,
    });
    expect(judgeReplication(row({ pendingObjects: 3, oldestPendingAt: ago(420), lastError: "connect ECONNREFUSED 10.0.0.9:7480" }), 300, now)).toEqual({
      ok: false,
      message: `${where}: 3 object version(s) not copied yet, the oldest stored 420 s ago: over the RPO of 300 s, so a restore there would lose more than that; its last pass stopped: connect ECONNREFUSED 10.0.0.9:7480: ${fix}`,
    });
  });

  it("a replicator silent for three intervals and a margin needs attention; one whose source could not be listed too", () => {
    expect(judgeReplication(row({ reportedAt: ago(121) }), 300, now)).toEqual({ ok: false, message: `${where}: its replicator last reported 121 s ago: ${fix}` });
    expect(judgeReplication(row({ reportedAt: ago(119) }), 300, now).ok).toBe(true);
    expect(judgeReplication(row({ lastError: "ListObjectVersions: HTTP 503" }), 300, now)).toEqual({
      ok: false,
      message: `${where}: nothing was pending at its last listing; its last pass stopped: ListObjectVersions: HTTP 503: ${fix}`,
    });
  });

  it("without a known RPO a backlog is shown, never judged", () => {
    expect(judgeReplication(row({ pendingObjects: 1, oldestPendingAt: ago(9000) }), null, now)).toEqual({ ok: true, message: `${where}: 1 object version(s) not copied yet, the oldest stored 9000 s ago` });
  });
});
