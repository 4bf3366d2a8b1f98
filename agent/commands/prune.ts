/** `kdr-agent prune`: retention, never touching what a restore from the oldest kept base needs. */
import type pg from "pg";
import * as cat from "../catalog.js";
import type { Settings } from "../config.js";
import * as volumeEngine from "../engines/volume.js";
import { acquireServiceLock } from "../lock.js";
import { Storage } from "../storage/s3.js";

export interface PruneSummary {
  service: string;
  expired: string[];
  kept: string[];
  objectsDeleted: number;
  objectsLeftToLifecycle: number;
  walSegmentsExpired: number;
}

/**
 * Retention: a row whose retention_until has passed is expired and its objects deleted (an
 * object lock that still holds them is fine: the bucket lifecycle, with the same day counts,
 * removes them later). The newest good full backup, the rows that depend on it, and the WAL a
 * restore from the oldest kept base needs are never touched.
 */
export async function runPrune(s: Settings, c: pg.Client, now = new Date()): Promise<PruneSummary> {
  const service = s.service;
  const tenantId = s.tenantId;
  const storage = Storage.fromSettings(s);
  const held = await acquireServiceLock(c, s.stateDir, `backup:${service}`, 600);
  try {
    const keepFull = await cat.latestGoodBackup(c, service, { tenantId, type: "full" });
    const rows = (await cat.listBackups(c, { service, tenantId, status: ["completed", "failed"], limit: 100000 })).filter(
      (r) => r.retentionUntil && r.retentionUntil < now,
    );
    const sum: PruneSummary = { service, expired: [], kept: [], objectsDeleted: 0, objectsLeftToLifecycle: 0, walSegmentsExpired: 0 };
    const snapshots: { key: string; id: string }[] = [];
    for (const r of rows.reverse()) {
      if (keepFull && (r.backupId === keepFull.backupId || r.parentBackupId === keepFull.backupId)) {
        sum.kept.push(r.backupId);
        continue;
      }
      for (const a of await cat.listArtifacts(c, r.backupId)) {
        if (a.role === "restic") {
          snapshots.push({ key: a.objectKey, id: a.sha256 });
          continue;
        }
        try {
          // A delete marker, never a version delete: the lifecycle's noncurrent rule (same day
          // counts as the object lock) removes the data, so prune needs no bypass rights.
          await storage.deleteVersion(a.objectKey);
          sum.objectsDeleted++;
        } catch {
          sum.objectsLeftToLifecycle++;
        }
      }
      await cat.expireBackup(c, r.backupId);
      sum.expired.push(r.backupId);
    }
    if (s.engine === "volume" && snapshots.length) await volumeEngine.forget(s, storage, snapshots);
    if (s.engine === "postgres" && keepFull) {
      // WAL before the oldest base still kept (and older than the WAL retention) serves no restore.
      const bases = (await cat.listBackups(c, { service, tenantId, status: "completed", type: "full", limit: 100000 })).filter((b) => b.endLsn && b.timeline);
      const oldest = bases.sort((a, b) => Number(cat.lsnToSegmentNumber(a.startLsn ?? a.endLsn!) - cat.lsnToSegmentNumber(b.startLsn ?? b.endLsn!)))[0];
      if (oldest) {
        const first = cat.lsnToSegmentNumber(oldest.startLsn ?? oldest.endLsn!);
        const cutoff = new Date(now.getTime() - s.retentionDays("wal") * 86400_000);
        const old = (await cat.listWalSegments(c, service, { tenantId })).filter(
          (w) => !w.segmentName.endsWith(".history") && (w.timeline < oldest.timeline! || cat.walSegmentNumber(w.segmentName) < first) && w.coversUntil < cutoff,
        );
        const gone: string[] = [];
        for (const w of old) {
          try {
            await storage.deleteVersion(w.objectKey);
            gone.push(w.segmentId);
          } catch {
            sum.objectsLeftToLifecycle++;
            gone.push(w.segmentId); // lifecycle removes it; a plan must not count on it either way
          }
        }
        sum.walSegmentsExpired = gone.length ? await cat.expireWalSegments(c, tenantId, service, gone) : 0;
      }
    }
    return sum;
  } finally {
    await held.release();
  }
}
