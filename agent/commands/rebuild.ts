/**
 * `kdr-agent catalog rebuild`: the catalog's backups and WAL segments from one region's bucket
 * alone, with that region's version ids. Every completed backup left its manifest (kdr-manifest/2
 * carries its catalog row) and every WAL segment its descriptor, each closed by its own SHA-256.
 *
 * - A manifest or descriptor that is cut short, altered, or names an object the bucket does not
 *   hold (half-written, or not replicated yet) is skipped and named; nothing of it is recorded.
 * - A backup or segment the catalog already holds is left as it is. When the catalog knows it by
 *   another version id (it was written in the other region), this region's copy is recorded in
 *   object_copy, so a restore from this region finds it.
 * - Nothing is ever deleted, and a second run changes nothing.
 */
import type pg from "pg";
import * as cat from "../catalog.js";
import type { Settings } from "../config.js";
import { log } from "../storage/progress.js";
import { Storage } from "../storage/s3.js";
import { manifestArtifact, openManifest, openWalDescriptor, WAL_DESCRIPTOR_SUFFIX, type Manifest } from "./shared.js";

const MANIFEST_KEY = /^(?:(?:full|incremental|logical)\/([^/]+)\/[0-9a-f-]{36}\/manifest\.json|restic\/([^/]+)\/kdr-manifests\/[0-9a-f-]{36}\.json)$/;
const WAL_DESCRIPTOR_KEY = /^wal\/([^/]+)\/.+\.kdr\.json$/;

export interface RebuildSummary {
  region: string;
  endpoint: string;
  bucket: string;
  /** completed: rows the catalog held pending or running whose manifest proves they completed. */
  backups: { inserted: number; known: number; completed: number };
  walSegments: { inserted: number; known: number };
  /** This region's copies of objects the catalog knew by another version id. */
  copiesRecorded: number;
  /** service and createdAt: from a readable manifest whose objects are missing (a backup in flight when its region went). */
  skipped: { key: string; reason: string; service?: string; createdAt?: string }[];
}

interface Latest {
  versionId?: string;
  size: number;
}

/**
 * The catalog row a kdr-manifest/2 carries, as the catalog takes it: with the version id each
 * object has where it is read (`versionOf`), the manifest itself as the last artifact.
 */
export function rowFromManifest(
  m: Manifest & { catalog: NonNullable<Manifest["catalog"]> },
  key: string,
  body: string,
  where: { bucket: string; region: string },
  versionOf: (key: string) => string | null | undefined,
  manifestVersion: string | undefined,
  metadata: Record<string, unknown>,
): cat.RebuiltBackupInput {
  const row = m.catalog;
  const artifacts = [...row.artifacts.map((a) => ({ ...a, versionId: versionOf(a.objectKey) ?? null })), manifestArtifact(key, manifestVersion, body)];
  const manifestBytes = m.engine === "volume" ? 0 : Buffer.byteLength(body);
  return {
    backupId: m.backupId,
    tenantId: row.tenantId,
    service: m.service,
    engine: m.engine as cat.RebuiltBackupInput["engine"],
    type: m.type as cat.RebuiltBackupInput["type"],
    bucket: where.bucket,
    prefix: row.prefix,
    region: where.region,
    rawSize: row.rawSize,
    storedSize: row.storedSize + manifestBytes,
    recoveryPointStart: new Date(m.recoveryPoint.start),
    recoveryPointEnd: new Date(m.recoveryPoint.end),
    timeline: row.timeline,
    startLsn: row.startLsn,
    endLsn: row.endLsn,
    checksum: row.checksum ?? artifacts.at(-1)!.sha256,
    tool: m.tool,
    toolVersion: m.toolVersion,
    encryptionKeyId: m.keyId,
    parentBackupId: row.parentBackupId,
    retentionUntil: new Date(row.retentionUntil),
    completedAt: new Date(m.createdAt),
    metadata: { ...row.metadata, ...metadata },
    artifacts,
  };
}

export async function runRebuild(s: Settings, c: pg.Client, opts: { service?: string } = {}): Promise<RebuildSummary> {
  const storage = Storage.fromSettings(s);
  const sum: RebuildSummary = {
    region: storage.region,
    endpoint: storage.endpoint,
    bucket: storage.bucket,
    backups: { inserted: 0, known: 0, completed: 0 },
    walSegments: { inserted: 0, known: 0 },
    copiesRecorded: 0,
    skipped: [],
  };
  const skip = (key: string, reason: string, of?: { service: string; createdAt: string }) => {
    sum.skipped.push({ key, reason, ...(of && { service: of.service, createdAt: of.createdAt }) });
    log(`catalog rebuild: skipped ${key}: ${reason}`);
  };
  const latest = new Map<string, Latest>();
  for await (const v of storage.listVersions("")) if (v.isLatest) latest.set(v.key, { versionId: v.versionId, size: v.size });
  const wanted = (service: string | undefined) => service !== undefined && (!opts.service || service === opts.service);
  log(`catalog rebuild: ${latest.size} object(s) in s3://${storage.bucket} (region ${storage.region}, ${storage.endpoint})`);

  const copy = async (key: string, sourceBucket: string | undefined, catalogVersion: string | null, here: Latest) => {
    if (!catalogVersion || !here.versionId || catalogVersion === here.versionId) return;
    await cat.recordCopy(c, { endpoint: storage.endpoint, region: storage.region, bucket: storage.bucket, key, sourceBucket, sourceVersionId: catalogVersion, copyVersionId: here.versionId, sizeBytes: here.size });
    sum.copiesRecorded++;
  };

  // Backups, parents before the incrementals that name them.
  const found: { key: string; body: string; m: Manifest & { catalog: NonNullable<Manifest["catalog"]> } }[] = [];
  for (const [key, v] of latest) {
    const k = MANIFEST_KEY.exec(key);
    if (!k || !wanted(k[1] ?? k[2])) continue;
    let body: string;
    let m: Manifest;
    try {
      body = await storage.getText(key, v.versionId);
      m = openManifest(body, `s3://${storage.bucket}/${key}`);
    } catch (e) {
      skip(key, (e as Error).message);
      continue;
    }
    if (!m.catalog) {
      skip(key, `a ${m.format} manifest does not carry its catalog row (kdr-manifest/2 does): this backup cannot be rebuilt; newer backups of ${m.service} can`);
      continue;
    }
    const missing = m.catalog.artifacts.filter((a) => !latest.has(a.objectKey)).map((a) => a.objectKey);
    if (missing.length) {
      skip(key, `the bucket does not hold ${missing.join(", ")} (half-written, or not replicated yet)`, m);
      continue;
    }
    found.push({ key, body, m: m as (typeof found)[number]["m"] });
  }
  found.sort((a, b) => Date.parse(a.m.createdAt) - Date.parse(b.m.createdAt));
  for (const { key, body, m } of found) {
    const here = latest.get(key)!;
    const input = rowFromManifest(m, key, body, { bucket: storage.bucket, region: storage.region }, (k) => latest.get(k)!.versionId, here.versionId, {
      rebuiltFrom: { region: storage.region, bucket: storage.bucket },
    });
    const existing = await cat.getBackup(c, m.backupId);
    if (existing && (existing.backupStatus === "pending" || existing.backupStatus === "running")) {
      // The manifest is written last: the run completed after the catalog last heard of it.
      try {
        const was = await cat.completeRebuiltBackup(c, input);
        if (was) {
          sum.backups.completed++;
          log(`catalog rebuild: backup ${m.backupId} of ${m.service} was ${was} in the catalog, but its manifest ${key} proves it completed: completed from the manifest`);
          continue;
        }
      } catch (e) {
        skip(key, `the catalog refused to complete it from its manifest: ${(e as Error).message}`);
        continue;
      }
    }
    if (existing) {
      sum.backups.known++;
      for (const a of await cat.listArtifacts(c, m.backupId)) {
        const h = latest.get(a.objectKey);
        if (h) await copy(a.objectKey, existing.storageBucket, a.versionId, h);
      }
      continue;
    }
    try {
      await cat.insertRebuiltBackup(c, input);
      sum.backups.inserted++;
    } catch (e) {
      skip(key, `the catalog refused it: ${(e as Error).message}`);
    }
  }

  // WAL segments.
  const known = new Map<string, cat.WalSegmentRow>();
  const knownFor = new Set<string>();
  for (const [key, v] of latest) {
    const k = WAL_DESCRIPTOR_KEY.exec(key);
    if (!k || !wanted(k[1])) continue;
    let d;
    try {
      d = openWalDescriptor(await storage.getText(key, v.versionId), `s3://${storage.bucket}/${key}`);
    } catch (e) {
      skip(key, (e as Error).message);
      continue;
    }
    if (d.objectKey !== key.slice(0, -WAL_DESCRIPTOR_SUFFIX.length)) {
      skip(key, `it describes ${d.objectKey}, not the segment it is stored beside`);
      continue;
    }
    const seg = latest.get(d.objectKey);
    if (!seg) {
      skip(key, `the bucket does not hold its segment ${d.objectKey} (half-written, or not replicated yet)`);
      continue;
    }
    const scope = `${d.tenantId}/${d.service}`;
    if (!knownFor.has(scope)) {
      knownFor.add(scope);
      for (const w of await cat.listWalSegments(c, d.service, { tenantId: d.tenantId })) known.set(`${scope}/${w.timeline}/${w.segmentName}`, w);
    }
    const have = known.get(`${scope}/${d.timeline}/${d.segmentName}`);
    if (have) {
      sum.walSegments.known++;
      if (have.sha256 === d.sha256 && have.objectKey === d.objectKey) await copy(d.objectKey, undefined, have.versionId, seg);
      else skip(key, `the catalog holds ${d.segmentName} with SHA-256 ${have.sha256}, this region's copy has ${d.sha256}: left as the catalog has it`);
      continue;
    }
    try {
      const r = await cat.recordWalSegment(c, { ...d, coversUntil: new Date(d.coversUntil), versionId: seg.versionId ?? null, encryptionKeyId: d.encryptionKeyId ?? undefined });
      if (r.inserted) sum.walSegments.inserted++;
      else sum.walSegments.known++;
    } catch (e) {
      skip(key, `the catalog refused it: ${(e as Error).message}`);
    }
  }
  log(
    `catalog rebuild from s3://${storage.bucket} (region ${storage.region}): backups ${sum.backups.inserted} added, ${sum.backups.completed} completed from their manifests, ${sum.backups.known} already known; ` +
      `WAL segments ${sum.walSegments.inserted} added, ${sum.walSegments.known} already known; ${sum.copiesRecorded} copy version(s) of this region recorded; ${sum.skipped.length} skipped`,
  );
  return sum;
}
