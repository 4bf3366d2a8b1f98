/**
 * @pulumi/minio 0.17.1 resources on a Ceph RGW endpoint. Production targets MinIO; RGW is the
 * S3 server these machines can run (MinIO is AGPL). Where the two differ, the mapping says how:
 * - Users: MinIO users are access keys; an RGW user is created through the admin ops API with
 *   access key = the MinIO user name and the given (or generated) secret, as the provider does.
 * - Policies: RGW (Pacific) has no managed IAM policies, only inline user policies. An IamPolicy
 *   is therefore kept by the deployer and written as an inline user policy (same name, same
 *   document) when an IamUserPolicyAttachment attaches it. RGW evaluates inline user policies
 *   on every S3 request, so least privilege is enforced, not just recorded.
 * - Quota: the admin ops bucket quota (max_size in bytes).
 */
import { randomBytes } from "node:crypto";
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteBucketLifecycleCommand,
  DeleteBucketPolicyCommand,
  DeleteObjectsCommand,
  ListObjectVersionsCommand,
  PutBucketAclCommand,
  PutBucketEncryptionCommand,
  PutBucketLifecycleConfigurationCommand,
  PutBucketPolicyCommand,
  PutBucketVersioningCommand,
  DeleteBucketEncryptionCommand,
  type LifecycleRule,
  type BucketCannedACL,
} from "@aws-sdk/client-s3";
import { rgwAdmin, rgwIam, RgwError, s3Client, type S3Connection } from "../rgw.js";
import { autoName, bucketConfigTurns, type Mapping } from "./types.js";

type Obj = Record<string, any>;

/** `pulumi:providers:minio` inputs (or `minio:*` config) as an S3 connection. */
export function minioConnection(p: Record<string, unknown>): S3Connection {
  const server = p.minioServer as string | undefined;
  const accessKey = (p.minioUser ?? p.minioAccessKey) as string | undefined;
  const secretKey = (p.minioPassword ?? p.minioSecretKey) as string | undefined;
  const missing = [!server && "minioServer", !accessKey && "minioUser", !secretKey && "minioPassword"].filter(Boolean);
  if (missing.length > 0) {
    throw new Error(`The minio provider has no ${missing.join(", ")}: give the program a minio.Provider with them, or set minio:${missing[0]} in the stack config.`);
  }
  const ssl = p.minioSsl === true || p.minioSsl === "true";
  return {
    endpoint: `${ssl ? "https" : "http"}://${server}`,
    region: (p.minioRegion as string | undefined) ?? "us-east-1",
    accessKey: accessKey!,
    secretKey: secretKey!,
  };
}

async function withS3<T>(provider: Record<string, unknown>, fn: (c: ReturnType<typeof s3Client>, conn: S3Connection) => Promise<T>): Promise<T> {
  const conn = minioConnection(provider);
  const client = s3Client(conn);
  try {
    return await fn(client, conn);
  } finally {
    client.destroy();
  }
}

const isGone = (err: unknown) => {
  const e = err as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === "NoSuchBucket" || e?.Code === "NoSuchBucket" || e?.$metadata?.httpStatusCode === 404 || (err instanceof RgwError && err.status === 404);
};

async function ignoreGone(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!isGone(err)) throw err;
  }
}

export const bucket: Mapping<Obj> = {
  plan: (i, reg) => {
    const name = i.bucket ?? `${i.bucketPrefix ?? reg.name}`;
    return { bucket: name, arn: `arn:aws:s3:::${name}`, acl: i.acl ?? "private" };
  },
  type: "minio:index/s3Bucket:S3Bucket",
  async create(i, ctx, reg) {
    return bucketConfigTurns.run(async () => {
      const name: string = i.bucket ?? (i.bucketPrefix ? `${i.bucketPrefix}${randomBytes(4).toString("hex")}` : autoName(reg.name, undefined));
      return withS3(ctx.provider, async (s3, conn) => {
        await s3.send(new CreateBucketCommand({ Bucket: name, ObjectLockEnabledForBucket: i.objectLocking === true }));
        const record = { bucket: name, forceDestroy: i.forceDestroy === true };
        try {
          const acl = (i.acl ?? "private") as BucketCannedACL;
          if (acl !== "private") await s3.send(new PutBucketAclCommand({ Bucket: name, ACL: acl }));
          if (i.quota !== undefined && i.quota !== null) {
            const info = await rgwAdmin<{ owner: string }>(conn, "GET", "bucket", { bucket: name });
            // As query arguments: this RGW answers 501 to the JSON-body form. Pacific reads the size
            // in KiB, later releases in bytes (and let KiB override), so both are sent.
            const bytes = Number(i.quota);
            await rgwAdmin(conn, "PUT", "bucket", {
              quota: "",
              uid: info.owner,
              bucket: name,
              enabled: "true",
              "max-size": String(bytes),
              "max-size-kb": String(Math.ceil(bytes / 1024)),
              "max-objects": "-1",
            });
          }
        } catch (err) {
          throw Object.assign(err as Error, { created: record });
        }
        return {
          id: name,
          state: { bucket: name, arn: `arn:aws:s3:::${name}`, bucketDomainName: `${conn.endpoint}/${name}`, acl: i.acl ?? "private" },
          record,
        };
      });
    });
  },
  async destroy(rec, provider) {
    await withS3(provider, async (s3) => {
      const name = String(rec.bucket);
      if (rec.forceDestroy) {
        // forceDestroy: remove every version and delete marker first; governance locks are
        // bypassed (the admin may), compliance locks are not and make this fail loudly.
        for (;;) {
          let page;
          try {
            page = await s3.send(new ListObjectVersionsCommand({ Bucket: name, MaxKeys: 1000 }));
          } catch (err) {
            if (isGone(err)) return;
            throw err;
          }
          const objs = [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])].map((v) => ({ Key: v.Key!, VersionId: v.VersionId }));
          if (objs.length === 0) break;
          const res = await s3.send(new DeleteObjectsCommand({ Bucket: name, BypassGovernanceRetention: true, Delete: { Objects: objs, Quiet: true } }));
          if (res.Errors && res.Errors.length > 0) {
            const e = res.Errors[0]!;
            throw new Error(`Cannot empty bucket ${name}: ${e.Key} ${e.VersionId ?? ""}: ${e.Code} ${e.Message ?? ""} (objects under COMPLIANCE retention cannot be deleted before it ends).`);
          }
        }
      }
      try {
        await s3.send(new DeleteBucketCommand({ Bucket: name }));
      } catch (err) {
        if (isGone(err)) return;
        if ((err as { name?: string }).name === "BucketNotEmpty") {
          throw new Error(`Bucket ${name} is not empty and its S3Bucket has no forceDestroy: empty it, or destroy with --force.`);
        }
        throw err;
      }
    });
  },
};

export const versioning: Mapping<Obj> = {
  type: "minio:index/s3BucketVersioning:S3BucketVersioning",
  async create(i, ctx) {
    return bucketConfigTurns.run(async () => {
      const cfg = i.versioningConfiguration ?? {};
      if ((cfg.excludedPrefixes?.length ?? 0) > 0 || cfg.excludeFolders) {
        throw new Error(`S3BucketVersioning ${i.bucket}: excludedPrefixes/excludeFolders are MinIO extensions that RGW does not have; drop them for this target.`);
      }
      await withS3(ctx.provider, (s3) => s3.send(new PutBucketVersioningCommand({ Bucket: i.bucket, VersioningConfiguration: { Status: cfg.status } })));
      return { id: i.bucket, record: { bucket: i.bucket } };
    });
  },
  // Versioning cannot be switched off once on (only suspended, and never with object lock);
  // the bucket's own destroy removes it.
  async destroy() {},
};

/** The provider's ILM `expiration`: a duration in days ("30d"), a date, or "DeleteMarker". */
export function lifecycleRule(r: Obj): LifecycleRule {
  const rule: LifecycleRule = { ID: r.id, Status: r.status ?? "Enabled", Filter: { Prefix: r.filter ?? "" } };
  if (r.tags && Object.keys(r.tags).length > 0) {
    rule.Filter = { And: { Prefix: r.filter ?? "", Tags: Object.entries(r.tags as Record<string, string>).map(([Key, Value]) => ({ Key, Value })) } };
  }
  const exp = r.expiration as string | undefined;
  if (exp) {
    const days = /^(\d+)d$/.exec(exp);
    if (exp === "DeleteMarker") rule.Expiration = { ExpiredObjectDeleteMarker: true };
    else if (days) rule.Expiration = { Days: Number(days[1]) };
    else if (/^\d{4}-\d{2}-\d{2}/.test(exp)) rule.Expiration = { Date: new Date(exp) };
    else throw new Error(`IlmPolicy rule ${r.id}: expiration '${exp}' is not "<n>d", a date or "DeleteMarker".`);
  }
  if (r.noncurrentVersionExpirationDays) rule.NoncurrentVersionExpiration = { NoncurrentDays: Number(r.noncurrentVersionExpirationDays) };
  return rule;
}

export const ilmPolicy: Mapping<Obj> = {
  type: "minio:index/ilmPolicy:IlmPolicy",
  async create(i, ctx) {
    return bucketConfigTurns.run(async () => {
      const rules = (i.rules as Obj[]).map(lifecycleRule);
      await withS3(ctx.provider, (s3) => s3.send(new PutBucketLifecycleConfigurationCommand({ Bucket: i.bucket, LifecycleConfiguration: { Rules: rules } })));
      return { id: i.bucket, record: { bucket: i.bucket } };
    });
  },
  /** As the provider does: the rules are written again in place (another bucket: the old one's go first). */
  async update(rec, i, ctx, reg) {
    if (i.bucket !== rec.bucket) await this.destroy(rec, ctx.provider);
    return this.create(i, ctx, reg);
  },
  async destroy(rec, provider) {
    await withS3(provider, (s3) => ignoreGone(s3.send(new DeleteBucketLifecycleCommand({ Bucket: String(rec.bucket) }))));
  },
};

export const bucketPolicy: Mapping<Obj> = {
  type: "minio:index/s3BucketPolicy:S3BucketPolicy",
  async create(i, ctx) {
    return bucketConfigTurns.run(async () => {
      await withS3(ctx.provider, (s3) => s3.send(new PutBucketPolicyCommand({ Bucket: i.bucket, Policy: i.policy })));
      return { id: i.bucket, record: { bucket: i.bucket } };
    });
  },
  async destroy(rec, provider) {
    await withS3(provider, (s3) => ignoreGone(s3.send(new DeleteBucketPolicyCommand({ Bucket: String(rec.bucket) }))));
  },
};

export const serverSideEncryption: Mapping<Obj> = {
  type: "minio:index/s3BucketServerSideEncryption:S3BucketServerSideEncryption",
  async create(i, ctx, reg) {
    return bucketConfigTurns.run(async () => {
      try {
        await withS3(ctx.provider, (s3) =>
          s3.send(
            new PutBucketEncryptionCommand({
              Bucket: i.bucket,
              ServerSideEncryptionConfiguration: {
                Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: i.encryptionType ?? "aws:kms", KMSMasterKeyID: i.kmsKeyId } }],
              },
            }),
          ),
        );
      } catch (err) {
        const e = err as { name?: string; message?: string };
        throw new Error(`S3BucketServerSideEncryption ${reg.name}: this S3 server refused bucket default encryption (${e.name}: ${e.message}). RGW needs a KMS backend configured for it; leave encryption off for this target.`);
      }
      return { id: i.bucket, record: { bucket: i.bucket } };
    });
  },
  async destroy(rec, provider) {
    await withS3(provider, (s3) => ignoreGone(s3.send(new DeleteBucketEncryptionCommand({ Bucket: String(rec.bucket) }))));
  },
};

/**
 * `tags` and `forceDestroy` have no RGW counterpart (admin-ops users carry no tags; deleting a
 * user here never deletes its data), so they are recorded in the program only.
 */
export const iamUser: Mapping<Obj> = {
  plan: (i, reg) => ({ name: i.name ?? reg.name, secret: i.secret ?? "[secret generated by the provider]", status: i.disableUser ? "disabled" : "enabled" }),
  type: "minio:index/iamUser:IamUser",
  async create(i, ctx, reg) {
    const name = autoName(reg.name, i.name);
    // The provider generates the secret when none is given; the SDK marks `secret` secret.
    const secret: string = i.secret ?? randomBytes(30).toString("base64url");
    await withS3(ctx.provider, (_s3, conn) =>
      rgwAdmin(conn, "PUT", "user", {
        uid: name,
        "display-name": name,
        "access-key": name,
        "secret-key": secret,
        "key-type": "s3",
        "generate-key": "false",
        suspended: i.disableUser ? "true" : "false",
      }),
    );
    return { id: name, state: { name, secret, status: i.disableUser ? "disabled" : "enabled" }, record: { uid: name } };
  },
  async destroy(rec, provider) {
    await withS3(provider, (_s3, conn) => ignoreGone(rgwAdmin(conn, "DELETE", "user", { uid: String(rec.uid), "purge-data": "false" })));
  },
};

export const iamPolicy: Mapping<Obj> = {
  plan: (i, reg) => ({ name: i.name ?? `${i.namePrefix ?? reg.name}` }),
  type: "minio:index/iamPolicy:IamPolicy",
  async create(i, _ctx, reg) {
    const name: string = i.name ?? (i.namePrefix ? `${i.namePrefix}${randomBytes(4).toString("hex")}` : autoName(reg.name, undefined));
    JSON.parse(i.policy); // a malformed document fails here, naming the resource, not at attachment
    // Nothing is created on the server: RGW has no managed policies (see the file comment).
    return { id: name, state: { name, policy: i.policy }, record: { name, policy: i.policy } };
  },
  async destroy() {},
};

interface Statement {
  Action?: string | string[];
  [k: string]: unknown;
}

/** Actions this endpoint refused in a policy document, learnt once per endpoint. */
const unknownActions = new Map<string, Set<string>>();

/**
 * Writes the inline user policy. A policy written for MinIO may name actions RGW does not have
 * (s3:ReplicateObject, s3:ReplicateTags ...), and RGW rejects the whole document for one of them.
 * Then each action is tried alone, in the statement it came from, under the same policy name, so
 * the user never holds more than the declared policy, and the final document is the declared one
 * without the actions RGW refused. Returns those actions.
 */
export async function putUserPolicy(conn: S3Connection, user: string, name: string, document: string): Promise<string[]> {
  const put = (doc: unknown) => rgwIam(conn, "PutUserPolicy", { UserName: user, PolicyName: name, PolicyDocument: JSON.stringify(doc) });
  const doc = JSON.parse(document) as { Statement: Statement[] | Statement };
  const statements = Array.isArray(doc.Statement) ? doc.Statement : [doc.Statement];
  const known = unknownActions.get(conn.endpoint) ?? new Set<string>();
  unknownActions.set(conn.endpoint, known);
  const actionsOf = (st: Statement) => (st.Action === undefined ? [] : Array.isArray(st.Action) ? st.Action : [st.Action]);
  const without = (skip: Set<string>) => ({
    ...doc,
    Statement: statements
      .map((st) => (st.Action === undefined ? st : { ...st, Action: actionsOf(st).filter((a) => !skip.has(a)) }))
      .filter((st) => st.Action === undefined || (st.Action as string[]).length > 0),
  });
  const malformed = (err: unknown) => err instanceof RgwError && err.code === "MalformedPolicyDocument";
  try {
    await put(without(known));
    return [...new Set(statements.flatMap(actionsOf).filter((a) => known.has(a)))];
  } catch (err) {
    if (!malformed(err)) throw err;
  }
  for (const st of statements) {
    for (const action of actionsOf(st)) {
      if (known.has(action)) continue;
      try {
        await put({ ...doc, Statement: [{ ...st, Action: [action] }] });
      } catch (err) {
        if (!malformed(err)) throw err;
        known.add(action);
      }
    }
  }
  await put(without(known));
  return [...new Set(statements.flatMap(actionsOf).filter((a) => known.has(a)))];
}

export const iamUserPolicyAttachment: Mapping<Obj> = {
  type: "minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment",
  async create(i, ctx, reg) {
    const policy = ctx.lookup(iamPolicy.type, (s) => s.name === i.policyName);
    if (!policy) {
      throw new Error(`IamUserPolicyAttachment ${reg.name}: policy '${i.policyName}' is not an IamPolicy of this program (MinIO's built-in policies do not exist on RGW).`);
    }
    const dropped = await withS3(ctx.provider, (_s3, conn) => putUserPolicy(conn, i.userName, i.policyName, String(policy.policy)));
    if (dropped.length > 0) {
      ctx.log(`${reg.name}: this RGW does not implement ${dropped.join(", ")}; left out of policy ${i.policyName} (it could not grant them anyway)`);
    }
    return { id: `${i.userName}-${i.policyName}`, record: { userName: i.userName, policyName: i.policyName, droppedActions: dropped } };
  },
  async destroy(rec, provider) {
    await withS3(provider, (_s3, conn) =>
      ignoreGone(rgwIam(conn, "DeleteUserPolicy", { UserName: String(rec.userName), PolicyName: String(rec.policyName) })).catch((err) => {
        // The user may already be gone with its policies.
        if (err instanceof RgwError && err.code === "NoSuchEntity") return;
        throw err;
      }),
    );
  },
};

export const minioMappings: Mapping<any>[] = [bucket, versioning, ilmPolicy, bucketPolicy, serverSideEncryption, iamUser, iamPolicy, iamUserPolicyAttachment];
