/** WAL file-name arithmetic the recovery plans rely on (PostgreSQL's XLogFileName rules). */
import { describe, expect, it } from "vitest";
import { lsnToSegmentNumber, walFileName, walSegmentNumber } from "../../catalog/queries.js";

describe("WAL segment names", () => {
  it("map LSNs to the segment file PostgreSQL writes (16 MiB segments)", () => {
    const name = (lsn: string, tl = 1) => walFileName(tl, lsnToSegmentNumber(lsn));
    expect(name("0/1000028")).toBe("000000010000000000000001");
    expect(name("0/FFFFFFFF")).toBe("0000000100000000000000FF");
    expect(name("1/0")).toBe("000000010000000100000000");
    expect(name("2A/3C000060", 3)).toBe("000000030000002A0000003C");
  });

  it("round-trip names and numbers, ignoring .partial", () => {
    for (const n of [0n, 1n, 255n, 256n, 10_000n]) expect(walSegmentNumber(walFileName(1, n))).toBe(n);
    expect(walSegmentNumber("000000010000000100000002.partial")).toBe(258n);
  });

  it("honour a non-default segment size", () => {
    const size = 64 * 1024 * 1024;
    expect(walFileName(1, lsnToSegmentNumber("0/8000000", size), size)).toBe("000000010000000000000002");
    expect(walFileName(1, lsnToSegmentNumber("1/0", size), size)).toBe("000000010000000100000000");
  });

  it("reject what is not an LSN", () => {
    expect(() => lsnToSegmentNumber("12345")).toThrow(/not a PostgreSQL LSN/);
  });
});
