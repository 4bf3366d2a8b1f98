/**
 * When a PostgreSQL full carries the logical dumps (agent/engines/postgres.ts logicalDumpDue):
 * the cadence a daily full at a fixed time keeps, and what the run's log says.
 */
import { describe, expect, it } from "vitest";
import { logicalDumpDue } from "../../agent/engines/postgres.js";

const DAY = 86400_000;
const t0 = new Date("2026-12-01T02:00:03Z");
const last = (createdAt: Date) => ({ backupId: "11111111-2222-3333-4444-555555555555", createdAt });

describe("logicalDumpDue", () => {
  it("takes them when no backup carries them yet, and with every full at 0 days", () => {
    expect(logicalDumpDue(null, 7, t0)).toEqual({ due: true, why: "no backup of this service carries them yet (none whose verify did not fail)" });
    expect(logicalDumpDue(last(t0), 0, new Date(t0.getTime() + 60_000)).due).toBe(true);
  });

  it("a daily full at 02:00 takes them once a week, although each run starts a few seconds before the last one's start plus 7 days", () => {
    const taken: number[] = [];
    let newest: Date | null = null;
    for (let day = 0; day < 22; day++) {
      // Each run starts up to 5 s early or late around 02:00.
      const now = new Date(Date.UTC(2026, 11, 1 + day, 2, 0, day % 2 ? -3 : 5));
      if (logicalDumpDue(newest ? last(newest) : null, 7, now).due) {
        taken.push(day);
        newest = now;
      }
    }
    expect(taken).toEqual([0, 7, 14, 21]);
  });

  it("says how old the newest dump is and how to take one now when it is not due", () => {
    const d = logicalDumpDue(last(t0), 7, new Date(t0.getTime() + 2.5 * DAY));
    expect(d.due).toBe(false);
    expect(d.why).toBe("the newest, in backup 11111111-2222-3333-4444-555555555555, began 2.5 days ago (every 7 days; --logical takes them now)");
    expect(logicalDumpDue(last(t0), 7, new Date(t0.getTime() + 3 * 3600_000)).why).toContain("began 3.0 hours ago");
  });

  it("takes them when the newest is overdue (missed runs catch up at the next full)", () => {
    const d = logicalDumpDue(last(t0), 7, new Date(t0.getTime() + 12 * DAY));
    expect(d).toEqual({ due: true, why: "the newest, in backup 11111111-2222-3333-4444-555555555555, began 12.0 days ago (every 7 days)" });
  });
});
