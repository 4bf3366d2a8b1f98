/**
 * `kryonix-dr s3`: S3 operations the minio provider lacks.
 * - `put-default-retention` sets a bucket's default object-lock retention. @pulumi/minio 0.17.1 has
 *   no resource for it, so the program runs this through @pulumi/command.
 * - `rewind` puts a versioned bucket back as it was at a moment (cli/s3-rewind.ts): the operator's
 *   step after an attack that deleted or overwrote backups (runbook §11).
 * Credentials come from the environment (the command resource passes them as secret env), never
 * from the command line.
 */
import { S3Client, PutObjectLockConfigurationCommand } from "@aws-sdk/client-s3";
import { parseFlags, parseIsoTime, required, UsageError, type Command } from "../command.js";
import { TOOL_ENV } from "../../contract/index.js";
import { describeRewind, rewindBucket, s3ErrorText } from "../s3-rewind.js";

const USAGE = `Usage: kryonix-dr s3 put-default-retention --bucket <name> --mode GOVERNANCE|COMPLIANCE --days <n>
       kryonix-dr s3 rewind --bucket <name> --to <ISO time> [--prefix <p>] [--dry-run] [--json]

put-default-retention sets the bucket's default object-lock retention (the bucket must have object
locking enabled).
rewind makes each key's newest version written at or before --to its current one again (a
server-side copy) and hides keys written only after it; it deletes nothing, and a second run changes
nothing. --dry-run says what it would change and writes nothing. Give a moment before the attack
(its first changed object's time, minus a margin), then restore with --time at or before it.
Environment:
  ${TOOL_ENV.s3Endpoint.padEnd(22)} S3 endpoint URL (required)
  ${TOOL_ENV.s3Region.padEnd(22)} signing region (default us-east-1)
  AWS_ACCESS_KEY_ID      credentials of a user allowed to configure the bucket (rewind: to list
                         versions, read them, put and delete objects: the region's admin key)
  AWS_SECRET_ACCESS_KEY`;

/** Builds an S3 client from the TOOL_ENV S3 names and the AWS_* environment, naming what is missing. */
export function s3ClientFromEnv(env: NodeJS.ProcessEnv = process.env): S3Client {
  const missing = [TOOL_ENV.s3Endpoint, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"].filter((k) => !env[k]);
  if (missing.length > 0) {
    throw new Error(`Missing environment variable(s) ${missing.join(", ")}: set them to the S3 endpoint and credentials.`);
  }
  return new S3Client({
    endpoint: env[TOOL_ENV.s3Endpoint],
    region: env[TOOL_ENV.s3Region] || "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! },
  });
}

export async function putDefaultRetention(
  client: S3Client,
  bucket: string,
  mode: "GOVERNANCE" | "COMPLIANCE",
  days: number,
): Promise<void> {
  await client.send(
    new PutObjectLockConfigurationCommand({
      Bucket: bucket,
      ObjectLockConfiguration: { ObjectLockEnabled: "Enabled", Rule: { DefaultRetention: { Mode: mode, Days: days } } },
    }),
  );
}

export const command: Command = {
  name: "s3",
  summary: "S3 operations the minio provider lacks (put-default-retention, rewind)",
  usage: USAGE,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === "rewind") return rewind(rest);
    if (sub !== "put-default-retention") {
      throw new UsageError(
        sub === undefined ? "Missing subcommand: put-default-retention or rewind." : `Unknown subcommand '${sub}': use put-default-retention or rewind.`,
      );
    }
    const { values } = parseFlags(rest, {
      bucket: { type: "string" },
      mode: { type: "string" },
      days: { type: "string" },
    });
    const bucket = required(values.bucket, "bucket");
    const mode = required(values.mode, "mode").toUpperCase();
    if (mode !== "GOVERNANCE" && mode !== "COMPLIANCE") {
      throw new UsageError(`--mode must be GOVERNANCE or COMPLIANCE, not '${values.mode}'.`);
    }
    const daysText = required(values.days, "days");
    const days = Number(daysText);
    if (!Number.isInteger(days) || days < 1) {
      throw new UsageError(`--days must be a whole number of days of at least 1, not '${daysText}'.`);
    }
    const client = s3ClientFromEnv();
    try {
      await putDefaultRetention(client, bucket, mode, days);
    } catch (err) {
      throw new Error(
        `PutObjectLockConfiguration on bucket ${bucket} at ${process.env[TOOL_ENV.s3Endpoint]} failed: ${s3ErrorText(err)}. The bucket must exist with object locking enabled, and the credentials must be allowed to configure it.`,
      );
    } finally {
      client.destroy();
    }
    process.stdout.write(`${bucket}: default retention ${mode} ${days} day(s)\n`);
    return 0;
  },
};

async function rewind(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    bucket: { type: "string" },
    to: { type: "string" },
    prefix: { type: "string" },
    "dry-run": { type: "boolean" },
    json: { type: "boolean" },
  });
  const bucket = required(values.bucket, "bucket");
  const to = parseIsoTime(required(values.to, "to"), "--to");
  if (to.getTime() > Date.now()) {
    throw new UsageError(`--to ${values.to} is in the future: give the moment before the objects were deleted or overwritten.`);
  }
  const client = s3ClientFromEnv();
  try {
    const report = await rewindBucket(client, bucket, {
      to,
      prefix: values.prefix,
      dryRun: !!values["dry-run"],
      progress: (line) => process.stderr.write(`s3://${bucket}/${values.prefix ?? ""}: ${line}\n`),
    });
    if (report.keys === 0) {
      throw new Error(`s3://${bucket}/${values.prefix ?? ""} holds no object and no version: check --bucket and --prefix (a prefix ends with /), and the endpoint ${process.env[TOOL_ENV.s3Endpoint]}.`);
    }
    process.stdout.write(values.json ? JSON.stringify(report) + "\n" : describeRewind(report));
    return 0;
  } catch (err) {
    if ((err as { $metadata?: unknown }).$metadata) {
      throw new Error(`s3 rewind of bucket ${bucket} at ${process.env[TOOL_ENV.s3Endpoint]} failed: ${s3ErrorText(err)}. The bucket must exist with versioning, and the credentials must be allowed to list its versions.`);
    }
    throw err;
  } finally {
    client.destroy();
  }
}
