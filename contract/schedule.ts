/**
 * The one answer to "how long can this service go without a backup?", shared by config
 * validation (stacks/config.ts), the CrossGuard policies and the agent (which writes it into the
 * catalog's health row). Computed with croner, the scheduler the agent runs, in UTC from a fixed
 * start, so the same schedules always give the same verdict whatever day a preview runs.
 */
import { Cron } from "croner";

/** A Thursday at 00:00 UTC. */
const START = Date.UTC(2026, 0, 1);
const DAY_MS = 86400_000;
/** Sparse schedules are walked run by run over this span: it shows daily, weekly and monthly gaps. */
const WALK_DAYS = 62;
/** Union runs walked one by one before a schedule set counts as dense. */
const WALK_RUNS = 2000;
/** Dense sets: each hour boundary of this span is probed for the runs just before and after it. */
const PROBE_DAYS = 15;

function parse(pattern: string): Cron {
  return new Cron(pattern, { paused: true, timezone: "UTC", mode: "5-or-6-parts" });
}

/** croner's message for an invalid pattern (it names the bad field), or undefined when valid. */
export function cronError(pattern: string): string | undefined {
  try {
    if (parse(pattern).nextRun(new Date(START)) === null) return "the pattern never runs";
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * The longest time with no run of ANY of the patterns, in seconds: the worst-case age of the
 * newest backup when they interleave (full and incremental). Infinity for no pattern or for
 * patterns that run fewer than twice. Throws croner's message for an invalid pattern.
 *
 * Sparse sets are walked run by run over 62 days. For dense sets walking every run is too slow,
 * and their long gaps open across hour boundaries (a "9-17 h" window, a nightly pause), so each
 * hour boundary of 15 days is probed for the run just before and just after it; the first runs
 * walked give the short, regular gap.
 */
export function worstGapSeconds(patterns: readonly string[]): number {
  const crons = patterns.filter((p) => p !== "").map(parse);
  if (crons.length === 0) return Number.POSITIVE_INFINITY;
  const next = (after: number): number | undefined => {
    let best: number | undefined;
    for (const c of crons) {
      const t = c.nextRun(new Date(after))?.getTime();
      if (t !== undefined && (best === undefined || t < best)) best = t;
    }
    return best;
  };
  let prev = next(START - 1);
  if (prev === undefined) return Number.POSITIVE_INFINITY;
  let longest = 0;
  let runs = 1;
  const end = START + WALK_DAYS * DAY_MS;
  while (prev < end && runs < WALK_RUNS) {
    const t = next(prev);
    if (t === undefined) break;
    longest = Math.max(longest, t - prev);
    prev = t;
    runs++;
  }
  if (runs < 2) return Number.POSITIVE_INFINITY;
  if (prev < end) {
    // Dense: probe the hour boundaries for the gaps the regular runs hide.
    for (let h = START + 3600_000; h < START + PROBE_DAYS * DAY_MS; h += 3600_000) {
      let before: number | undefined;
      for (const c of crons) {
        const t = c.previousRuns(1, new Date(h))[0]?.getTime();
        if (t !== undefined && (before === undefined || t > before)) before = t;
      }
      const after = next(h - 1);
      if (before !== undefined && after !== undefined) longest = Math.max(longest, after - before);
    }
  }
  return longest / 1000;
}

/** "2 h 30 min"-style text for messages. */
export function humanDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "never";
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.round(seconds % 60);
  const parts = [d && `${d} d`, h && `${h} h`, m && `${m} min`, s && `${s} s`].filter(Boolean);
  return parts.length ? parts.join(" ") : "0 s";
}
