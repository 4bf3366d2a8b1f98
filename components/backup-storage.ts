/**
 * Backup storage in one S3 region: one private bucket per tier, object-locked and versioned,
 * with lifecycle rules per `<class>/<service>/` prefix, a quota, optional SSE, and the IAM users
 * that may touch it (one least-privilege user per sidecar, a restore/read user, a prune user and
 * the replication writer).
 */
import * as pulumi from "@pulumi/pulumi";
import * as minio from "@pulumi/minio";
import * as command from "@pulumi/command";
import { BACKUP_CLASSES, LABELS, TIERS, TOOL_ENV, objectPrefix, resticLockFiles, type BackupClass, type Engine, type Tier } from "../contract/index.js";
import { bucketArn, validateInput } from "./shared.js";

export interface StorageService {
  /** Logical service name (second part of every key). */
  readonly name: string;
  readonly tier: Tier;
  readonly engine: Engine;
  /** Days each class is kept. */
  readonly retention: { readonly fullDays: number; readonly incrementalDays: number; readonly walDays: number };
}

export interface Credentials {
  readonly accessKey: pulumi.Output<string>;
  readonly secretKey: pulumi.Output<string>;
}

export interface BackupStorageArgs {
  /** S3 region name (signing region). */
  readonly region: pulumi.Input<string>;
  /** S3 endpoint URL, for the default-retention command (the minio provider has its own). */
  readonly endpoint: pulumi.Input<string>;
  /** Admin credentials allowed to configure buckets, for the default-retention command. */
  readonly adminAccessKey: pulumi.Input<string>;
  /** Secret key of that admin. */
  readonly adminSecretKey: pulumi.Input<string>;
  /** Buckets are named `<bucketPrefix>-<tier>`. */
  readonly bucketPrefix: pulumi.Input<string>;
  /**
   * Protected services. Plain values, not Inputs: they decide how many lifecycle rules and users
   * exist, which must be known when the program runs.
   */
  readonly services: readonly StorageService[];
  /** Prefix of IAM user and policy names (unique per stack). */
  readonly namePrefix: string;
  /**
   * Object-lock mode of the default retention.
   * @default "GOVERNANCE"
   */
  readonly lockMode?: pulumi.Input<"GOVERNANCE" | "COMPLIANCE">;
  /**
   * KMS key for server-side encryption; only where the target supports it (MinIO with KMS).
   * @default undefined (no SSE; backups are encrypted before upload anyway)
   */
  readonly sseKmsKeyId?: pulumi.Input<string>;
  /** Hard quota per tier bucket, in GiB. @default no quota */
  readonly quotaGiB?: Partial<Record<Tier, pulumi.Input<number>>>;
  /**
   * The buckets exist already (declared by the stack that owns them, e.g. prod for a recovery):
   * only users and policies are declared here.
   * @default false
   */
  readonly existingBuckets?: boolean;
  /**
   * Which users to declare here.
   * @default { sidecars: false, restore: true, prune: false, replicationTarget: false }
   */
  readonly access?: {
    /** One writer per service, limited to its own prefixes. */
    readonly sidecars?: boolean;
    /** One reader of everything (restores, drills, the replicator's source side). */
    readonly restore?: boolean;
    /** restic's forget/prune: delete on restic/ only. */
    readonly prune?: boolean;
    /** The writer of replicated copies (MinIO remote target or our replicator). */
    readonly replicationTarget?: boolean;
  };
}

/** Lifecycle days per class; restic prunes its own repository, so it has no expiry. */
function classDays(s: StorageService): Record<BackupClass, number | undefined> {
  return {
    full: s.retention.fullDays,
    logical: s.retention.fullDays,
    incremental: s.retention.incrementalDays,
    wal: s.retention.walDays,
    restic: undefined,
  };
}

/**
 * The bucket's default lock must outlast every lifecycle expiry in it, so that no object is ever
 * kept shorter than its lifecycle promises: the longest class retention of the tier's services.
 * (restic's packs are kept by `forget --keep-within <full days>`, so full days covers them.)
 */
export function lockDaysFor(services: readonly StorageService[]): number {
  return Math.max(1, ...services.flatMap((s) => [s.retention.fullDays, s.retention.incrementalDays, s.retention.walDays]));
}

/**
 * Lifecycle rules of one tier bucket. Expiring the current version of a locked object only adds a
 * delete marker; the version itself is removed by the noncurrent rule once the lock has lapsed,
 * which is why noncurrent expiry equals the lock days. Expired delete markers are removed too.
 */
export function lifecycleRules(services: readonly StorageService[], lockDays: number): minio.types.input.IlmPolicyRule[] {
  const rules: minio.types.input.IlmPolicyRule[] = [];
  for (const s of services) {
    for (const cls of BACKUP_CLASSES) {
      const days = classDays(s)[cls];
      rules.push({
        id: `${cls}-${s.name}`,
        status: "Enabled",
        filter: objectPrefix(cls, s.name),
        // restic: no expiry of current objects (packs are shared between snapshots).
        expiration: days === undefined ? "DeleteMarker" : `${days}d`,
        noncurrentVersionExpirationDays: lockDays,
      });
    }
  }
  rules.push({ id: "expired-delete-markers", status: "Enabled", expiration: "DeleteMarker", noncurrentVersionExpirationDays: lockDays });
  return rules;
}

type Statement = { Sid: string; Effect: "Allow" | "Deny"; Action: string[]; Resource: string[]; Condition?: unknown };
const policyDoc = (statements: Statement[]) => JSON.stringify({ Version: "2012-10-17", Statement: statements });

/**
 * Every way to lift or shorten a lock, denied outright. Not granting them is not enough on RGW:
 * when no statement of the user's policy matches, RGW falls back to the object's ACL, and the
 * uploader owns its objects. Measured on RGW 16.2: a sidecar holding only the Allow statements
 * could shorten its own objects' GOVERNANCE retention with the bypass header. An explicit Deny
 * wins on RGW, MinIO and AWS alike.
 */
export const NEVER_UNLOCK_ACTIONS = ["s3:PutObjectRetention", "s3:BypassGovernanceRetention", "s3:PutObjectLegalHold", "s3:DeleteObjectVersion"];
const neverUnlock = (buckets: string[]): Statement => ({ Sid: "NeverUnlock", Effect: "Deny", Action: NEVER_UNLOCK_ACTIONS, Resource: buckets.map((b) => bucketArn(b, "*")) });

/**
 * A sidecar may write and read its own prefixes (and abort its own multipart uploads) and nothing
 * else. No DeleteObject (except
 * restic's lock files, which restic must remove; on a versioned bucket that only adds a delete
 * marker, the locked version stays), no DeleteObjectVersion, no BypassGovernanceRetention, no
 * PutObjectRetention or lock configuration: a compromised sidecar cannot destroy backups.
 */
export function sidecarPolicy(bucket: string, s: StorageService): string {
  const prefixes = BACKUP_CLASSES.map((c) => objectPrefix(c, s.name));
  const statements: Statement[] = [
    {
      Sid: "ListOwnPrefixes",
      Effect: "Allow",
      Action: ["s3:ListBucket"],
      Resource: [bucketArn(bucket)],
      Condition: { StringLike: { "s3:prefix": prefixes.flatMap((p) => [p, `${p}*`]) } },
    },
    { Sid: "BucketFacts", Effect: "Allow", Action: ["s3:GetBucketLocation", "s3:GetBucketObjectLockConfiguration"], Resource: [bucketArn(bucket)] },
    // AbortMultipartUpload: a failed upload removes its parts, and each backup run removes what
    // a killed run left (see agent/commands/backup.ts abortStaleUploads); the lifecycle provider has no rule
    // for it. Scoped to the own prefixes like the writes.
    { Sid: "WriteReadOwnPrefixes", Effect: "Allow", Action: ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"], Resource: prefixes.map((p) => bucketArn(bucket, `${p}*`)) },
    // Finding those uploads needs the bucket's multipart listing. RGW does not evaluate s3:prefix
    // for it (a condition denies every listing, measured on RGW 16.2), so it is bucket-wide: the
    // sidecar sees the keys of uploads in progress in its tier bucket, never their data.
    { Sid: "FindOwnStaleUploads", Effect: "Allow", Action: ["s3:ListBucketMultipartUploads"], Resource: [bucketArn(bucket)] },
  ];
  if (s.engine === "volume") {
    // restic's `init` checks the bucket exists (HEAD bucket), which S3 authorises as
    // s3:ListBucket without a prefix; Null on s3:prefix allows that check but no unprefixed listing.
    statements.push({ Sid: "ResticBucketCheck", Effect: "Allow", Action: ["s3:ListBucket"], Resource: [bucketArn(bucket)], Condition: { Null: { "s3:prefix": "true" } } });
    statements.push({ Sid: "ResticLockFiles", Effect: "Allow", Action: ["s3:DeleteObject"], Resource: [bucketArn(bucket, resticLockFiles(s.name))] });
  }
  statements.push(neverUnlock([bucket]));
  return policyDoc(statements);
}

/** Restore, verify and drill: read everything (including lock metadata, which the replicator copies). */
export function restorePolicy(buckets: string[]): string {
  return policyDoc([
    { Sid: "List", Effect: "Allow", Action: ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation", "s3:GetBucketObjectLockConfiguration"], Resource: buckets.map((b) => bucketArn(b)) },
    {
      Sid: "Read",
      Effect: "Allow",
      Action: ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention", "s3:GetObjectLegalHold"],
      Resource: buckets.map((b) => bucketArn(b, "*")),
    },
  ]);
}

/**
 * The agent's prune expires backups past retention (never the last good full or the WAL it
 * needs), and restic's `forget --prune` rewrites pack files. On a versioned, locked bucket a
 * delete only adds a delete marker: the locked version stays until its retention ends and the
 * noncurrent lifecycle rule removes it. So: delete, but never DeleteObjectVersion or a bypass;
 * writes only where restic rewrites its repository.
 */
export function prunePolicy(buckets: string[]): string {
  return policyDoc([
    { Sid: "List", Effect: "Allow", Action: ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation"], Resource: buckets.map((b) => bucketArn(b)) },
    { Sid: "ReadAndExpire", Effect: "Allow", Action: ["s3:GetObject", "s3:DeleteObject"], Resource: buckets.map((b) => bucketArn(b, "*")) },
    { Sid: "ResticRewrites", Effect: "Allow", Action: ["s3:PutObject"], Resource: buckets.map((b) => bucketArn(b, "restic/*")) },
    neverUnlock(buckets),
  ]);
}

/**
 * The writer of replicated copies (MinIO's remote target, or our replicator). It must set
 * retention on the copies so the replica is as immutable as the source; it gets no delete, so
 * deleting on the primary never reaches the DR copy.
 */
export function replicationTargetPolicy(buckets: string[]): string {
  return policyDoc([
    {
      Sid: "BucketFacts",
      Effect: "Allow",
      Action: ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation", "s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration", "s3:GetReplicationConfiguration", "s3:ListBucketMultipartUploads"],
      Resource: buckets.map((b) => bucketArn(b)),
    },
    {
      Sid: "WriteCopies",
      Effect: "Allow",
      Action: ["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion", "s3:PutObjectRetention", "s3:PutObjectLegalHold", "s3:ReplicateObject", "s3:ReplicateTags", "s3:GetObjectVersionTagging"],
      Resource: buckets.map((b) => bucketArn(b, "*")),
    },
    // It sets retention on its copies, so it may lengthen a lock but never bypass or delete one
    // (denied outright for RGW's ACL fallback, as in neverUnlock).
    { Sid: "NeverUnlock", Effect: "Deny", Action: ["s3:BypassGovernanceRetention", "s3:DeleteObjectVersion"], Resource: buckets.map((b) => bucketArn(b, "*")) },
  ]);
}

export class BackupStorage extends pulumi.ComponentResource {
  /** Bucket name per tier that has services. */
  public readonly buckets: Partial<Record<Tier, pulumi.Output<string>>>;
  /** Default lock retention per tier bucket, in days. */
  public readonly lockDays: Partial<Record<Tier, number>>;
  public readonly sidecarCredentials: Record<string, Credentials> = {};
  public readonly restoreCredentials?: Credentials;
  public readonly pruneCredentials?: Credentials;
  public readonly replicationCredentials?: Credentials;

  constructor(name: string, args: BackupStorageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("kryonix:storage:BackupStorage", name, {}, opts);
    const lockMode = args.lockMode ?? "GOVERNANCE";
    validateInput(lockMode, (m) => {
      if (m !== "GOVERNANCE" && m !== "COMPLIANCE") {
        throw new pulumi.ResourceError(`kryonix-dr:storage.lockMode is "${m}"; accepted: GOVERNANCE, COMPLIANCE`, this);
      }
    });
    if (args.services.length === 0) {
      throw new pulumi.ResourceError(`kryonix-dr:services is empty: backup storage needs at least one protected service`, this);
    }
    const access = { sidecars: false, restore: true, prune: false, replicationTarget: false, ...args.access };

    this.buckets = {};
    this.lockDays = {};
    const bucketNames: pulumi.Output<string>[] = [];
    for (const tier of TIERS) {
      const services = args.services.filter((s) => s.tier === tier);
      if (services.length === 0) continue;
      const days = lockDaysFor(services);
      if (args.existingBuckets) {
        const existing = pulumi.interpolate`${args.bucketPrefix}-${tier}`;
        this.buckets[tier] = existing;
        this.lockDays[tier] = days;
        bucketNames.push(existing);
        continue;
      }
      const quota = args.quotaGiB?.[tier];
      const bucket = new minio.S3Bucket(
        `${name}-${tier}`,
        {
          bucket: pulumi.interpolate`${args.bucketPrefix}-${tier}`,
          acl: "private",
          // Object lock can only be switched on when the bucket is created.
          objectLocking: true,
          forceDestroy: false,
          quota: quota === undefined ? undefined : pulumi.output(quota).apply((g) => Math.round(g * 1024 ** 3)),
        },
        { parent: this },
      );
      const versioning = new minio.S3BucketVersioning(
        `${name}-${tier}-versioning`,
        { bucket: bucket.bucket, versioningConfiguration: { status: "Enabled" } },
        { parent: this },
      );
      new minio.IlmPolicy(`${name}-${tier}-lifecycle`, { bucket: bucket.bucket, rules: lifecycleRules(services, days) }, { parent: this, dependsOn: [versioning] });
      if (args.sseKmsKeyId !== undefined) {
        new minio.S3BucketServerSideEncryption(
          `${name}-${tier}-sse`,
          { bucket: bucket.bucket, encryptionType: "aws:kms", kmsKeyId: args.sseKmsKeyId },
          { parent: this },
        );
      }
      // @pulumi/minio 0.17.1 can create a locked bucket but has no resource for its default
      // retention, so our CLI sets it with the S3 API (PutObjectLockConfiguration, which MinIO
      // and Ceph RGW both accept). Credentials travel as secret env, never on the command line.
      // No delete command: the retention belongs to the bucket and goes with it.
      new command.local.Command(
        `${name}-${tier}-default-retention`,
        {
          create: pulumi.interpolate`node bin/kryonix-dr.mjs s3 put-default-retention --bucket ${bucket.bucket} --mode ${lockMode} --days ${days}`,
          environment: {
            [TOOL_ENV.s3Endpoint]: args.endpoint,
            [TOOL_ENV.s3Region]: args.region,
            AWS_ACCESS_KEY_ID: pulumi.secret(args.adminAccessKey),
            AWS_SECRET_ACCESS_KEY: pulumi.secret(args.adminSecretKey),
          },
          triggers: [bucket.bucket, lockMode, days],
        },
        { parent: this, dependsOn: [versioning] },
      );
      this.buckets[tier] = bucket.bucket;
      this.lockDays[tier] = days;
      bucketNames.push(bucket.bucket);
    }

    const user = (role: string, policy: pulumi.Input<string>, kind: string = role): Credentials => {
      const u = new minio.IamUser(
        `${name}-${role}-user`,
        { name: `${args.namePrefix}-${role}`, forceDestroy: true, tags: { [LABELS.role]: kind, [LABELS.managed]: "true" } },
        { parent: this },
      );
      const p = new minio.IamPolicy(`${name}-${role}-policy`, { name: `${args.namePrefix}-${role}`, policy }, { parent: this });
      new minio.IamUserPolicyAttachment(`${name}-${role}-attachment`, { userName: u.name, policyName: p.name }, { parent: this });
      // MinIO uses the user name as access key; the provider generates the secret key.
      return { accessKey: pulumi.secret(u.name), secretKey: pulumi.secret(u.secret) };
    };
    const allBuckets = pulumi.all(bucketNames);

    if (access.sidecars) {
      for (const s of args.services) {
        this.sidecarCredentials[s.name] = user(`sidecar-${s.name}`, this.buckets[s.tier]!.apply((b) => sidecarPolicy(b, s)), "sidecar");
      }
    }
    if (access.restore) this.restoreCredentials = user("restore", allBuckets.apply(restorePolicy));
    if (access.prune) this.pruneCredentials = user("prune", allBuckets.apply(prunePolicy));
    if (access.replicationTarget) this.replicationCredentials = user("replication", allBuckets.apply(replicationTargetPolicy));

    this.registerOutputs({ buckets: this.buckets, lockDays: this.lockDays });
  }
}
