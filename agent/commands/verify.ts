/** `kdr-agent verify`: re-reads a backup from storage and checks it with the engine's own tools. */
import { mkdirSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import * as cat from "../catalog.js";
import { ConfigError, type Settings } from "../config.js";
import * as pgEngine from "../engines/postgres.js";
import * as redisEngine from "../engines/redis.js";
import * as volumeEngine from "../engines/volume.js";
import { m } from "../metrics.js";
import { IntegrityError } from "../storage/pipeline.js";
import { log } from "../storage/progress.js";
import { Storage } from "../storage/s3.js";
import { heldHere, identityFor, inRegionOf, loadManifest, outsideTheBackup } from "./shared.js";
import { toRef } from "./restore.js";

export interface VerifySummary {
  backupId: string;
  service: string;
  /** Recovery point of the verified backup. */
  recoveryPoint: string | null;
  passed: boolean;
  checks: string[];
  error?: string;
}

/**
 * A backup written in another region (or bucket) whose objects this one does not all hold yet:
 * its copies have not arrived. That says nothing of the backup, so it is not judged.
 */
export class NotHereYet extends Error {}

export async function runVerify(s: Settings, c: pg.Client, backupId?: string): Promise<VerifySummary> {
  const service = s.service;
  const engine = s.engine;
  const tenantId = s.tenantId;
  const types: cat.BackupType[] = ["full", "incremental"];
  const found = backupId ? await cat.getBackup(c, backupId) : await cat.latestGoodBackup(c, service, { tenantId, type: types });
  if (!found) throw new ConfigError(backupId ? `backup ${backupId} is not in the catalog.` : `no completed backup of '${service}' to verify: run a backup first.`);
  if (found.backupStatus !== "completed") throw new ConfigError(`backup ${found.backupId} is ${found.backupStatus}; only completed backups can be verified.`);
  let row: cat.BackupRow = found;
  const storage = Storage.fromSettings(s);
  let written = await cat.listArtifacts(c, row.backupId);
  // Read where it was not written (the dr region's cron verifies the promoted services' new
  // backups, and after a failback their sidecars write in the primary region again), a backup is
  // whole only once every object is copied here: one whose copies are on their way is not judged.
  // Recorded as failed, it was skipped by every restore and standby seed (a failback's seed once).
  // Without an id, the newest backup this region holds whole is the one verified.
  for (let skipped = 0; ; skipped++) {
    const missing = await notHeldHere(c, storage, row, written);
    if (!missing) break;
    const older: cat.BackupRow | null = backupId || skipped >= 10 || !row.recoveryPointEnd ? null : await cat.latestGoodBackup(c, service, { tenantId, type: types, before: new Date(row.recoveryPointEnd.getTime() - 1) });
    if (!older) throw new NotHereYet(missing);
    log(`verify ${service}: ${missing}; verifying the newest older backup instead`);
    row = older;
    written = await cat.listArtifacts(c, row.backupId);
  }
  const scratch = path.join(s.stateDir, "scratch");
  mkdirSync(scratch, { recursive: true });
  const checks: string[] = [];
  // A missing or wrong key says nothing about the backup: it is a configuration error, not a verify result.
  const identity = engine === "volume" ? "" : identityFor(s, row.encryptionKeyId);
  try {
    const arts = await inRegionOf(c, storage, written);
    await loadManifest(storage, row, arts);
    checks.push("manifest: present, SHA-256 matches, lists every artifact");
    if (engine === "volume") {
      const snap = arts.find((a) => a.role === "restic")!;
      checks.push(...(await volumeEngine.verify(s, storage, snap.objectKey, snap.sha256)));
    } else {
      const refs = arts.filter((a) => a.role !== "manifest").map(toRef);
      if (engine === "postgres") {
        checks.push(...(await pgEngine.verifyArtifacts({ storage, identityFile: identity, artifacts: refs, scratch })));
      } else {
        const rdb = refs.find((r) => r.name === "dump.rdb");
        if (!rdb) throw new IntegrityError(`backup ${row.backupId} has no dump.rdb artifact.`);
        checks.push(...(await redisEngine.verify({ storage, identityFile: identity, rdb, scratch })));
      }
    }
    await cat.recordVerification(c, row.backupId, { status: "passed", details: { checks } });
    if (row.recoveryPointEnd) m.lastVerified.set({ service }, row.recoveryPointEnd.getTime() / 1000);
    return { backupId: row.backupId, service, recoveryPoint: row.recoveryPointEnd?.toISOString() ?? null, passed: true, checks };
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const outside = outsideTheBackup(e, s.stateDir);
    if (outside) {
      // Nothing was learned about the backup: recording it failed would make recovery skip a
      // good backup (a verify in an image without pg_waldump once did exactly that).
      throw new Error(`verify of ${row.backupId} could not run, so the backup was not judged (its verify status is unchanged): ${outside}: ${(e as Error).message}`);
    }
    await cat.recordVerification(c, row.backupId, { status: "failed", details: { checks, error: (e as Error).message } });
    return { backupId: row.backupId, service, recoveryPoint: row.recoveryPointEnd?.toISOString() ?? null, passed: false, checks, error: (e as Error).message };
  }
}

/** Why `storage` does not hold the whole of a backup written elsewhere (its copies not all here yet), or undefined. */
async function notHeldHere(c: pg.Client, storage: Storage, row: cat.BackupRow, written: cat.ArtifactRow[]): Promise<string | undefined> {
  if (!row.storageRegion || (row.storageRegion === storage.region && row.storageBucket === storage.bucket)) return undefined;
  const held = await heldHere(c, storage, written);
  if (held.length === written.length) return undefined;
  return (
    `backup ${row.backupId} was written in region ${row.storageRegion} (bucket ${row.storageBucket}), and region ${storage.region} (bucket ${storage.bucket}) does not hold ${written[held.length]!.objectKey} yet ` +
    `(no copy recorded, and not that version): not judged, its verify status unchanged. Its copies are on their way: a later run verifies it here, or verify it in region ${row.storageRegion}`
  );
}

export interface PendingVerifySummary {
  service: string;
  verified: VerifySummary[];
  /** Backups written in another region whose copies have not all arrived here: left for a later run. */
  notHereYet: string[];
  /** Set when a verify could not run (storage unreachable, a tool missing): the rest wait for the next run. */
  stoppedBy?: string;
}

/**
 * Verifies the service's completed backups that no verify has judged yet, newest first (at most
 * `limit` per run), so a backup counts as good minutes after it completes instead of at the weekly
 * drill. A verify that cannot run stops the run and judges nothing more.
 */
export async function runPendingVerify(s: Settings, c: pg.Client, limit: number): Promise<PendingVerifySummary> {
  const pending = await cat.unverifiedBackups(c, s.service, { tenantId: s.tenantId, limit });
  const out: PendingVerifySummary = { service: s.service, verified: [], notHereYet: [] };
  for (const row of pending) {
    try {
      out.verified.push(await runVerify(s, c, row.backupId));
    } catch (e) {
      if (e instanceof NotHereYet) {
        out.notHereYet.push(e.message);
        continue;
      }
      out.stoppedBy = (e as Error).message;
      break;
    }
  }
  return out;
}
