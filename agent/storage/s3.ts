/**
 * S3 access for the agent. Every request is retried by the SDK for about 25 s (each retry
 * logged), long enough to ride over an S3 server restarting; streams go through lib-storage's
 * multipart Upload (each part retried so); small calls go once more through `withRetry`.
 * A connection that cannot be opened within 10 s, or that carries no byte for 5 min, fails
 * (and is retried): a black-holed endpoint never hangs a run that holds its service's lock.
 */
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type ObjectLockMode,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { ConfiguredRetryStrategy } from "@smithy/core/retry";
import type { Readable } from "node:stream";
import { AGENT_ENV } from "../../contract/index.js";
import { ConfigError, type Settings } from "../config.js";

export interface ObjectRef {
  bucket: string;
  key: string;
  versionId?: string;
}

export interface Lock {
  mode: ObjectLockMode;
  retainUntil: Date;
}

/** Errors worth retrying: throttling, 5xx, network resets. */
function transient(e: unknown): boolean {
  const err = e as { $metadata?: { httpStatusCode?: number }; name?: string; code?: string };
  const status = err.$metadata?.httpStatusCode;
  if (status !== undefined) return status >= 500 || status === 429;
  return ["ECONNRESET", "ECONNREFUSED", "ETIMEDOUT", "EPIPE", "TimeoutError", "NetworkingError"].includes(err.code ?? err.name ?? "");
}

/** How the SDK retries: attempts in all, the first delay, doubled each time up to the cap. */
export interface RetryPolicy {
  attempts: number;
  baseMs: number;
  capMs: number;
}
/** 0.5 + 1 + 2 + 4 + 8 + 8 s: an RGW or MinIO restart takes a few seconds to some tens. */
export const S3_RETRY: RetryPolicy = { attempts: 7, baseMs: 500, capMs: 8000 };

/** How long a request may go without a byte either way before it fails (and is retried). */
export const S3_IDLE_MS = 300_000;

/** The policy whose waits between attempts add up to at most `seconds` (24 s: S3_RETRY). */
export function retryWithin(seconds: number): RetryPolicy {
  let attempts = 1;
  let spent = 0;
  for (let d = S3_RETRY.baseMs; spent + d <= seconds * 1000; d = Math.min(S3_RETRY.capMs, d * 2)) {
    spent += d;
    attempts++;
  }
  return { ...S3_RETRY, attempts };
}

/**
 * The SDK's standard strategy with our delays, saying each retry on stderr (an outage is seen, not
 * silent). Once a request has used up its retries and none has succeeded since, the next ones'
 * retries are said once a minute only: a sidecar trying every second through a long outage says
 * the outage, not every attempt (its caller says what fails).
 */
type RetryArgs = Parameters<ConfiguredRetryStrategy["refreshRetryTokenForRetry"]>;
class LoggedRetry extends ConfiguredRetryStrategy {
  private gaveUp = false;
  private lastSaid = 0;
  constructor(
    private readonly endpoint: string,
    private readonly policy: RetryPolicy,
  ) {
    super(policy.attempts, (n) => Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, n - 1)));
  }
  override recordSuccess(token: Parameters<ConfiguredRetryStrategy["recordSuccess"]>[0]): void {
    this.gaveUp = false;
    super.recordSuccess(token);
  }
  override async refreshRetryTokenForRetry(token: RetryArgs[0], info: RetryArgs[1]): ReturnType<ConfiguredRetryStrategy["refreshRetryTokenForRetry"]> {
    let next;
    try {
      next = await super.refreshRetryTokenForRetry(token, info);
    } catch (e) {
      this.gaveUp = true;
      throw e;
    }
    if (this.gaveUp && Date.now() - this.lastSaid < 60_000) return next;
    this.lastSaid = Date.now();
    const e = info.error as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } } | undefined;
    const what = e?.$metadata?.httpStatusCode ? `HTTP ${e.$metadata.httpStatusCode} ${e.name ?? ""}` : `${e?.code ?? e?.name ?? "error"}: ${e?.message ?? ""}`;
    const n = next.getRetryCount();
    const waited = Math.min(this.policy.capMs, this.policy.baseMs * 2 ** (n - 1));
    process.stderr.write(`storage: ${this.endpoint} failed (${what.trim()}); retry ${n}/${this.policy.attempts - 1} after ${(waited / 1000).toFixed(1)} s\n`);
    return next;
  }
}

export async function withRetry<T>(what: string, fn: () => Promise<T>, attempts = 2, baseMs = 1000): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (i >= attempts || !transient(e)) throw e;
      const wait = baseMs * 2 ** (i - 1) * (0.5 + Math.random());
      process.stderr.write(`storage: ${what} failed (${(e as Error).name}: ${(e as Error).message}); retry ${i}/${attempts - 1} in ${Math.round(wait)} ms\n`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

/** The S3 error code of an SDK error and its HTTP status, e.g. "NoSuchVersion (HTTP 404)". */
export function s3ErrorCode(e: unknown): string {
  const err = e as { name?: string; Code?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const status = err.$metadata?.httpStatusCode;
  const named = err.Code ?? (err.name && !["UnknownError", "Error", "S3ServiceException"].includes(err.name) ? err.name : undefined);
  // A response without a body (HEAD, some servers' errors) leaves the SDK only the status.
  const byStatus = status === 404 ? "NoSuchKey or NoSuchVersion" : status === 403 ? "AccessDenied" : status === 400 ? "InvalidArgument" : undefined;
  return `${named ?? byStatus ?? err.code ?? err.name ?? "error"}${status ? ` (HTTP ${status})` : ""}`;
}

/**
 * A read that failed, naming the region, bucket, key, version and S3 error code. It keeps the
 * SDK error's status and code, so callers still tell an unreachable store from a missing object.
 */
export class StorageReadError extends Error {
  override name = "StorageReadError";
  readonly $metadata?: { httpStatusCode?: number };
  readonly code?: string;
  constructor(message: string, cause: unknown) {
    super(message, { cause });
    const c = cause as { $metadata?: { httpStatusCode?: number }; code?: string };
    this.$metadata = c.$metadata;
    this.code = c.code;
  }
}

export class Storage {
  readonly client: S3Client;
  constructor(
    readonly bucket: string,
    readonly endpoint: string,
    readonly region: string,
    accessKeyId: string,
    secretAccessKey: string,
    retry: RetryPolicy = S3_RETRY,
    idleMs = S3_IDLE_MS,
  ) {
    this.client = new S3Client({
      endpoint,
      region,
      forcePathStyle: true,
      credentials: { accessKeyId, secretAccessKey },
      retryStrategy: new LoggedRetry(endpoint, retry),
      // A store that takes a request and goes silent (a full Ceph cluster blocks every write) is
      // an error after `idleMs` without a byte, then retried. The SDK's requestTimeout bounds a
      // whole request (a 100 GB download included) and, unless told to throw, only warns.
      requestHandler: { connectionTimeout: 10_000, socketTimeout: idleMs },
      // RGW and MinIO both accept Content-MD5/no checksum; the SDK's default trailing CRC32 on
      // streamed bodies is not understood by every S3 server.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
  }

  static fromSettings(s: Settings): Storage {
    const endpoint = s.require("s3Endpoint");
    try {
      new URL(endpoint);
    } catch {
      throw new ConfigError(`${AGENT_ENV.s3Endpoint}='${endpoint}' is not a URL: give e.g. http://10.0.0.5:7480.`);
    }
    return new Storage(s.require("s3Bucket"), endpoint, s.get("s3Region") ?? "us-east-1", s.secret("s3AccessKey"), s.secret("s3SecretKey"), retryWithin(s.int("s3RetrySeconds")));
  }

  /** Streams `body` to `key` as a multipart upload; returns the new version id. */
  async upload(key: string, body: Readable, lock?: Lock, contentType = "application/octet-stream", metadata?: Record<string, string>): Promise<ObjectRef> {
    const up = new Upload({
      client: this.client,
      params: {
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentType: contentType,
        ...(metadata ? { Metadata: metadata } : {}),
        ...(lock ? { ObjectLockMode: lock.mode, ObjectLockRetainUntilDate: lock.retainUntil } : {}),
      },
      queueSize: 2,
      partSize: 8 * 1024 * 1024,
      leavePartsOnError: false,
    });
    try {
      const res = await up.done();
      return { bucket: this.bucket, key, versionId: (res as { VersionId?: string }).VersionId };
    } catch (e) {
      const err = e as Error & { code?: string; $metadata?: unknown };
      throw Object.assign(new Error(`upload of s3://${this.bucket}/${key} to ${this.endpoint} failed: ${err.message}`, { cause: e }), { name: err.name, code: err.code, $metadata: err.$metadata });
    }
  }

  async putSmall(key: string, body: string | Buffer, lock?: Lock, contentType = "application/json"): Promise<ObjectRef> {
    const res = await withRetry(`put ${key}`, () =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentType: contentType,
          ...(lock ? { ObjectLockMode: lock.mode, ObjectLockRetainUntilDate: lock.retainUntil } : {}),
        }),
      ),
    );
    return { bucket: this.bucket, key, versionId: res.VersionId };
  }

  async get(key: string, versionId?: string): Promise<{ body: Readable; size?: number }> {
    try {
      const res = await withRetry(`get ${key}`, () => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, VersionId: versionId })));
      return { body: res.Body as Readable, size: res.ContentLength };
    } catch (e) {
      const missing = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404;
      throw new StorageReadError(
        `cannot read s3://${this.bucket}/${key}${versionId ? ` version ${versionId}` : ""} in region ${this.region} (${this.endpoint}): ${s3ErrorCode(e)}` +
          `${(e as Error).message && !/^UnknownError$/.test((e as Error).message) ? `: ${(e as Error).message}` : ""}` +
          (missing && versionId ? `. A version id names one region's copy: reading another region's copy needs its own id (the replicator records it in the catalog's object_copy)` : ""),
        e,
      );
    }
  }

  async getText(key: string, versionId?: string): Promise<string> {
    const { body } = await this.get(key, versionId);
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  }

  async exists(key: string, versionId?: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, VersionId: versionId }));
      return true;
    } catch (e) {
      if ((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
      throw e;
    }
  }

  /** Whether this bucket holds that very version (a version id of another bucket is not here: 404, or 400 where the store cannot parse it). */
  async holdsVersion(key: string, versionId: string): Promise<boolean> {
    try {
      return await withRetry(`head ${key}`, () => this.exists(key, versionId));
    } catch (e) {
      if ((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 400) return false;
      throw e;
    }
  }

  /**
   * Without a version id: a delete marker (the locked version stays; the bucket's noncurrent
   * lifecycle rule removes it when its lock allows). With one: that version (object lock may refuse).
   */
  async deleteVersion(key: string, versionId?: string): Promise<void> {
    await withRetry(`delete ${key}`, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key, VersionId: versionId })));
  }

  /** Multipart uploads begun under `prefix` and neither completed nor aborted. */
  async *listUploads(prefix: string): AsyncGenerator<{ key: string; uploadId: string; initiated?: Date }> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const res = await withRetry(`list uploads ${prefix}`, () =>
        this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker })),
      );
      for (const u of res.Uploads ?? []) yield { key: u.Key!, uploadId: u.UploadId!, initiated: u.Initiated };
      if (!res.IsTruncated) return;
      keyMarker = res.NextKeyMarker;
      uploadIdMarker = res.NextUploadIdMarker;
    }
  }

  /** Drops an unfinished multipart upload and its parts. */
  async abortUpload(key: string, uploadId: string): Promise<void> {
    await withRetry(`abort upload ${key}`, () => this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId })));
  }

  /**
   * Current keys under `prefix`; with a delimiter, also the common prefixes one level down
   * (e.g. the generations `restic/<service>/g<N>/`). `max` stops early (an emptiness check).
   */
  async list(prefix: string, opts: { delimiter?: string; max?: number } = {}): Promise<{ keys: string[]; prefixes: string[] }> {
    const keys: string[] = [];
    const prefixes: string[] = [];
    let token: string | undefined;
    for (;;) {
      const res = await withRetry(`list ${prefix}`, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: opts.delimiter, ContinuationToken: token, MaxKeys: opts.max })),
      );
      keys.push(...(res.Contents ?? []).map((o) => o.Key!));
      prefixes.push(...(res.CommonPrefixes ?? []).map((p) => p.Prefix!));
      if (!res.IsTruncated || (opts.max !== undefined && keys.length + prefixes.length >= opts.max)) return { keys, prefixes };
      token = res.NextContinuationToken;
    }
  }

  /** Sizes of the current objects under `prefix`, by key. */
  async sizes(prefix: string): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    let token: string | undefined;
    for (;;) {
      const res = await withRetry(`list ${prefix}`, () => this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token })));
      for (const o of res.Contents ?? []) out.set(o.Key!, o.Size ?? 0);
      if (!res.IsTruncated) return out;
      token = res.NextContinuationToken;
    }
  }

  async *listVersions(prefix: string): AsyncGenerator<{ key: string; versionId?: string; size: number; lastModified?: Date; isLatest: boolean }> {
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    for (;;) {
      const res = await withRetry(`list ${prefix}`, () =>
        this.client.send(new ListObjectVersionsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker: keyMarker, VersionIdMarker: versionMarker })),
      );
      for (const v of res.Versions ?? []) {
        yield { key: v.Key!, versionId: v.VersionId, size: v.Size ?? 0, lastModified: v.LastModified, isLatest: v.IsLatest ?? false };
      }
      if (!res.IsTruncated) return;
      keyMarker = res.NextKeyMarker;
      versionMarker = res.NextVersionIdMarker;
    }
  }
}
