/**
 * Which moment an archived WAL segment lets a restore reach, claimed from the primary's own
 * readings and never from when the agent happened to see the file.
 *
 * A mark is (clock_timestamp(), pg_current_wal_flush_lsn()) read in one statement on the primary:
 * every commit acknowledged before `at` was flushed, so it ends at or before `lsn`. A segment
 * ending at or after that LSN therefore holds every write acknowledged before `at`. The file's
 * mtime is no such bound: pg_receivewal finishes a segment some time after the switch, and a
 * write acknowledged in between is in the next segment (a region drill once found one missing).
 */
import { lsnToSegmentNumber, walSegmentNumber } from "../../catalog/wal.js";
import { DEFAULT_WAL_SEGMENT_SIZE } from "../../catalog/types.js";

export interface WalMark {
  at: Date;
  /** Flush LSN as PostgreSQL prints it (X/Y). */
  lsn: string;
}

const MAX_MARKS = 1000;

function lsnValue(lsn: string): bigint {
  // lsnToSegmentNumber with a segment size of 1 is the LSN itself, validated.
  return lsnToSegmentNumber(lsn, 1);
}

export class WalCoverage {
  private marks: Array<{ at: Date; lsn: bigint }> = [];

  /** @param covered the newest point already claimed (the catalog's, after a restart), if any. */
  constructor(
    private covered?: Date,
    private readonly segmentSize = DEFAULT_WAL_SEGMENT_SIZE,
  ) {}

  mark(m: WalMark): void {
    this.marks.push({ at: m.at, lsn: lsnValue(m.lsn) });
    if (this.marks.length > MAX_MARKS) this.marks.splice(0, this.marks.length - MAX_MARKS);
  }

  /**
   * The newest moment every acknowledged write before it is in `file` or an earlier segment.
   * A .partial's end is not known (pg_receivewal pads it), so it claims only what precedes it;
   * restores still replay it. Undefined when nothing supports a claim (no mark reaches this far
   * back and nothing was claimed before): the caller records no coverage.
   */
  coversUntil(file: string): Date | undefined {
    if (!/^[0-9A-F]{24}(\.partial)?$/.test(file)) return this.covered;
    const no = walSegmentNumber(file.slice(0, 24), this.segmentSize);
    const end = (file.endsWith(".partial") ? no : no + 1n) * BigInt(this.segmentSize);
    let best = this.covered;
    for (const m of this.marks) if (m.lsn <= end && (!best || m.at > best)) best = m.at;
    // Marks this segment used cannot improve a later one past `best`.
    this.marks = this.marks.filter((m) => m.lsn > end);
    this.covered = best;
    return best;
  }
}

/**
 * A base backup's recovery point: the newest mark whose flush LSN is at or before the backup's
 * end LSN (every write acknowledged before that mark is in the base), else `fallback` (a moment
 * before the backup began). Marks carry the primary's clock, so the fallback is used only alone. Never the time the upload finished: writes acknowledged between the
 * backup's end and then are not in it (a region drill once restored a base without them).
 */
export function baseCoversUntil(marks: WalMark[], endLsn: string | undefined, fallback: Date): Date {
  if (!endLsn) return fallback;
  const end = lsnValue(endLsn);
  let best: Date | undefined;
  for (const m of marks) if (lsnValue(m.lsn) <= end && (!best || m.at > best)) best = m.at;
  return best ?? fallback;
}

/** Takes a mark with `read` now (`first`: it, or undefined if it failed) and every `ms` until stop(), which returns them all. */
export function sampleMarks(read: () => Promise<WalMark>, ms: number): { first: Promise<WalMark | undefined>; stop: () => Promise<WalMark[]> } {
  const marks: WalMark[] = [];
  let stopped = false;
  let inFlight: Promise<void> = Promise.resolve();
  const take = () => (inFlight = read().then((m) => void marks.push(m), () => undefined));
  const first = take().then(() => marks[0]);
  const timer = setInterval(() => {
    if (!stopped) void take();
  }, ms);
  return {
    first,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await inFlight;
      return marks;
    },
  };
}
