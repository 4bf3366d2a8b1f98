/** The PostgreSQL WAL streamer of a sidecar, recording every archived segment in the catalog. */
import * as cat from "../catalog.js";
import type { Settings } from "../config.js";
import { WalStreamer } from "../engines/postgres-wal.js";
import { m } from "../metrics.js";
import { log } from "../storage/progress.js";
import type { Storage } from "../storage/s3.js";
import { lockFor, sealWalDescriptor, WAL_DESCRIPTOR_SUFFIX, type WalDescriptor } from "./shared.js";

/** The streamer, and the loss of its own catalog connection (its segments cannot be recorded after it). */
export async function startWalStreamer(s: Settings, storage: Storage, rcpt: { file: string; keyId: string }): Promise<WalStreamer & { catalogLost: Promise<string> }> {
  const wc = await cat.connectCatalog(s);
  const catalogLost = cat.catalogLost(wc);
  const tenantId = s.tenantId;
  const service = s.service;
  const streamer = new WalStreamer(
    s,
    storage,
    rcpt.file,
    {
      record: async (seg) => {
        const row = {
          tenantId,
          service,
          timeline: seg.timeline,
          segmentName: seg.segment,
          objectKey: seg.key,
          versionId: seg.versionId,
          sha256: seg.sha256,
          sizeBytes: seg.storedBytes,
          rawSize: seg.rawBytes,
          rawSha256: seg.rawSha256,
          coversUntil: seg.coversUntil,
          encryptionKeyId: rcpt.keyId,
        };
        // The segment's row, beside it in the bucket: a region's bucket alone rebuilds the catalog.
        const { versionId: _v, ...described } = row;
        const descriptor: WalDescriptor = { ...described, format: "kdr-wal/1", rawSize: seg.rawBytes ?? null, coversUntil: seg.coversUntil.toISOString() };
        await storage.putSmall(`${seg.key}${WAL_DESCRIPTOR_SUFFIX}`, sealWalDescriptor(descriptor), lockFor(s, "wal"));
        const r = await cat.recordWalSegment(wc, row);
        if (!r.inserted && !seg.segment.endsWith(".partial") && r.segment.objectKey === row.objectKey && r.segment.versionId !== row.versionId) {
          log(`wal ${service}: ${seg.segment} was archived already with the same content (streamed again after a restart); the first upload stays the archived one`);
        }
        m.walSegments.inc({ service });
      },
    },
    () => lockFor(s, "wal"),
    await cat.newestWalCoverage(wc, service, tenantId),
  );
  const stop = streamer.stop.bind(streamer);
  streamer.stop = async () => {
    await stop();
    await cat.closeCatalog(wc);
  };
  await streamer.start();
  return Object.assign(streamer, { catalogLost });
}
