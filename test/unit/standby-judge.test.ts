/**
 * A warm standby against its service's RPO, as `kryonix-dr status` and the health job judge it
 * (catalog/standby.ts judgeStandby), and what each follower reports of one look
 * (standbyReport for PostgreSQL, redisReport for Redis).
 */
import { describe, expect, it } from "vitest";
import { judgeStandby, type StandbyRow } from "../../catalog/standby.js";
import { Settings } from "../../agent/config.js";
import { standbyReport } from "../../agent/commands/standby.js";
import { redisReport } from "../../agent/commands/standby-redis.js";

const now = new Date("2026-12-03T12:00:00Z");
const row = (x: Partial<StandbyRow> = {}): StandbyRow => ({
  tenantId: "00000000-0000-0000-0000-000000000001",
  service: "postgresql",
  region: "r2",
  engine: "postgres",
  standbyHost: "kdr-dr-postgresql",
  primaryHost: "postgresql",
  state: "following",
  streaming: true,
  lagBytes: 0,
  lagSeconds: 0,
  lastReplayedAt: new Date(now.getTime() - 5000),
  rpoTargetSeconds: 300,
  reportIntervalSeconds: 5,
  detail: null,
  reportedAt: new Date(now.getTime() - 4000),
  ...x,
});

describe("judgeStandby", () => {
  it("a streaming standby within the RPO is fine, and says how far behind it is", () => {
    expect(judgeStandby(row({ lagBytes: 1200, lagSeconds: 2 }), now)).toEqual({
      ok: true,
      message: "the PostgreSQL standby kdr-dr-postgresql of 'postgresql' (r2) streams from postgresql, 2 s / 1200 bytes behind (RPO 300 s)",
    });
  });

  it("over the RPO it needs attention, naming the loss a promotion would cause and where to look", () => {
    const j = judgeStandby(row({ streaming: false, lagBytes: 50_000_000, lagSeconds: 420 }), now);
    expect(j.ok).toBe(false);
    expect(j.message).toBe(
      "the PostgreSQL standby kdr-dr-postgresql of 'postgresql' (r2) does not stream (it replays the WAL copied to this region), 420 s / 50000000 bytes behind: over the RPO of 300 s; promoting it now would lose that much: see its follower's log ('docker service logs kdr-dr-postgresql-follower')",
    );
  });

  it("a lag that cannot be measured (the primary does not answer) is not called fine", () => {
    const j = judgeStandby(row({ streaming: false, lagBytes: null, lagSeconds: null }), now);
    expect(j.ok).toBe(false);
    expect(j.message).toContain("how far behind it is cannot be measured: the primary postgresql does not answer (last write applied 2026-12-03T11:59:55.000Z)");
  });

  it("a follower that stopped reporting, and a standby that does not answer, need attention; a promoted one is a primary", () => {
    const silent = judgeStandby(row({ reportedAt: new Date(now.getTime() - 60_000) }), now);
    expect(silent).toEqual({ ok: false, message: "the PostgreSQL standby kdr-dr-postgresql of 'postgresql' (r2): its follower last reported 60 s ago: see 'docker service logs kdr-dr-postgresql-follower'" });
    // Within three intervals and a margin it is not silent yet.
    expect(judgeStandby(row({ reportedAt: new Date(now.getTime() - 44_000) }), now).ok).toBe(true);
    expect(judgeStandby(row({ state: "unreachable", detail: "connection refused" }), now).message).toBe(
      "the PostgreSQL standby kdr-dr-postgresql of 'postgresql' (r2) does not answer (connection refused): see 'docker service ps kdr-dr-postgresql'",
    );
    expect(judgeStandby(row({ state: "promoted", lagBytes: null, lagSeconds: null }), now)).toEqual({ ok: true, message: "the PostgreSQL standby kdr-dr-postgresql of 'postgresql' (r2) is promoted: a primary now" });
  });

  it("a promoted standby's follower is gone with the promotion: its silence is no trouble", () => {
    const promoted = row({ state: "promoted", lagBytes: null, lagSeconds: null, detail: "promoted by kdr-agent standby activate at 2026-12-03T11:00:00Z", reportedAt: new Date(now.getTime() - 3_600_000) });
    expect(judgeStandby(promoted, now)).toEqual({
      ok: true,
      message: "the PostgreSQL standby kdr-dr-postgresql of 'postgresql' (r2) is promoted: a primary now (promoted by kdr-agent standby activate at 2026-12-03T11:00:00Z)",
    });
  });
});

const settings = (engine: string) =>
  new Settings(
    new Map(),
    {
      KDR_SERVICE: engine === "postgres" ? "postgresql" : "redis",
      KDR_ENGINE: engine,
      KDR_TENANT_ID: "00000000-0000-0000-0000-000000000001",
      KDR_S3_REGION: "r2",
      KDR_TARGET_HOST: `kdr-dr-${engine === "postgres" ? "postgresql" : "redis"}`,
      KDR_PRIMARY_HOST: engine === "postgres" ? "postgresql" : "redis",
      KDR_RPO_SECONDS: "300",
    },
  );

describe("a follower's look, as the catalog keeps it", () => {
  it("PostgreSQL: nothing behind is no lag; behind, the time since the last commit replayed; the primary silent, unknown", () => {
    const s = settings("postgres");
    const replay = { inRecovery: true, replayLsn: "0/3000060", lastReplayAt: new Date(now.getTime() - 7000), streamingFrom: "10.0.0.5" };
    expect(standbyReport(s, replay, 0, now)).toMatchObject({ state: "following", streaming: true, lagBytes: 0, lagSeconds: 0, region: "r2", rpoTargetSeconds: 300, detail: "replayed up to 0/3000060" });
    expect(standbyReport(s, replay, 4096, now)).toMatchObject({ lagBytes: 4096, lagSeconds: 7 });
    expect(standbyReport(s, { ...replay, streamingFrom: null }, undefined, now)).toMatchObject({ streaming: false, lagBytes: null, lagSeconds: null });
    expect(standbyReport(s, { ...replay, inRecovery: false }, undefined, now)).toMatchObject({ state: "promoted", streaming: false, lagBytes: null });
    expect(standbyReport(s, undefined, undefined, now)).toMatchObject({ state: "unreachable", streaming: false, lagSeconds: null });
  });

  it("Redis: link up and caught up is no lag; behind, the link's last I/O, or since it went down", () => {
    const s = settings("redis");
    const up = { role: "slave", master_link_status: "up", master_last_io_seconds_ago: "1", slave_repl_offset: "900" };
    expect(redisReport(s, up, 0)).toMatchObject({ engine: "redis", state: "following", streaming: true, lagBytes: 0, lagSeconds: 0 });
    expect(redisReport(s, up, 120)).toMatchObject({ lagBytes: 120, lagSeconds: 1 });
    expect(redisReport(s, { role: "slave", master_link_status: "down", master_link_down_since_seconds: "42" }, 5000)).toMatchObject({ streaming: false, lagBytes: 5000, lagSeconds: 42 });
    expect(redisReport(s, { role: "master" }, undefined)).toMatchObject({ state: "promoted", lagBytes: null });
    expect(redisReport(s, undefined, undefined, "Could not connect")).toMatchObject({ state: "unreachable", detail: "Could not connect" });
  });
});
