/**
 * Recovery of one service: a fresh volume, a run-once restore container that fills it from the
 * chosen recovery point, and the fresh service, which starts only after the restore finished.
 * The container is attached (the deployment waits for it to exit and fails if it fails), so
 * `pulumi up` on a recovery stack is the recovery.
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import { AGENT_ENV, ENGINES, LABELS, SECRET_FILES, type Engine } from "../contract/index.js";
import { AGENT_BIN } from "./backup-sidecar.js";
import { ProtectedService } from "./protected-service.js";
import { base64Secret, dockerLabels, locationEnv, validateInput, type CatalogConnection, type S3Location } from "./shared.js";

export interface RecoveryJobArgs {
  /** Logical service name to recover. */
  readonly service: pulumi.Input<string>;
  /** One of contract.ENGINES. Plain: it decides which secrets are needed. */
  readonly engine: Engine;
  /** One of contract.TIERS. */
  readonly tier: pulumi.Input<string>;
  /** Catalog tenant id (UUID). */
  readonly tenantId: pulumi.Input<string>;
  /** `latest`, an ISO timestamp, or a backup id. */
  readonly recoveryPoint: pulumi.Input<string>;
  /** Agent image, which runs the restore. */
  readonly agentImage: pulumi.Input<string>;
  /** The service's own image. */
  readonly image: pulumi.Input<string>;
  /** Swarm name of the fresh service. */
  readonly serviceName: pulumi.Input<string>;
  /** Where the data lives in the service's container; the restore writes there too. */
  readonly dataPath: pulumi.Input<string>;
  /** RPO target of the fresh service (label). */
  readonly rpoSeconds: pulumi.Input<number>;
  /** RTO target: the restore records its measured time against it. */
  readonly rtoSeconds: pulumi.Input<number>;
  /** Where the backups are read from, with restore (read-only) credentials. */
  readonly s3: S3Location;
  /** The catalog (recovery point lookup, disaster_recovery_log). */
  readonly catalog: CatalogConnection;
  /** age identity (private key): a restore must decrypt. */
  readonly encryptionIdentity: pulumi.Input<string>;
  /** volume: restic repository password. */
  readonly resticPassword?: pulumi.Input<string>;
  /** postgres/redis: password of the fresh service. */
  readonly password?: pulumi.Input<string>;
  /** postgres: superuser of the fresh service. @default "postgres" */
  readonly user?: pulumi.Input<string>;
  /** Network names the restore container joins (attachable overlay). @default [] */
  readonly containerNetworks?: pulumi.Input<pulumi.Input<string>[]>;
  /** Networks of the fresh service. @default [] */
  readonly networks?: pulumi.Input<pulumi.Input<string>[]>;
  /**
   * Constraints that put the fresh service on the node where the restore ran (a local volume
   * lives on one node). @default []
   */
  readonly placement?: pulumi.Input<pulumi.Input<string>[]>;
  /** Arguments after the service image's command (a stand-in's kind). @default [] */
  readonly args?: string[];
  /**
   * Extra DNS names on its networks: the stable name clients use (`postgresql`), when the
   * rebuilt service replaces the lost one; none for a restore aside. @default []
   */
  readonly aliases?: string[];
}

/** The agent's restore flags for a recovery point: none for latest, --time, or --backup-id. */
export function pointFlags(point: string): string[] {
  if (point === "latest") return [];
  return /^[0-9a-f]{8}-[0-9a-f]{4}-/i.test(point) ? ["--backup-id", point] : ["--time", point];
}

/**
 * An agent command run once to its end in a plain container (not a Swarm service): attached, so
 * the deployment waits for the exit, fails when it fails, and keeps the logs. Credentials go in
 * as uploaded files (0400), like Swarm secrets, never as env.
 */
export function runOnceAgent(
  name: string,
  a: {
    image: pulumi.Input<string>;
    command: pulumi.Input<pulumi.Input<string>[]>;
    env: Record<string, pulumi.Input<string>>;
    files: Array<{ file: string; value: pulumi.Input<string> }>;
    mounts: docker.types.input.ContainerMount[];
    networks: pulumi.Input<pulumi.Input<string>[]>;
    labels: Record<string, pulumi.Input<string>>;
  },
  opts: pulumi.CustomResourceOptions,
): docker.Container {
  return new docker.Container(
    name,
    {
      image: a.image,
      // A container's command is appended to the image's entrypoint (unlike a service's
      // `commands`, which replaces it), so the entrypoint is set here explicitly.
      entrypoints: ["node", AGENT_BIN],
      command: a.command,
      envs: pulumi.all(a.env).apply((e) => Object.entries(e).map(([k, v]) => `${k}=${v}`)),
      uploads: a.files.map(({ file, value }) => ({ file, contentBase64: base64Secret(value), permissions: "0400" })),
      mounts: a.mounts,
      networksAdvanced: pulumi.output(a.networks).apply((ns) => ns.map((n) => ({ name: n }))),
      labels: dockerLabels(a.labels),
      attach: true,
      logs: true,
      mustRun: false,
      restart: "no",
      rm: false,
    },
    opts,
  );
}

export class RecoveryJob extends pulumi.ComponentResource {
  public readonly volumeName: pulumi.Output<string>;
  public readonly restoreContainerId: pulumi.Output<string>;
  public readonly serviceName: pulumi.Output<string>;

  constructor(name: string, args: RecoveryJobArgs, opts?: pulumi.ComponentResourceOptions) {
    super("kryonix:recovery:RecoveryJob", name, {}, opts);
    if (!(ENGINES as readonly string[]).includes(args.engine)) {
      throw new pulumi.ResourceError(`kryonix-dr:services[].engine is "${args.engine}"; accepted: ${ENGINES.join(", ")}`, this);
    }
    if (args.engine === "volume" && args.resticPassword === undefined) {
      throw new pulumi.ResourceError(`restoring a volume-engine service needs kryonix-dr:resticPassword`, this);
    }
    validateInput(args.recoveryPoint, (p) => {
      if (!/^(latest|\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:\d{2})|[0-9a-f-]{36})$/i.test(p)) {
        throw new pulumi.ResourceError(`kryonix-dr:recovery.point is "${p}"; accepted: latest, an ISO timestamp with zone, or a backup id (UUID)`, this);
      }
    });

    // Its own name, never the lost volume's: Docker would hand back an existing volume of that name.
    const volume = new docker.Volume(
      `${name}-volume`,
      { name: pulumi.interpolate`${args.serviceName}-restored`, labels: dockerLabels({ [LABELS.service]: args.service, [LABELS.stateful]: "true", [LABELS.role]: "restore" }) },
      { parent: this },
    );

    // Credentials go in as files (uploads), like Swarm secrets in the sidecars, never as env.
    const files: Array<{ file: string; value: pulumi.Input<string> }> = [
      { file: SECRET_FILES.s3AccessKey, value: args.s3.accessKey },
      { file: SECRET_FILES.s3SecretKey, value: args.s3.secretKey },
      { file: SECRET_FILES.catalogPassword, value: args.catalog.password },
      { file: SECRET_FILES.encryptionIdentity, value: args.encryptionIdentity },
    ];
    if (args.resticPassword !== undefined) files.push({ file: SECRET_FILES.resticPassword, value: args.resticPassword });
    if (args.password !== undefined) files.push({ file: SECRET_FILES.targetPassword, value: args.password });

    const env: Record<string, pulumi.Input<string>> = {
      [AGENT_ENV.service]: args.service,
      [AGENT_ENV.engine]: args.engine,
      [AGENT_ENV.tier]: args.tier,
      [AGENT_ENV.tenantId]: args.tenantId,
      [AGENT_ENV.recoveryPoint]: args.recoveryPoint,
      // No KDR_VOLUME_PATH: that names a backup's source, and the agent refuses to restore onto
      // its source; here the target is the fresh volume, given as --target.
      ...locationEnv(args.s3, args.catalog),
      [AGENT_ENV.rtoSeconds]: pulumi.output(args.rtoSeconds).apply(String),
      [AGENT_ENV.rpoSeconds]: pulumi.output(args.rpoSeconds).apply(String),
    };
    const restore = runOnceAgent(`${name}-restore`, {
      image: args.agentImage,
      command: pulumi.all([args.dataPath, args.recoveryPoint]).apply(([target, point]) => ["restore", "--target", target, ...pointFlags(point)]),
      env,
      files,
      mounts: [{ type: "volume", source: volume.name, target: args.dataPath }],
      networks: args.containerNetworks ?? [],
      labels: { [LABELS.role]: "restore", [LABELS.service]: args.service },
    }, { parent: this });

    const fresh = new ProtectedService(
      `${name}-service`,
      {
        service: args.service,
        engine: args.engine,
        tier: args.tier,
        rpoSeconds: args.rpoSeconds,
        rtoSeconds: args.rtoSeconds,
        image: args.image,
        serviceName: args.serviceName,
        dataPath: args.dataPath,
        // Also through the restore's id, so the mount itself records the dependency (tools that
        // read per-resource dependencies, e.g. a destroy order, see it, not only the component).
        volumeName: pulumi.all([restore.id, volume.name]).apply(([, v]) => v),
        user: args.user,
        password: args.password,
        networks: args.networks,
        placement: args.placement,
        aliases: args.aliases ?? [],
        ...(args.args?.length ? { args: args.args } : {}),
      },
      { parent: this, dependsOn: [restore] },
    );

    this.volumeName = volume.name;
    this.restoreContainerId = restore.id;
    this.serviceName = fresh.serviceName;
    this.registerOutputs({ volumeName: this.volumeName, restoreContainerId: this.restoreContainerId, serviceName: this.serviceName });
  }
}
