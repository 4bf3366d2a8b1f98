/**
 * Worst-case gaps between the runs of cron schedules, computed with croner (the scheduler the
 * agent uses), so that the policies judge the same expressions the agent will run.
 */
import { Cron } from "croner";

/**
 * A fixed starting point keeps every verdict reproducible: the same config always gives the
 * same answer, whatever the day the preview runs. A Monday at 00:00 UTC.
 */
const START = new Date(Date.UTC(2025, 0, 6, 0, 0, 0));
/** Enough runs to see every shape a 5/6-field pattern repeats with (monthly over 5 years). */
const SAMPLE_RUNS = 64;
/** Bounds the work for per-second schedules. */
const MAX_RUNS = 50_000;

/** Throws croner's own error (which names the bad field) for an invalid pattern. */
function cron(pattern: string): Cron {
  return new Cron(pattern, { timezone: "UTC", paused: true });
}

/** Checks a pattern; returns croner's error message, or undefined when valid. */
export function cronError(pattern: string): string | undefined {
  try {
    const c = cron(pattern);
    if (c.nextRun(START) === null) return "the pattern never runs";
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/** The longest time between two consecutive runs of one schedule, in seconds. */
export function maxGapSeconds(pattern: string): number {
  const runs = cron(pattern).nextRuns(SAMPLE_RUNS, START);
  let gap = 0;
  for (let i = 1; i < runs.length; i++) gap = Math.max(gap, runs[i].getTime() - runs[i - 1].getTime());
  return gap / 1000;
}

/**
 * The longest time with no run of ANY of the schedules, in seconds: the worst-case age of the
 * newest recovery point when full and incremental backups interleave.
 */
export function unionMaxGapSeconds(patterns: string[]): number {
  if (patterns.length === 0) return Infinity;
  const horizonMs = 2 * Math.max(...patterns.map(maxGapSeconds)) * 1000;
  let end = START.getTime() + horizonMs;
  const all: number[] = [];
  for (const p of patterns) {
    const c = cron(p);
    let prev: Date | null = START;
    let n = 0;
    while (prev && prev.getTime() <= end && n < MAX_RUNS) {
      prev = c.nextRun(prev);
      if (prev) all.push(prev.getTime());
      n++;
    }
    // A capped schedule only covers up to its last run; judge the union on that window only.
    if (n >= MAX_RUNS && prev) end = Math.min(end, prev.getTime());
  }
  const runs = all.filter((t) => t <= end).sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < runs.length; i++) gap = Math.max(gap, runs[i] - runs[i - 1]);
  return gap / 1000;
}

/** "2 h 30 min"-style text for messages. */
export function human(seconds: number): string {
  if (!Number.isFinite(seconds)) return "never";
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.round(seconds % 60);
  const parts = [d && `${d} d`, h && `${h} h`, m && `${m} min`, s && `${s} s`].filter(Boolean);
  return parts.length ? parts.join(" ") : "0 s";
}
