/**
 * `kryonix-dr s3 rewind`: puts a versioned bucket back as it was at a moment, after someone holding
 * its credentials (ransomware with a region's admin key, a bad script) deleted or overwrote its
 * objects. Object lock keeps every version the backups wrote; restic and the agent's listings read
 * only the newest one, so after such an attack the repositories and manifests look gone or damaged
 * although every byte is still in the bucket.
 *
 * For each key, the newest version written at or before the moment is made the current one again by
 * a server-side copy (the copy is a new version, locked by the bucket's default retention); a key
 * that did not exist then (never written, or deleted by then) is hidden behind a delete marker.
 * Nothing is deleted: every version written after the moment stays in the bucket as evidence.
 * Running it again changes nothing.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  UploadPartCopyCommand,
  type S3Client,
} from "@aws-sdk/client-s3";

/**
 * An S3 SDK error as a person reads it: its name, HTTP status and message. The SDK's message is
 * often just "UnknownError" for S3 servers that send no error body; it is left out then.
 */
export function s3ErrorText(err: unknown): string {
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  return `${e.name}${e.$metadata?.httpStatusCode ? ` (HTTP ${e.$metadata.httpStatusCode})` : ""}${e.message && e.message !== "UnknownError" && e.message !== e.name ? `: ${e.message}` : ""}`;
}

/** The copy's own metadata: the version it restored, so a second run knows it is done. */
const REWOUND_FROM = "kdr-rewound-from";

/** S3's limit for one CopyObject; larger objects are copied in parts. */
export const SINGLE_COPY_LIMIT = 5 * 1024 ** 3;

export interface RewindOptions {
  /** The moment to return to: the newest version written at or before it becomes current. */
  to: Date;
  /** Only keys under this prefix (a service's, say); the whole bucket by default. */
  prefix?: string;
  /** Says what would change and writes nothing. */
  dryRun?: boolean;
  /** Objects above this many bytes are copied in parts of this size (S3: 5 GiB for one copy). */
  partBytes?: number;
  /** One line now and then while it runs (every 500 keys), for a person watching. */
  progress?: (line: string) => void;
}

export interface RewindReport {
  bucket: string;
  to: string;
  prefix: string;
  dryRun: boolean;
  /** Keys looked at (every key with a version or a delete marker under the prefix). */
  keys: number;
  /** Already as they were at the moment (their current version is that one, or they were absent and still are). */
  unchanged: number;
  /** Made current again: their version at the moment, and what had been current. */
  restored: Array<{ key: string; version: string; replaced: string; bytes: number }>;
  /** Written after the moment only: hidden behind a delete marker. */
  hidden: string[];
}

interface Entry {
  versionId: string;
  lastModified: Date;
  isLatest: boolean;
  deleteMarker: boolean;
  size: number;
}

/** Every key's versions and delete markers, newest first, one key at a time in listing order. */
async function* keysWithVersions(client: S3Client, bucket: string, prefix: string): AsyncGenerator<[string, Entry[]]> {
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  let key: string | undefined;
  let entries: Entry[] = [];
  for (;;) {
    const res = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: prefix || undefined, KeyMarker: keyMarker, VersionIdMarker: versionMarker }));
    const page: Array<[string, Entry]> = [
      ...(res.Versions ?? []).map((v) => [v.Key!, { versionId: v.VersionId ?? "null", lastModified: v.LastModified!, isLatest: !!v.IsLatest, deleteMarker: false, size: v.Size ?? 0 }] as [string, Entry]),
      ...(res.DeleteMarkers ?? []).map((d) => [d.Key!, { versionId: d.VersionId ?? "null", lastModified: d.LastModified!, isLatest: !!d.IsLatest, deleteMarker: true, size: 0 }] as [string, Entry]),
    ];
    // The listing is by key; within a page, versions and delete markers come in two lists.
    page.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    for (const [k, e] of page) {
      if (key !== undefined && k !== key) {
        yield [key, entries];
        entries = [];
      }
      key = k;
      entries.push(e);
    }
    if (!res.IsTruncated) break;
    keyMarker = res.NextKeyMarker;
    versionMarker = res.NextVersionIdMarker;
  }
  if (key !== undefined) yield [key, entries];
}

/** CopySource names the key URL-encoded, segment by segment, with the version. */
const copySource = (bucket: string, key: string, versionId: string) =>
  `${bucket}/${key.split("/").map(encodeURIComponent).join("/")}?versionId=${encodeURIComponent(versionId)}`;

async function copyVersion(client: S3Client, bucket: string, key: string, v: Entry, partBytes: number): Promise<void> {
  const source = copySource(bucket, key, v.versionId);
  // The source's metadata is kept, with a mark of the version restored.
  const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key, VersionId: v.versionId }));
  const meta = { Metadata: { ...head.Metadata, [REWOUND_FROM]: v.versionId }, ContentType: head.ContentType };
  if (v.size <= partBytes) {
    await client.send(new CopyObjectCommand({ Bucket: bucket, Key: key, CopySource: source, MetadataDirective: "REPLACE", ...meta }));
    return;
  }
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ...meta }));
  try {
    const parts: Array<{ ETag: string; PartNumber: number }> = [];
    for (let start = 0, n = 1; start < v.size; start += partBytes, n++) {
      const end = Math.min(start + partBytes, v.size) - 1;
      const r = await client.send(new UploadPartCopyCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: n, CopySource: source, CopySourceRange: `bytes=${start}-${end}` }));
      parts.push({ ETag: r.CopyPartResult!.ETag!, PartNumber: n });
    }
    await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
  } catch (e) {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId })).catch(() => undefined);
    throw e;
  }
}

/** The current version is the moment's one, or a copy of it an earlier rewind made. */
async function isVersion(client: S3Client, bucket: string, key: string, current: Entry, then: Entry): Promise<boolean> {
  if (current.versionId === then.versionId) return true;
  if (current.deleteMarker || current.size !== then.size) return false;
  const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key, VersionId: current.versionId }));
  return head.Metadata?.[REWOUND_FROM] === then.versionId;
}

export async function rewindBucket(client: S3Client, bucket: string, o: RewindOptions): Promise<RewindReport> {
  const prefix = o.prefix ?? "";
  const partBytes = o.partBytes ?? SINGLE_COPY_LIMIT;
  const report: RewindReport = { bucket, to: o.to.toISOString(), prefix, dryRun: !!o.dryRun, keys: 0, unchanged: 0, restored: [], hidden: [] };
  const at = o.to.getTime();
  for await (const [key, entries] of keysWithVersions(client, bucket, prefix)) {
    report.keys++;
    entries.sort((a, b) => b.lastModified.getTime() - a.lastModified.getTime());
    const current = entries.find((e) => e.isLatest) ?? entries[0]!;
    // The key as it was at the moment: its newest entry then. A delete marker then means it was
    // absent (restic removes its lock files so): it must stay absent, not come back from an older version.
    const atMoment = entries.find((e) => e.lastModified.getTime() <= at);
    const then = atMoment && !atMoment.deleteMarker ? atMoment : undefined;
    try {
      if (then && (await isVersion(client, bucket, key, current, then))) report.unchanged++;
      else if (then) {
        if (!o.dryRun) await copyVersion(client, bucket, key, then, partBytes);
        report.restored.push({ key, version: then.versionId, replaced: current.deleteMarker ? "(deleted)" : current.versionId, bytes: then.size });
      } else if (current.deleteMarker) report.unchanged++;
      else {
        if (!o.dryRun) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
        report.hidden.push(key);
      }
    } catch (e) {
      throw new Error(
        `s3://${bucket}/${key}: ${then ? `copying version ${then.versionId} over the current one` : "hiding it behind a delete marker"} failed: ${s3ErrorText(e)}. ` +
          `${report.restored.length} key(s) restored and ${report.hidden.length} hidden so far, nothing deleted; the credentials need s3:ListBucketVersions, s3:GetObjectVersion, s3:PutObject and s3:DeleteObject on the bucket. Run the same command again: keys already done are left as they are.`,
      );
    }
    if (report.keys % 500 === 0) o.progress?.(`${report.keys} keys looked at: ${report.restored.length} ${o.dryRun ? "to restore" : "restored"}, ${report.hidden.length} ${o.dryRun ? "to hide" : "hidden"}`);
  }
  return report;
}

/** The end-of-run summary a person reads. */
export function describeRewind(r: RewindReport): string {
  const where = `s3://${r.bucket}/${r.prefix}`;
  const bytes = r.restored.reduce((n, x) => n + x.bytes, 0);
  const lines = [
    `${where} ${r.dryRun ? "would be rewound" : "rewound"} to ${r.to}: ${r.keys} key(s) looked at, ${r.unchanged} already as they were, ` +
      `${r.restored.length} ${r.dryRun ? "to restore" : "restored"} to their version at that moment (${(bytes / 1024 ** 2).toFixed(1)} MiB copied in the bucket), ` +
      `${r.hidden.length} written after it ${r.dryRun ? "to hide" : "hidden"} behind a delete marker.`,
  ];
  for (const x of r.restored.slice(0, 20)) lines.push(`  ${r.dryRun ? "would restore" : "restored"} ${x.key} (version ${x.version}; current was ${x.replaced})`);
  if (r.restored.length > 20) lines.push(`  ... and ${r.restored.length - 20} more restored`);
  for (const k of r.hidden.slice(0, 20)) lines.push(`  ${r.dryRun ? "would hide" : "hid"} ${k}`);
  if (r.hidden.length > 20) lines.push(`  ... and ${r.hidden.length - 20} more hidden`);
  lines.push(
    r.dryRun
      ? "Nothing was written (--dry-run)."
      : "Nothing was deleted: every version written after that moment is still in the bucket. Restore with --time at or before that moment.",
  );
  return lines.join("\n") + "\n";
}
