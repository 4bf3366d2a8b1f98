import { describe, expect, it } from "vitest";
import { baseCoversUntil, sampleMarks, WalCoverage } from "../../agent/engines/wal-coverage.js";

const SEG = 16 * 1024 * 1024;
const at = (s: number) => new Date(Date.UTC(2026, 11, 2, 8, 0, s));
/** LSN X/Y of a byte position. */
const lsn = (pos: number) => `${Math.floor(pos / 2 ** 32).toString(16).toUpperCase()}/${(pos % 2 ** 32).toString(16).toUpperCase()}`;
const seg = (no: number) => `00000001${"0".repeat(8)}${no.toString(16).toUpperCase().padStart(8, "0")}`;

describe("WalCoverage: what an archived segment lets a restore reach", () => {
  it("claims the newest mark whose flushed LSN the segment holds, not a later one", () => {
    const c = new WalCoverage();
    c.mark({ at: at(0), lsn: lsn(3 * SEG + 100) }); // in segment 3
    c.mark({ at: at(5), lsn: lsn(3 * SEG + 9000) }); // still segment 3: the mark before the switch
    c.mark({ at: at(6), lsn: lsn(4 * SEG + 10) }); // after the switch: segment 4
    expect(c.coversUntil(seg(3))).toEqual(at(5));
    expect(c.coversUntil(seg(4))).toEqual(at(6));
  });

  it("a flush LSN exactly at a segment's end belongs to that segment", () => {
    const c = new WalCoverage();
    c.mark({ at: at(7), lsn: lsn(5 * SEG) });
    expect(c.coversUntil(seg(4))).toEqual(at(7));
  });

  it("a segment no new mark reaches keeps the previous claim; nothing at all claims nothing", () => {
    const c = new WalCoverage();
    expect(c.coversUntil(seg(2))).toBeUndefined();
    c.mark({ at: at(1), lsn: lsn(2 * SEG + 5) });
    expect(c.coversUntil(seg(2))).toEqual(at(1));
    // A segment filled without a mark in it (a busy primary between readings): no newer claim.
    c.mark({ at: at(9), lsn: lsn(9 * SEG + 5) });
    expect(c.coversUntil(seg(3))).toEqual(at(1));
    expect(c.coversUntil(seg(9))).toEqual(at(9));
  });

  it("starts from the claim the catalog already holds (after a restart)", () => {
    const c = new WalCoverage(at(30));
    expect(c.coversUntil(seg(8))).toEqual(at(30));
    c.mark({ at: at(20), lsn: lsn(8 * SEG) });
    expect(c.coversUntil(seg(8)), "an older mark never moves the claim back").toEqual(at(30));
  });

  it("a .partial claims only what precedes it (its end is not known); the complete segment then claims its marks", () => {
    const c = new WalCoverage();
    c.mark({ at: at(1), lsn: lsn(6 * SEG - 1) });
    c.mark({ at: at(4), lsn: lsn(6 * SEG + 300) });
    expect(c.coversUntil(`${seg(6)}.partial`)).toEqual(at(1));
    expect(c.coversUntil(seg(6))).toEqual(at(4));
  });

  it("a history file claims nothing new", () => {
    const c = new WalCoverage(at(3));
    c.mark({ at: at(8), lsn: lsn(SEG) });
    expect(c.coversUntil("00000002.history")).toEqual(at(3));
    expect(c.coversUntil(seg(0))).toEqual(at(8));
  });
});

describe("a base backup's recovery point", () => {
  const at = (s: number) => new Date(Date.UTC(2026, 11, 2, 22, 14, s));
  const marks = [
    { at: at(1), lsn: "0/3000100" },
    { at: at(2), lsn: "0/3000200" },
    { at: at(4), lsn: "0/3000300" },
  ];

  it("is the newest mark at or before the backup's end LSN, never the time the upload finished", () => {
    expect(baseCoversUntil(marks, "0/3000250", at(0))).toEqual(at(2));
    expect(baseCoversUntil(marks, "0/3000300", at(0))).toEqual(at(4));
    // Writes acknowledged after the end (at 4 s here) are not in the base: no claim past it.
    expect(baseCoversUntil(marks, "0/30000FF", at(0))).toEqual(at(0));
    expect(baseCoversUntil(marks, undefined, at(0))).toEqual(at(0));
    expect(baseCoversUntil([], "0/3000300", at(0))).toEqual(at(0));
  });

  it("samples marks until stopped, and none after", async () => {
    let n = 0;
    const s = sampleMarks(async () => ({ at: at(n), lsn: `0/${(++n).toString(16)}` }), 20);
    // The first mark is the backup's start, on the primary's clock (so start <= end in the catalog).
    expect(await s.first).toEqual({ at: at(0), lsn: "0/1" });
    await new Promise((r) => setTimeout(r, 120));
    const got = await s.stop();
    expect(got.length).toBeGreaterThanOrEqual(3);
    await new Promise((r) => setTimeout(r, 60));
    expect(n).toBe(got.length);
  });
});

it("sampleMarks: a first reading that fails gives no start mark (the backup takes the agent's clock)", async () => {
  const s = sampleMarks(() => Promise.reject(new Error("permission denied")), 20);
  expect(await s.first).toBeUndefined();
  expect(await s.stop()).toEqual([]);
});
