/**
 * Cross-region replication of the backup buckets toward the DR region.
 *
 * - `native`: MinIO bucket replication. @pulumi/minio 0.17.1 has no replication resource, so it
 *   is declared with @pulumi/command running `mc replicate add` on create and `mc replicate rm`
 *   on delete. Deletes and delete markers are NOT replicated: deleting on the primary (by
 *   mistake or by an attacker) never reaches the DR copy.
 * - `replicator`: for S3 servers without native replication (Ceph RGW, most clouds across
 *   vendors), one Swarm service per bucket runs the agent's `replicate` mode, which copies new
 *   object versions with their lock metadata from the primary bucket to the DR bucket.
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import * as command from "@pulumi/command";
import { AGENT_ENV, DEFAULT_METRICS_PORT, LABELS, REPLICATION_MODES, SECRET_FILES, TOOL_ENV, type ReplicationMode } from "../contract/index.js";
import { AGENT_BIN, HEALTHCHECK } from "./backup-sidecar.js";
import { base64Secret, dockerLabels, secretFileName, type CatalogConnection } from "./shared.js";

export { REPLICATION_MODES, type ReplicationMode };

export interface S3Access {
  /** Endpoint URL (for mc: scheme and host:port; for the replicator: as containers reach it). */
  readonly endpoint: pulumi.Input<string>;
  /** Signing region. */
  readonly region: pulumi.Input<string>;
  /** Access key; only ever in secret env or Swarm secret files. */
  readonly accessKey: pulumi.Input<string>;
  /** Secret key; only ever in secret env or Swarm secret files. */
  readonly secretKey: pulumi.Input<string>;
}

export interface ReplicationArgs {
  /** `native` (MinIO) or `replicator` (any S3). Plain: it decides which resources exist. */
  readonly mode: ReplicationMode;
  /** Source → target bucket pairs, one per tier. Plain list (one resource per pair). */
  readonly pairs: ReadonlyArray<{
    readonly tier: string;
    readonly source: pulumi.Input<string>;
    readonly target: pulumi.Input<string>;
    /** replicator: false scales the pair's service to 0 (a tier with nothing to copy, known only at deployment). @default true */
    readonly enabled?: pulumi.Input<boolean>;
  }>;
  /** Primary region. native: an admin who may configure replication; replicator: a reader. */
  readonly source: S3Access;
  /** DR region, with the credentials of its replication writer (no delete). */
  readonly target: S3Access;
  /** replicator: agent image. */
  readonly image?: pulumi.Input<string>;
  /** replicator: seconds between passes. @default 30 */
  readonly intervalSeconds?: pulumi.Input<number>;
  /** replicator: networks from which both endpoints are reachable. @default [] */
  readonly networks?: pulumi.Input<pulumi.Input<string>[]>;
  /** replicator: port of /healthz and /metrics. @default contract.DEFAULT_METRICS_PORT */
  readonly metricsPort?: pulumi.Input<number>;
  /** replicator: placement constraints. @default [] */
  readonly placement?: pulumi.Input<pulumi.Input<string>[]>;
  /**
   * replicator: the catalog, where every copy is recorded with its version id in the DR region
   * (object_copy): a restore from the DR region reads those ids. Required for `replicator`.
   */
  readonly catalog?: CatalogConnection;
}

/** `scheme://user:password@host:port[/path]`, the form `mc` takes its credentials in. */
function credentialUrl(endpoint: pulumi.Input<string>, accessKey: pulumi.Input<string>, secretKey: pulumi.Input<string>, path = ""): pulumi.Output<string> {
  return pulumi.secret(
    pulumi.all([endpoint, accessKey, secretKey]).apply(([e, a, s]) => {
      const url = new URL(e);
      return `${url.protocol}//${encodeURIComponent(a)}:${encodeURIComponent(s)}@${url.host}${path}`;
    }),
  );
}

export class Replication extends pulumi.ComponentResource {
  /** What was declared per tier: the command or the replicator service. */
  public readonly replicated: Record<string, pulumi.Output<string>> = {};

  constructor(name: string, args: ReplicationArgs, opts?: pulumi.ComponentResourceOptions) {
    super("kryonix:replication:Replication", name, {}, opts);
    if (!(REPLICATION_MODES as readonly string[]).includes(args.mode)) {
      throw new pulumi.ResourceError(`kryonix-dr:replication.mode is "${args.mode}"; accepted: ${REPLICATION_MODES.join(", ")}`, this);
    }
    if (args.mode === "replicator" && args.image === undefined) {
      throw new pulumi.ResourceError(`replication mode "replicator" needs the agent image (kryonix-dr:images.agent)`, this);
    }
    if (args.mode === "replicator" && args.catalog === undefined) {
      throw new pulumi.ResourceError(`replication mode "replicator" needs the catalog: it records each copy's DR version id there, which restores from the DR region read`, this);
    }
    if (args.pairs.length === 0) {
      throw new pulumi.ResourceError(`nothing to replicate: kryonix-dr:services puts no service in any tier`, this);
    }

    for (const pair of args.pairs) {
      if (args.mode === "native") {
        // Credentials reach mc through env (MC_HOST_<alias> and the target URL), so they are
        // neither in the command string nor in Pulumi's plain state. mc takes the remote target
        // only as an argument, so the shell expands it into mc's argv for the seconds the command
        // runs on the deploying machine; it never reaches the cluster.
        const cmd = new command.local.Command(
          `${name}-${pair.tier}`,
          {
            create: pulumi.interpolate`mc replicate add kdrsrc/${pair.source} --remote-bucket "$${TOOL_ENV.replicationTarget}" --replicate "existing-objects,metadata-sync" --priority 1`,
            delete: pulumi.interpolate`mc replicate rm --all --force kdrsrc/${pair.source}`,
            environment: {
              MC_HOST_kdrsrc: credentialUrl(args.source.endpoint, args.source.accessKey, args.source.secretKey),
              [TOOL_ENV.replicationTarget]: pulumi
                .output(pair.target)
                .apply((t) => credentialUrl(args.target.endpoint, args.target.accessKey, args.target.secretKey, `/${t}`)),
            },
            triggers: [pair.source, pair.target, args.target.endpoint],
          },
          { parent: this },
        );
        this.replicated[pair.tier] = cmd.id;
      } else {
        const secrets = [
          { role: "source-access-key", file: SECRET_FILES.s3AccessKey, value: args.source.accessKey },
          { role: "source-secret-key", file: SECRET_FILES.s3SecretKey, value: args.source.secretKey },
          { role: "replica-access-key", file: SECRET_FILES.replicaAccessKey, value: args.target.accessKey },
          { role: "replica-secret-key", file: SECRET_FILES.replicaSecretKey, value: args.target.secretKey },
          { role: "catalog-password", file: SECRET_FILES.catalogPassword, value: args.catalog!.password },
        ].map(({ role, file, value }) => {
          const s = new docker.Secret(
            `${name}-${pair.tier}-${role}`,
            { data: base64Secret(value), labels: dockerLabels({ [LABELS.role]: "replicator" }) },
            { parent: this },
          );
          return { secretId: s.id, secretName: s.name, fileName: secretFileName(file), fileMode: 0o400 };
        });
        const service = new docker.Service(
          `${name}-${pair.tier}`,
          {
            labels: dockerLabels({ [LABELS.role]: "replicator", [LABELS.tier]: pair.tier }),
            mode: { replicated: { replicas: pulumi.output(pair.enabled ?? true).apply((on) => (on ? 1 : 0)) } },
            taskSpec: {
              containerSpec: {
                image: args.image!,
                commands: ["node", AGENT_BIN, "replicate"],
                env: {
                  [AGENT_ENV.s3Endpoint]: args.source.endpoint,
                  [AGENT_ENV.s3Region]: args.source.region,
                  [AGENT_ENV.s3Bucket]: pair.source,
                  [AGENT_ENV.replicaEndpoint]: args.target.endpoint,
                  [AGENT_ENV.replicaRegion]: args.target.region,
                  [AGENT_ENV.replicaBucket]: pair.target,
                  [AGENT_ENV.replicationIntervalSeconds]: pulumi.output(args.intervalSeconds ?? 30).apply(String),
                  [AGENT_ENV.catalogHost]: args.catalog!.host,
                  [AGENT_ENV.catalogPort]: pulumi.output(args.catalog!.port).apply(String),
                  [AGENT_ENV.catalogDatabase]: args.catalog!.database,
                  [AGENT_ENV.catalogUser]: args.catalog!.user,
                  // Backlog and lag are exported here; the monitoring scrape finds it by label.
                  [AGENT_ENV.metricsPort]: pulumi.output(args.metricsPort ?? DEFAULT_METRICS_PORT).apply(String),
                },
                secrets,
                healthcheck: { tests: HEALTHCHECK, interval: "30s", timeout: "15s", retries: 3 },
              },
              networksAdvanceds: pulumi.output(args.networks ?? []).apply((ids) => ids.map((id) => ({ id }))),
              placement: { constraints: args.placement ?? [] },
              resources: { limits: { nanoCpus: 500_000_000, memoryBytes: 256 * 1024 * 1024 } },
              restartPolicy: { condition: "any", delay: "10s" },
            },
          },
          { parent: this },
        );
        this.replicated[pair.tier] = service.id;
      }
    }
    this.registerOutputs({ replicated: this.replicated });
  }
}
