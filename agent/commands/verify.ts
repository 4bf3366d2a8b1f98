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
import { Storage } from "../storage/s3.js";
import { identityFor, inRegionOf, loadManifest, outsideTheBackup } from "./shared.js";
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

export async function runVerify(s: Settings, c: pg.Client, backupId?: string): Promise<VerifySummary> {
  const service = s.service;
  const engine = s.engine;
  const tenantId = s.tenantId;
  const row = backupId ? await cat.getBackup(c, backupId) : await cat.latestGoodBackup(c, service, { tenantId, type: ["full", "incremental"] });
  if (!row) throw new ConfigError(backupId ? `backup ${backupId} is not in the catalog.` : `no completed backup of '${service}' to verify: run a backup first.`);
  if (row.backupStatus !== "completed") throw new ConfigError(`backup ${row.backupId} is ${row.backupStatus}; only completed backups can be verified.`);
  const storage = Storage.fromSettings(s);
  const scratch = path.join(s.stateDir, "scratch");
  mkdirSync(scratch, { recursive: true });
  const checks: string[] = [];
  // A missing or wrong key says nothing about the backup: it is a configuration error, not a verify result.
  const identity = engine === "volume" ? "" : identityFor(s, row.encryptionKeyId);
  try {
    const arts = await inRegionOf(c, storage, await cat.listArtifacts(c, row.backupId));
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

export interface PendingVerifySummary {
  service: string;
  verified: VerifySummary[];
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
  const out: PendingVerifySummary = { service: s.service, verified: [] };
  for (const row of pending) {
    try {
      out.verified.push(await runVerify(s, c, row.backupId));
    } catch (e) {
      out.stoppedBy = (e as Error).message;
      break;
    }
  }
  return out;
}
