/** Progress on stderr for long work: bytes done, rate, and an ETA when the total is known. */
import { Transform, type TransformCallback } from "node:stream";

export const fmtBytes = (n: number): string => {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${u[i]}`;
};

export const fmtSeconds = (s: number): string =>
  s < 60 ? `${s.toFixed(1)} s` : s < 3600 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;

/** The agent's log: stderr, whatever shape stdout has (--json or text). */
export function log(msg: string): void {
  process.stderr.write(msg + "\n");
}

export class Progress {
  private done = 0;
  private readonly start = Date.now();
  /** The first line comes after `everyMs` of work: what ends sooner (a WAL segment) says nothing. */
  private last = this.start;
  constructor(
    private readonly label: string,
    private readonly total?: number,
    private readonly everyMs = 2000,
    /** What is counted: bytes, or things (WAL segments). */
    private readonly unit: "bytes" | "items" = "bytes",
  ) {}

  add(n: number): void {
    this.done += n;
    const now = Date.now();
    if (now - this.last >= this.everyMs) {
      this.last = now;
      process.stderr.write(this.line() + "\n");
    }
  }

  line(): string {
    const secs = Math.max((Date.now() - this.start) / 1000, 0.001);
    const rate = this.done / secs;
    const fmt = this.unit === "bytes" ? fmtBytes : (n: number) => String(n);
    let s = `${this.label}: ${fmt(this.done)}`;
    if (this.total) s += ` of ${fmt(this.total)} (${Math.min(100, (100 * this.done) / this.total).toFixed(0)}%)`;
    s += this.unit === "bytes" ? `, ${fmtBytes(rate)}/s` : `, ${rate.toFixed(1)}/s`;
    if (this.total && rate > 0 && this.done < this.total) s += `, ETA ${fmtSeconds((this.total - this.done) / rate)}`;
    return s;
  }

  /** A pass-through stream that reports what flows through it. */
  meter(): Transform {
    return new Transform({
      transform: (chunk: Buffer, _enc, cb: TransformCallback) => {
        this.add(chunk.length);
        cb(null, chunk);
      },
    });
  }
}

/**
 * A failure that repeats while its cause lasts (a database restarting, a network cut): said when
 * it starts, then at most once a minute with how long it has lasted, and once when it clears.
 * A five-minute outage is a handful of lines, not one per attempt.
 */
export class RepeatedFailure {
  private since?: number;
  private attempts = 0;
  private lastSaid = 0;
  constructor(
    private readonly what: string,
    private readonly onFail: (msg: string) => void,
    private readonly onClear: (msg: string) => void,
    private readonly everyMs = 60_000,
  ) {}

  get failing(): boolean {
    return this.since !== undefined;
  }

  failed(e: Error): void {
    const now = Date.now();
    this.attempts++;
    if (this.since === undefined) {
      this.since = this.lastSaid = now;
      this.onFail(`${this.what}: ${e.message}`);
    } else if (now - this.lastSaid >= this.everyMs) {
      this.lastSaid = now;
      this.onFail(`${this.what}: still failing after ${fmtSeconds((now - this.since) / 1000)} (${this.attempts} attempts): ${e.message}`);
    }
  }

  ok(): void {
    if (this.since === undefined) return;
    this.onClear(`${this.what}: working again after ${fmtSeconds((Date.now() - this.since) / 1000)} (${this.attempts} failed attempt(s))`);
    this.since = undefined;
    this.attempts = 0;
  }
}
