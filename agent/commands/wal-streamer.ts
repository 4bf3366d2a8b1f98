/** The PostgreSQL WAL streamer of a sidecar, recording every archived segment in the catalog. */
import * as cat from "../catalog.js";
import type { Settings } from "../config.js";
import * as pgEngine from "../engines/postgres.js";
import { m } from "../metrics.js";
import type { Storage } from "../storage/s3.js";
import { lockFor } from "./shared.js";

export async function startWalStreamer(s: Settings, storage: Storage, rcpt: { file: string; keyId: string }): Promise<pgEngine.WalStreamer> {
  const wc = await cat.connectCatalog(s);
  const tenantId = s.tenantId;
  const service = s.service;
  const streamer = new pgEngine.WalStreamer(
    s,
    storage,
    rcpt.file,
    {
      record: async (seg) => {
        await cat.recordWalSegment(wc, {
          tenantId,
          service,
          timeline: seg.timeline,
          segmentName: seg.segment,
          objectKey: seg.key,
          versionId: seg.versionId,
          sha256: seg.sha256,
          sizeBytes: seg.storedBytes,
          rawSize: seg.rawBytes,
          coversUntil: seg.completedAt,
          encryptionKeyId: rcpt.keyId,
        });
        m.walSegments.inc({ service });
      },
    },
    () => lockFor(s, "wal"),
  );
  const stop = streamer.stop.bind(streamer);
  streamer.stop = async () => {
    await stop();
    await wc.end().catch(() => undefined);
  };
  await streamer.start();
  return streamer;
}
