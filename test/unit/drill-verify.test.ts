/**
 * How the drill judges restored data against what the writers acknowledged: PostgreSQL to the
 * instant it reached, a redis/volume snapshot by its span (start: all before it is back; end:
 * nothing after it is), and a point-in-time target that no later write may appear past.
 */
import { describe, expect, it } from "vitest";
import { verify } from "../../local/drill/drill.js";
import type { Ack, WriterStats } from "../../local/drill/writers.js";

const T = Date.parse("2026-11-28T12:00:00Z");
const ack = (i: number, writtenS: number): Ack => ({ key: `w:r:${i}`, writtenAt: T + writtenS * 1000, ackedAt: T + writtenS * 1000 + 50 });
const stats = (acks: Ack[]): WriterStats => ({ engine: "redis", acks, failures: 0 });
/** Redis values the way the writer stores them: `<run>-<i>@<time>`. */
const back = (acks: Ack[]) => new Map(acks.map((a) => [a.key, `r-${a.key.split(":")[2]}@${a.writtenAt}`]));
const at = (s: number) => new Date(T + s * 1000);

describe("drill verify", () => {
  const acks = [0, 10, 20, 30, 40, 50].map((s, i) => ack(i, s));

  it("a snapshot span: acknowledged before its start must be back; inside it may be either; none after its end", () => {
    // Snapshot requested at 25 s, forked before its first byte at 32 s: writes at 0..20 are owed,
    // the write at 30 straddles, 40 and 50 must not be there.
    const got = back(acks.slice(0, 4));
    const r = verify({ name: "redis", engine: "redis" }, stats(acks), got, { backupId: "b", reaches: at(32), snapshotStart: at(25), snapshotEnd: at(32) }, at(45), 300);
    expect(r).toMatchObject({ expected: 3, restored: 4, missing: [], unexpected: [], straddling: 1, corrupted: [], recoveryPoint: at(32).toISOString() });
    // Data loss is measured from the target to the newest write that came back.
    expect(r.dataLossSeconds).toBeCloseTo(15, 3);
    expect(r.rpoMet).toBe(true);
  });

  it("flags a write owed by the snapshot that is missing, and one from after its end that is present", () => {
    const got = back([acks[0]!, acks[2]!, acks[4]!]);
    const r = verify({ name: "redis", engine: "redis" }, stats(acks), got, { backupId: "b", reaches: at(32), snapshotStart: at(25), snapshotEnd: at(32) }, at(45), 300);
    expect(r.missing).toEqual([acks[1]!.key]);
    expect(r.unexpected).toEqual([acks[4]!.key]);
  });

  it("a snapshot older than every write: nothing owed, and the loss runs from the snapshot to the target", () => {
    const r = verify({ name: "redis", engine: "redis" }, stats(acks), new Map(), { backupId: "b", reaches: at(-8), snapshotStart: at(-10), snapshotEnd: at(-8) }, at(45), 300);
    expect(r).toMatchObject({ expected: 0, restored: 0, missing: [], unexpected: [], newestRestoredWrite: undefined });
    expect(r.dataLossSeconds).toBeCloseTo(55, 3);
    expect(r.rpoMet).toBe(true);
  });

  it("PostgreSQL is judged at the instant it reached, and its RPO against the target", () => {
    const got = back(acks.slice(0, 4));
    const r = verify({ name: "pg", engine: "postgres" }, stats(acks), got, { backupId: "b", reaches: at(35) }, at(35), 60);
    expect(r).toMatchObject({ expected: 4, missing: [], unexpected: [], straddling: 0 });
    expect(r.dataLossSeconds).toBeCloseTo(5, 3);
    const late = verify({ name: "pg", engine: "postgres" }, stats(acks), got, { backupId: "b", reaches: at(35) }, at(35), 4);
    expect(late.rpoMet).toBe(false);
  });
});
