/**
 * The S3 user policies the BackupStorage component declares, enforced by a real RGW: each one is
 * attached to a fresh user exactly as generated, and every allowed and every forbidden call is
 * made against a versioned, object-locked bucket. The Pulumi graph tests only see the documents;
 * this proves what a leaked sidecar, prune or restore key can and cannot do.
 */
import {
  AbortMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  GetObjectRetentionCommand,
  PutObjectLegalHoldCommand,
  PutObjectLockConfigurationCommand,
  PutObjectRetentionCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prunePolicy, replicationTargetPolicy, restorePolicy, sidecarPolicy, type StorageService } from "../../components/backup-storage.js";
import { readPlatform } from "../../local/platform.js";
import { putUserPolicy } from "../../local/mappings/minio.js";
import { rgwAdmin, type S3Connection } from "../../local/rgw.js";
import { makeBucket, s3Client, type TestBucket } from "../support/s3.js";

const retention = { fullDays: 7, incrementalDays: 3, walDays: 3 };
const DB: StorageService = { name: "db", tier: "critical", engine: "postgres", retention };
const FILES: StorageService = { name: "files", tier: "critical", engine: "volume", retention };

const region = readPlatform().regions.primary;
const admin: S3Connection = { endpoint: region.loopbackEndpoint, region: region.name, accessKey: region.accessKey, secretKey: region.secretKey };
let bucket: TestBucket;
/** A second bucket with a default retention, for the lock cases (the first stays unlocked so the policy alone is tested). */
let locked: TestBucket;
const users: string[] = [];
const clients: S3Client[] = [];

/** A new RGW user holding just `policy`, and an S3 client logged in as it. */
async function userWith(role: string, policy: string): Promise<S3Client> {
  const uid = `kdrtest-pol-${role}-${randomBytes(3).toString("hex")}`;
  const secret = randomBytes(24).toString("base64url");
  await rgwAdmin(admin, "PUT", "user", { uid, "display-name": uid, "access-key": uid, "secret-key": secret, "key-type": "s3", "generate-key": "false" });
  users.push(uid);
  // As the local deployer attaches it: actions RGW does not implement (s3:ReplicateObject ...) are left out.
  await putUserPolicy(admin, uid, role, policy);
  const c = s3Client(region.loopbackEndpoint, region.name, uid, secret);
  clients.push(c);
  return c;
}

const denied = { name: "AccessDenied" };
const put = (c: S3Client, Key: string) => c.send(new PutObjectCommand({ Bucket: bucket.bucket, Key, Body: "x" }));

beforeAll(async () => {
  bucket = await makeBucket("kdrtest-pol");
  locked = await makeBucket("kdrtest-pol-lock");
});

afterAll(async () => {
  for (const c of clients) c.destroy();
  for (const uid of users) await rgwAdmin(admin, "DELETE", "user", { uid, "purge-data": "false" }).catch(() => undefined);
  await bucket?.remove();
  await locked?.remove();
});

describe("component S3 policies on a real RGW", () => {
  it("a PostgreSQL sidecar writes and reads its own prefixes, and nothing else; it cannot delete, unlock or list others", async () => {
    const s = await userWith("sidecar-db", sidecarPolicy(bucket.bucket, DB));
    const own = await put(s, "full/db/b1/base.tar.zst.age");
    expect(own.VersionId).toBeTruthy();
    await put(s, "wal/db/000000010000000000000001.zst.age");
    expect(await (await s.send(new GetObjectCommand({ Bucket: bucket.bucket, Key: "full/db/b1/base.tar.zst.age" }))).Body!.transformToString()).toBe("x");
    expect((await s.send(new ListObjectsV2Command({ Bucket: bucket.bucket, Prefix: "full/db/" }))).KeyCount).toBe(1);

    await expect(put(s, "full/files/b1/x")).rejects.toMatchObject(denied);
    await expect(put(s, "top-level")).rejects.toMatchObject(denied);
    await expect(s.send(new ListObjectsV2Command({ Bucket: bucket.bucket, Prefix: "full/files/" }))).rejects.toMatchObject(denied);
    await expect(s.send(new ListObjectsV2Command({ Bucket: bucket.bucket }))).rejects.toMatchObject(denied);
    await expect(s.send(new DeleteObjectCommand({ Bucket: bucket.bucket, Key: "full/db/b1/base.tar.zst.age" }))).rejects.toMatchObject(denied);
    await expect(s.send(new DeleteObjectCommand({ Bucket: bucket.bucket, Key: "full/db/b1/base.tar.zst.age", VersionId: own.VersionId }))).rejects.toMatchObject(denied);
  });

  it("a sidecar's upload is locked by the bucket default, and the sidecar can neither change, shorten, lift nor delete through that lock", async () => {
    // As in production: the tier bucket carries a default GOVERNANCE retention; sidecars send no
    // lock headers. The sidecar owns what it uploaded, which RGW's ACL fallback would honour.
    await locked.client.send(
      new PutObjectLockConfigurationCommand({ Bucket: locked.bucket, ObjectLockConfiguration: { ObjectLockEnabled: "Enabled", Rule: { DefaultRetention: { Mode: "GOVERNANCE", Days: 1 } } } }),
    );
    const s = await userWith("sidecar-db-lock", sidecarPolicy(locked.bucket, DB));
    const Key = "full/db/b2/base.tar.zst.age";
    const v = await s.send(new PutObjectCommand({ Bucket: locked.bucket, Key, Body: "x" }));
    // Read back as the uploader: on RGW the object is the sidecar user's, not the bucket owner's.
    const held = await s.send(new GetObjectRetentionCommand({ Bucket: locked.bucket, Key, VersionId: v.VersionId }));
    expect(held.Retention?.Mode).toBe("GOVERNANCE");
    const attempt = (p: Promise<unknown>) => p.then(() => "done", (e: Error) => e.name);
    const retain = (d: Date, bypass: boolean) =>
      s.send(new PutObjectRetentionCommand({ Bucket: locked.bucket, Key, VersionId: v.VersionId, Retention: { Mode: "GOVERNANCE", RetainUntilDate: d }, BypassGovernanceRetention: bypass }));
    const outcome = {
      shorten: await attempt(retain(new Date(Date.now() + 60_000), false)),
      shortenWithBypass: await attempt(retain(new Date(Date.now() + 60_000), true)),
      legalHold: await attempt(s.send(new PutObjectLegalHoldCommand({ Bucket: locked.bucket, Key, VersionId: v.VersionId, LegalHold: { Status: "ON" } }))),
      deleteVersionWithBypass: await attempt(s.send(new DeleteObjectCommand({ Bucket: locked.bucket, Key, VersionId: v.VersionId, BypassGovernanceRetention: true }))),
    };
    expect(outcome).toEqual({ shorten: "AccessDenied", shortenWithBypass: "AccessDenied", legalHold: "AccessDenied", deleteVersionWithBypass: "AccessDenied" });
    const after = await s.send(new GetObjectRetentionCommand({ Bucket: locked.bucket, Key, VersionId: v.VersionId }));
    expect(after.Retention?.RetainUntilDate).toEqual(held.Retention?.RetainUntilDate);
  });

  it("a sidecar aborts its own unfinished uploads and no one else's", async () => {
    const s = await userWith("sidecar-db-mpu", sidecarPolicy(bucket.bucket, DB));
    const mine = await s.send(new CreateMultipartUploadCommand({ Bucket: bucket.bucket, Key: "full/db/dead/x" }));
    const theirs = await bucket.client.send(new CreateMultipartUploadCommand({ Bucket: bucket.bucket, Key: "full/files/dead/x" }));
    const listed = (await s.send(new ListMultipartUploadsCommand({ Bucket: bucket.bucket, Prefix: "full/db/" }))).Uploads ?? [];
    expect(listed.map((u) => u.Key)).toEqual(["full/db/dead/x"]);
    await expect(s.send(new AbortMultipartUploadCommand({ Bucket: bucket.bucket, Key: "full/files/dead/x", UploadId: theirs.UploadId }))).rejects.toMatchObject(denied);
    await s.send(new AbortMultipartUploadCommand({ Bucket: bucket.bucket, Key: "full/db/dead/x", UploadId: mine.UploadId }));
    await bucket.client.send(new AbortMultipartUploadCommand({ Bucket: bucket.bucket, Key: "full/files/dead/x", UploadId: theirs.UploadId }));
  });

  it("a volume sidecar may delete restic's lock files and nothing else", async () => {
    const s = await userWith("sidecar-files", sidecarPolicy(bucket.bucket, FILES));
    await put(s, "restic/files/g1/locks/abc");
    await put(s, "restic/files/g1/data/00/pack");
    await s.send(new DeleteObjectCommand({ Bucket: bucket.bucket, Key: "restic/files/g1/locks/abc" }));
    await expect(s.send(new DeleteObjectCommand({ Bucket: bucket.bucket, Key: "restic/files/g1/data/00/pack" }))).rejects.toMatchObject(denied);
    await expect(put(s, "restic/db/g1/locks/abc")).rejects.toMatchObject(denied);
  });

  it("prune adds delete markers but cannot remove a version or write outside restic/", async () => {
    const writer = await put(bucket.client, "full/db/old/base.tar.zst.age");
    const p = await userWith("prune", prunePolicy([bucket.bucket]));
    const marker = await p.send(new DeleteObjectCommand({ Bucket: bucket.bucket, Key: "full/db/old/base.tar.zst.age" }));
    expect(marker.DeleteMarker).toBe(true);
    // No lock holds this version, so only the policy stands between prune and the data.
    await expect(p.send(new DeleteObjectCommand({ Bucket: bucket.bucket, Key: "full/db/old/base.tar.zst.age", VersionId: writer.VersionId }))).rejects.toMatchObject(denied);
    await expect(put(p, "full/db/new/x")).rejects.toMatchObject(denied);
    await put(p, "restic/files/index/rewritten");
  });

  it("the replication writer copies with a lock but cannot shorten or delete through it", async () => {
    const r = await userWith("replication", replicationTargetPolicy([locked.bucket]));
    const Key = "full/db/b3/base.tar.zst.age";
    const until = new Date(Date.now() + 3600_000);
    const v = await r.send(new PutObjectCommand({ Bucket: locked.bucket, Key, Body: "copy", ObjectLockMode: "GOVERNANCE", ObjectLockRetainUntilDate: until }));
    const attempt = (p: Promise<unknown>) => p.then(() => "done", (e: Error) => e.name);
    const outcome = {
      shortenWithBypass: await attempt(
        r.send(new PutObjectRetentionCommand({ Bucket: locked.bucket, Key, VersionId: v.VersionId, Retention: { Mode: "GOVERNANCE", RetainUntilDate: new Date(Date.now() + 60_000) }, BypassGovernanceRetention: true })),
      ),
      deleteVersionWithBypass: await attempt(r.send(new DeleteObjectCommand({ Bucket: locked.bucket, Key, VersionId: v.VersionId, BypassGovernanceRetention: true }))),
      delete: await attempt(r.send(new DeleteObjectCommand({ Bucket: locked.bucket, Key }))),
    };
    expect(outcome).toEqual({ shortenWithBypass: "AccessDenied", deleteVersionWithBypass: "AccessDenied", delete: "AccessDenied" });
    expect((await r.send(new GetObjectRetentionCommand({ Bucket: locked.bucket, Key, VersionId: v.VersionId }))).Retention?.RetainUntilDate).toEqual(until);
  });

  it("restore reads everything and changes nothing", async () => {
    const r = await userWith("restore", restorePolicy([bucket.bucket]));
    expect(await (await r.send(new GetObjectCommand({ Bucket: bucket.bucket, Key: "wal/db/000000010000000000000001.zst.age" }))).Body!.transformToString()).toBe("x");
    expect((await r.send(new ListObjectsV2Command({ Bucket: bucket.bucket }))).KeyCount).toBeGreaterThan(0);
    await expect(put(r, "full/db/x")).rejects.toMatchObject(denied);
    await expect(r.send(new DeleteObjectCommand({ Bucket: bucket.bucket, Key: "wal/db/000000010000000000000001.zst.age" }))).rejects.toMatchObject(denied);
  });
});
