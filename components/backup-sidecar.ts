/**
 * One backup sidecar: a Swarm service running the agent in `serve` mode next to the service it
 * protects. Settings reach the agent as env (contract.AGENT_ENV); every credential and key as a
 * Swarm secret file (contract.SECRET_FILES). A sidecar gets the age recipient only: it can
 * encrypt backups but never decrypt them.
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import { AGENT_ENV, DEFAULT_METRICS_PORT, ENGINES, LABELS, SECRET_FILES, TARGET_DEFAULTS, type Engine } from "../contract/index.js";
import { base64Secret, dockerLabels, locationEnv, secretFileName, type CatalogConnection, type S3Location, swarmLimits, type AgentLimits } from "./shared.js";

/** Where the agent bundle lives in the agent image. */
export const AGENT_BIN = "/opt/kryonix-dr/agent.cjs";
/**
 * The HEALTHCHECK of every agent container: the probe bundled alone (a few KiB), not the agent
 * (`kdr-agent healthz` is the same probe). Loading the whole agent every 30 s made the probe of a
 * sidecar busy with a backup time out on a loaded node, and Swarm killed it mid-backup.
 */
export const HEALTHCHECK = ["CMD", "node", "/opt/kryonix-dr/healthz.cjs"];
/** Where the state volume (WAL spool, restic cache) is mounted. */
export const STATE_DIR = "/var/lib/kryonix-dr";

export interface BackupSidecarArgs {
  /** Logical name of the protected service (catalog service_name, key prefix). */
  readonly service: pulumi.Input<string>;
  /**
   * Engine of the protected service; one of contract.ENGINES. Plain, not an Input: it decides
   * which mounts and secrets exist.
   */
  readonly engine: Engine;
  /** One of contract.TIERS; label and KDR_TIER. */
  readonly tier: pulumi.Input<string>;
  /** Catalog tenant id (UUID). */
  readonly tenantId: pulumi.Input<string>;
  /** Agent image. */
  readonly image: pulumi.Input<string>;
  /** Swarm service name. @default auto-named by the provider */
  readonly serviceName?: pulumi.Input<string>;
  /** RPO target (label and KDR_RPO_SECONDS; the agent reports RPO against it). */
  readonly rpoSeconds: pulumi.Input<number>;
  /** RTO target (label and KDR_RTO_SECONDS). */
  readonly rtoSeconds: pulumi.Input<number>;
  /** Cron expressions; an empty incremental schedule disables it. */
  readonly schedules: { readonly full: pulumi.Input<string>; readonly incremental: pulumi.Input<string> };
  /** Days each class is kept (the bucket's lifecycle enforces them; the agent records them). */
  readonly retention: {
    /** Full backups (and logical dumps; restic keeps snapshots this long). */
    readonly fullDays: pulumi.Input<number>;
    /** Incremental backups. */
    readonly incrementalDays: pulumi.Input<number>;
    /** WAL: the PITR window. */
    readonly walDays: pulumi.Input<number>;
  };
  /** postgres: pg_dump every database beside each base (all), or not (none). @default all */
  readonly pgLogicalDumps?: "all" | "none";
  /** postgres: days between fulls that carry the logical dumps (0: every full). @default the agent's, 7 */
  readonly pgLogicalEveryDays?: pulumi.Input<number>;
  /** postgres: force a WAL switch this often when there was activity. @default 30 (TARGET_DEFAULTS.walSwitchSeconds) */
  readonly walSwitchSeconds?: pulumi.Input<number>;
  /** postgres/redis: how to reach the protected service. */
  readonly target?: {
    /** DNS name on the shared network. */
    readonly host: pulumi.Input<string>;
    /** Its port (5432, 6379 by default in config). */
    readonly port: pulumi.Input<number>;
    /** postgres: a REPLICATION role. @default the agent's default */
    readonly user?: pulumi.Input<string>;
    /** Becomes the kdr-target-password secret. @default none (redis without AUTH) */
    readonly password?: pulumi.Input<string>;
  };
  /** volume: the protected Docker volume, mounted at `path` (read-only, unless tsdbSnapshot or maintenanceMode writes to it). */
  readonly volume?: { readonly source: pulumi.Input<string>; readonly path: pulumi.Input<string> };
  /** volume: commands run before/after a backup for application consistency. */
  readonly hooks?: { readonly pre?: pulumi.Input<string>; readonly post?: pulumi.Input<string> };
  /** volume: SQLite databases in it (relative paths), copied with SQLite's online backup. @default [] */
  readonly sqlite?: readonly string[];
  /** volume, Prometheus: its URL; each backup is a TSDB snapshot (the volume is mounted read-write to remove it). */
  readonly tsdbSnapshot?: pulumi.Input<string>;
  /** volume: `nextcloud` switches its maintenance mode around each copy (the volume is mounted read-write). */
  readonly maintenanceMode?: "nextcloud";
  /** The tier bucket and this sidecar's own least-privilege user. */
  readonly s3: S3Location;
  /** The catalog every run is written to. */
  readonly catalog: CatalogConnection;
  /** age recipient (public key). */
  readonly encryptionRecipient: pulumi.Input<string>;
  /** volume: restic repository password. */
  readonly resticPassword?: pulumi.Input<string>;
  /** Overlay networks shared with the protected service (ids or names). @default [] */
  readonly networks?: pulumi.Input<pulumi.Input<string>[]>;
  /** Placement constraints that keep the sidecar next to the data. @default [] */
  readonly placement?: pulumi.Input<pulumi.Input<string>[]>;
  /** @default { cpus: 0.5, memoryMiB: 512 } */
  readonly limits?: AgentLimits;
  /** Port of /healthz and /metrics. @default contract.DEFAULT_METRICS_PORT */
  readonly metricsPort?: pulumi.Input<number>;
  /** The notify relay (KDR_NOTIFY_URL): told of a failed backup and of the first success after failures. @default none */
  readonly notifyUrl?: pulumi.Input<string>;
}

export class BackupSidecar extends pulumi.ComponentResource {
  public readonly serviceId: pulumi.Output<string>;
  public readonly stateVolume: pulumi.Output<string>;

  constructor(name: string, args: BackupSidecarArgs, opts?: pulumi.ComponentResourceOptions) {
    super("kryonix:backup:BackupSidecar", name, {}, opts);
    if (!(ENGINES as readonly string[]).includes(args.engine)) {
      throw new pulumi.ResourceError(`kryonix-dr:services[].engine is "${args.engine}"; accepted: ${ENGINES.join(", ")}`, this);
    }
    if (args.engine === "volume" && (!args.volume || !args.resticPassword)) {
      throw new pulumi.ResourceError(`a volume-engine sidecar needs 'volume' (kryonix-dr:services[].volume) and 'resticPassword' (kryonix-dr:resticPassword)`, this);
    }
    if (args.engine !== "volume" && !args.target) {
      throw new pulumi.ResourceError(`a ${args.engine} sidecar needs 'target' (kryonix-dr:services[].host/port)`, this);
    }
    if (args.engine === "postgres" && !args.target?.password) {
      throw new pulumi.ResourceError(`a postgres sidecar needs the target password (kryonix-dr:targetPassword-<service>)`, this);
    }

    const secrets: Array<{ role: string; file: string; value: pulumi.Input<string> }> = [
      { role: "s3-access-key", file: SECRET_FILES.s3AccessKey, value: args.s3.accessKey },
      { role: "s3-secret-key", file: SECRET_FILES.s3SecretKey, value: args.s3.secretKey },
      { role: "catalog-password", file: SECRET_FILES.catalogPassword, value: args.catalog.password },
      { role: "age-recipient", file: SECRET_FILES.encryptionRecipient, value: args.encryptionRecipient },
    ];
    if (args.target?.password !== undefined) secrets.push({ role: "target-password", file: SECRET_FILES.targetPassword, value: args.target.password });
    if (args.resticPassword !== undefined) secrets.push({ role: "restic-password", file: SECRET_FILES.resticPassword, value: args.resticPassword });
    const secretRefs = secrets.map(({ role, file, value }) => {
      const secret = new docker.Secret(
        `${name}-${role}`,
        { data: base64Secret(value), labels: dockerLabels({ [LABELS.protects]: args.service, [LABELS.role]: "sidecar" }) },
        { parent: this },
      );
      return { secretId: secret.id, secretName: secret.name, fileName: secretFileName(file), fileMode: 0o400 };
    });

    // The WAL spool must survive a task restart; the container layer would not.
    const state = new docker.Volume(`${name}-state`, { name: args.serviceName ? pulumi.interpolate`${args.serviceName}-state` : undefined, labels: dockerLabels({ [LABELS.protects]: args.service, [LABELS.role]: "sidecar" }) }, { parent: this });

    const metricsPort = args.metricsPort ?? DEFAULT_METRICS_PORT;
    const env: Record<string, pulumi.Input<string>> = {
      [AGENT_ENV.service]: args.service,
      [AGENT_ENV.engine]: args.engine,
      [AGENT_ENV.tenantId]: args.tenantId,
      [AGENT_ENV.tier]: args.tier,
      ...locationEnv(args.s3, args.catalog),
      [AGENT_ENV.scheduleFull]: args.schedules.full,
      [AGENT_ENV.scheduleIncremental]: args.schedules.incremental,
      [AGENT_ENV.rpoSeconds]: pulumi.output(args.rpoSeconds).apply(String),
      [AGENT_ENV.rtoSeconds]: pulumi.output(args.rtoSeconds).apply(String),
      [AGENT_ENV.retentionFullDays]: pulumi.output(args.retention.fullDays).apply(String),
      [AGENT_ENV.retentionIncrementalDays]: pulumi.output(args.retention.incrementalDays).apply(String),
      [AGENT_ENV.retentionWalDays]: pulumi.output(args.retention.walDays).apply(String),
      // No KDR_LOCK_MODE: a sidecar's user may not set retention (no s3:PutObjectRetention), so
      // every upload is locked by the bucket's default retention, which is derived from config.
      [AGENT_ENV.metricsPort]: pulumi.output(metricsPort).apply(String),
      [AGENT_ENV.stateDir]: STATE_DIR,
    };
    if (args.target) {
      env[AGENT_ENV.targetHost] = args.target.host;
      env[AGENT_ENV.targetPort] = pulumi.output(args.target.port).apply(String);
      if (args.target.user !== undefined) env[AGENT_ENV.targetUser] = args.target.user;
    }
    if (args.engine === "postgres") env[AGENT_ENV.walSwitchSeconds] = pulumi.output(args.walSwitchSeconds ?? TARGET_DEFAULTS.walSwitchSeconds).apply(String);
    if (args.engine === "postgres" && args.pgLogicalDumps) env[AGENT_ENV.pgLogicalDumps] = args.pgLogicalDumps;
    if (args.engine === "postgres" && args.pgLogicalEveryDays !== undefined) env[AGENT_ENV.pgLogicalEveryDays] = pulumi.output(args.pgLogicalEveryDays).apply(String);
    if (args.volume) env[AGENT_ENV.volumePath] = args.volume.path;
    if (args.hooks?.pre !== undefined) env[AGENT_ENV.hookPre] = args.hooks.pre;
    if (args.hooks?.post !== undefined) env[AGENT_ENV.hookPost] = args.hooks.post;
    if (args.sqlite?.length) env[AGENT_ENV.sqliteFiles] = JSON.stringify(args.sqlite);
    if (args.tsdbSnapshot !== undefined) env[AGENT_ENV.tsdbSnapshotUrl] = args.tsdbSnapshot;
    if (args.maintenanceMode !== undefined) env[AGENT_ENV.maintenanceMode] = args.maintenanceMode;
    if (args.notifyUrl !== undefined) env[AGENT_ENV.notifyUrl] = args.notifyUrl;

    const mounts: docker.types.input.ServiceTaskSpecContainerSpecMount[] = [{ type: "volume", source: state.name, target: STATE_DIR }];
    // Read-only, except where the consistency step writes to the volume (a Prometheus snapshot
    // removed after upload, Nextcloud's maintenance switch).
    const writes = args.tsdbSnapshot !== undefined || args.maintenanceMode !== undefined;
    if (args.volume) mounts.push({ type: "volume", source: args.volume.source, target: args.volume.path, readOnly: !writes });

    const limits = args.limits ?? { cpus: 0.5, memoryMiB: 512 };
    const service = new docker.Service(
      `${name}-service`,
      {
        name: args.serviceName,
        labels: dockerLabels({
          [LABELS.protects]: args.service,
          [LABELS.role]: "sidecar",
          [LABELS.engine]: args.engine,
          [LABELS.tier]: args.tier,
          [LABELS.rpoSeconds]: pulumi.output(args.rpoSeconds).apply(String),
          [LABELS.rtoSeconds]: pulumi.output(args.rtoSeconds).apply(String),
        }),
        mode: { replicated: { replicas: 1 } },
        taskSpec: {
          containerSpec: {
            image: args.image,
            commands: ["node", AGENT_BIN, "serve"],
            env,
            secrets: secretRefs,
            mounts,
            healthcheck: { tests: HEALTHCHECK, interval: "30s", timeout: "15s", retries: 3, startPeriod: "30s" },
            stopGracePeriod: "60s",
          },
          networksAdvanceds: pulumi.output(args.networks ?? []).apply((ids) => ids.map((id) => ({ id }))),
          placement: { constraints: args.placement ?? [] },
          resources: swarmLimits(limits),
          restartPolicy: { condition: "any", delay: "10s" },
        },
      },
      { parent: this },
    );

    this.serviceId = service.id;
    this.stateVolume = state.name;
    this.registerOutputs({ serviceId: this.serviceId, stateVolume: this.stateVolume });
  }
}
