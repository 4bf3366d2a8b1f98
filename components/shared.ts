/**
 * Small helpers the components share. Not a component: no resources are declared here.
 */
import * as pulumi from "@pulumi/pulumi";
import { posix } from "node:path";
import { AGENT_ENV, LABELS, SECRET_DIR } from "../contract/index.js";

/** Label lists in the shape every @pulumi/docker resource takes; always marks the resource as ours. */
export function dockerLabels(labels: Record<string, pulumi.Input<string>>): Array<{ label: string; value: pulumi.Input<string> }> {
  return Object.entries({ [LABELS.managed]: "true", ...labels }).map(([label, value]) => ({ label, value }));
}

/** A Swarm secret file name below /run/secrets, from a contract.SECRET_FILES path. */
export function secretFileName(path: string): string {
  const rel = posix.relative(SECRET_DIR, path);
  if (rel.startsWith("..") || posix.isAbsolute(rel)) throw new Error(`internal: ${path} is not below ${SECRET_DIR}`);
  return rel;
}

/** Swarm secrets and docker uploads take base64; the value stays a Pulumi secret throughout. */
export function base64Secret(value: pulumi.Input<string>): pulumi.Output<string> {
  return pulumi.secret(pulumi.output(value).apply((v) => Buffer.from(v, "utf8").toString("base64")));
}

/** CPU and memory limits of an agent service (sidecar, cron). */
export interface AgentLimits {
  readonly cpus: pulumi.Input<number>;
  readonly memoryMiB: pulumi.Input<number>;
}

/** Swarm resource limits in the units @pulumi/docker takes (nano-CPUs, bytes). */
export function swarmLimits(limits: AgentLimits) {
  return {
    limits: {
      nanoCpus: pulumi.output(limits.cpus).apply((c) => Math.round(c * 1e9)),
      memoryBytes: pulumi.output(limits.memoryMiB).apply((m) => m * 1024 * 1024),
    },
  };
}

/** S3 bucket ARN of MinIO/AWS IAM policies. */
export function bucketArn(bucket: string, key?: string): string {
  return key === undefined ? `arn:aws:s3:::${bucket}` : `arn:aws:s3:::${bucket}/${key}`;
}

/**
 * Runs `check` on an input: right away when it is a plain value (so the error stops the program
 * at construction), otherwise once the Output resolves.
 */
export function validateInput<T>(value: pulumi.Input<T>, check: (v: T) => void): void {
  if (pulumi.Output.isInstance(value) || value instanceof Promise) pulumi.output(value).apply((v) => check(v as T));
  else check(value as T);
}

/** Where an agent reads or writes backups. */
export interface S3Location {
  /** S3 endpoint URL as the container reaches it. */
  readonly endpoint: pulumi.Input<string>;
  /** Signing region. */
  readonly region: pulumi.Input<string>;
  /** Tier bucket (keys inside follow contract.objectPrefix). */
  readonly bucket: pulumi.Input<string>;
  /** Access key of this container's own user; becomes a Swarm secret file. */
  readonly accessKey: pulumi.Input<string>;
  /** Secret key of that user; becomes a Swarm secret file. */
  readonly secretKey: pulumi.Input<string>;
}

/** How an agent reaches the backup catalog. */
export interface CatalogConnection {
  /** Host as the container reaches it. */
  readonly host: pulumi.Input<string>;
  readonly port: pulumi.Input<number>;
  /** Catalog database name. */
  readonly database: pulumi.Input<string>;
  /** Login role (agents: the writer, a member of kryonix_dr_writer). */
  readonly user: pulumi.Input<string>;
  /** Its password; becomes a Swarm secret file (or an uploaded file for run-once jobs). */
  readonly password: pulumi.Input<string>;
}

/** The agent's env for where its backups are and where its catalog is (credentials go as secret files). */
export function locationEnv(s3: Pick<S3Location, "endpoint" | "region" | "bucket">, catalog: Omit<CatalogConnection, "password">): Record<string, pulumi.Input<string>> {
  return {
    [AGENT_ENV.s3Endpoint]: s3.endpoint,
    [AGENT_ENV.s3Region]: s3.region,
    [AGENT_ENV.s3Bucket]: s3.bucket,
    [AGENT_ENV.catalogHost]: catalog.host,
    [AGENT_ENV.catalogPort]: pulumi.output(catalog.port).apply(String),
    [AGENT_ENV.catalogDatabase]: catalog.database,
    [AGENT_ENV.catalogUser]: catalog.user,
  };
}
