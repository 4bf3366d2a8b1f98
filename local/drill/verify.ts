/**
 * How the drill judges restored data against what the writers acknowledged: PostgreSQL to the
 * instant it reached, a redis/volume snapshot by its span.
 */
import type { Ack, DrillEngine, WriterStats } from "./writers.js";

const iso = (ms: number) => new Date(ms).toISOString();

export interface ServiceReport {
  service: string;
  engine: DrillEngine;
  writes: number;
  failedWrites: number;
  lastAcknowledgedWrite?: string;
  restoredFromBackup?: string;
  /** The point the restore reached (PostgreSQL: base + WAL; others: the backup's snapshot time). */
  recoveryPoint?: string;
  /** Writes acknowledged at or before the recovery point: all must be back. */
  expected: number;
  restored: number;
  missing: string[];
  /** Point in time only: writes made after the point that are back anyway (must be none). */
  unexpected: string[];
  /** Writes whose commit straddles the recovery point (neither required nor forbidden). */
  straddling: number;
  /** Content differs from what was written (payload, value or SHA-256). */
  corrupted: string[];
  newestRestoredWrite?: string;
  /** Last acknowledged write minus newest restored write (latest), or point minus newest restored write (point in time). */
  dataLossSeconds?: number;
  rpoTargetSeconds: number;
  rpoMet: boolean;
  /** The service's priority (P0..P3) and its own RTO: from the disaster to this service's data verified. */
  priority?: string;
  recoverySeconds?: number;
  rtoTargetSeconds?: number;
  rtoMet?: boolean;
  /** --data-size: the seed data's size before the disaster, and its fingerprint before and after. */
  seed?: { bytes: number; fingerprint: string; restoredFingerprint: string; matched: boolean };
}

export interface RestoreResult {
  backupId: string;
  reaches: Date;
  /**
   * The restored snapshot's span (redis/volume), from the catalog: it holds every write
   * acknowledged before `snapshotStart` and none written after `snapshotEnd`.
   */
  snapshotStart?: Date;
  snapshotEnd?: Date;
}

/** Compares what came back with what was acknowledged. */
export function verify(s: { name: string; engine: DrillEngine }, written: WriterStats, got: Map<string, string>, restore: RestoreResult | undefined, target: Date | "latest", rpoTargetSeconds: number): ServiceReport {
  const acks = written.acks;
  // PostgreSQL reaches its recovery point through WAL, to the instant. A redis or volume snapshot
  // is taken over a span: what was acknowledged before its start must be back, what was written
  // after its end must not be, and a write inside the span may be either ("straddling").
  const point = s.engine === "postgres" ? restore?.reaches : (restore?.snapshotEnd ?? restore?.reaches);
  const pointMs = point?.getTime() ?? -Infinity;
  const fromMs = s.engine === "postgres" ? pointMs : (restore?.snapshotStart?.getTime() ?? pointMs);
  const content = (a: Ack): string | undefined => (s.engine === "volume" ? a.sha256 : undefined);
  const missing: string[] = [];
  const unexpected: string[] = [];
  const corrupted: string[] = [];
  let expected = 0;
  let straddling = 0;
  let newest = -Infinity;
  for (const a of acks) {
    const back = got.get(a.key);
    if (back !== undefined) {
      newest = Math.max(newest, a.writtenAt);
      const want = content(a);
      if (want !== undefined && back !== want) corrupted.push(a.key);
      if (s.engine === "redis" && !back.startsWith(`${a.key.split(":")[1]}-${a.key.split(":")[2]}@`)) corrupted.push(a.key);
    }
    if (a.ackedAt <= fromMs) {
      expected++;
      if (back === undefined) missing.push(a.key);
    } else if (a.writtenAt > pointMs) {
      if (back !== undefined && target !== "latest") unexpected.push(a.key);
    } else straddling++;
  }
  const restored = acks.filter((a) => got.has(a.key)).length;
  const last = acks.at(-1)?.writtenAt;
  const reference = target === "latest" ? last : Math.min(target.getTime(), last ?? Infinity);
  // Loss runs from the newest moment whose writes are all back: the newest restored write, or, when
  // the restored snapshot predates every write of the drill, the snapshot itself.
  const covered = newest > -Infinity ? newest : restore ? fromMs : -Infinity;
  const dataLossSeconds = reference !== undefined && covered > -Infinity ? Math.max(0, (reference - covered) / 1000) : undefined;
  return {
    service: s.name,
    engine: s.engine,
    writes: acks.length,
    failedWrites: written.failures,
    lastAcknowledgedWrite: last !== undefined ? iso(last) : undefined,
    restoredFromBackup: restore?.backupId,
    recoveryPoint: point?.toISOString(),
    expected,
    restored,
    missing,
    unexpected,
    straddling,
    corrupted,
    newestRestoredWrite: newest > -Infinity ? iso(newest) : undefined,
    dataLossSeconds,
    rpoTargetSeconds,
    rpoMet: dataLossSeconds !== undefined && dataLossSeconds <= rpoTargetSeconds,
  };
}

