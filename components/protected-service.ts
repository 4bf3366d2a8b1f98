/**
 * A stateful service that kryonix-dr itself declares (the local stack's demo platform and the
 * fresh services of a recovery): its data volume and its Swarm service, labelled stateful with
 * its RPO/RTO targets, tier and engine so policies and drills can find it.
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import { ENGINES, LABELS, SECRET_FILES, type Engine } from "../contract/index.js";
import { base64Secret, dockerLabels, secretFileName } from "./shared.js";

export interface ProtectedServiceArgs {
  /** Logical service name (the `kryonix.dr.service` label). */
  readonly service: pulumi.Input<string>;
  /** One of contract.ENGINES. Plain: it decides the environment the image gets. */
  readonly engine: Engine;
  /** One of contract.TIERS. */
  readonly tier: pulumi.Input<string>;
  /** RPO target, declared as a label (policies require it). */
  readonly rpoSeconds: pulumi.Input<number>;
  /** RTO target, declared as a label. */
  readonly rtoSeconds: pulumi.Input<number>;
  /** The service's image (takes its password from a *_FILE env, as the official images do). */
  readonly image: pulumi.Input<string>;
  /** Swarm service name; also its DNS name on the network, which the sidecar connects to. */
  readonly serviceName: pulumi.Input<string>;
  /** Where the data lives in the container. */
  readonly dataPath: pulumi.Input<string>;
  /** An existing volume to use (a recovery's freshly restored one). @default a new volume `<serviceName>-data` */
  readonly volumeName?: pulumi.Input<string>;
  /** postgres: superuser name. @default "postgres" */
  readonly user?: pulumi.Input<string>;
  /** Password, mounted as the kdr-target-password secret. @default none */
  readonly password?: pulumi.Input<string>;
  /** @default [] */
  readonly networks?: pulumi.Input<pulumi.Input<string>[]>;
  /** @default [] */
  readonly placement?: pulumi.Input<pulumi.Input<string>[]>;
  /** Extra DNS names on every network: the stable name clients use (`postgresql`). @default [] */
  readonly aliases?: pulumi.Input<pulumi.Input<string>[]>;
  /** Arguments after the image's command (a Redis replica's --replicaof). @default [] */
  readonly args?: pulumi.Input<pulumi.Input<string>[]>;
  /** What it is, when not the primary (a DR region's standby, or a promoted one): the kryonix.dr.role label. */
  readonly role?: "standby" | "promoted";
}

export class ProtectedService extends pulumi.ComponentResource {
  public readonly volumeName: pulumi.Output<string>;
  public readonly serviceName: pulumi.Output<string>;
  public readonly serviceId: pulumi.Output<string>;

  constructor(name: string, args: ProtectedServiceArgs, opts?: pulumi.ComponentResourceOptions) {
    super("kryonix:platform:ProtectedService", name, {}, opts);
    if (!(ENGINES as readonly string[]).includes(args.engine)) {
      throw new pulumi.ResourceError(`kryonix-dr:services[].engine is "${args.engine}"; accepted: ${ENGINES.join(", ")}`, this);
    }
    if (args.engine === "postgres" && args.password === undefined) {
      throw new pulumi.ResourceError(`a postgres service needs a password (kryonix-dr:targetPassword-<service>)`, this);
    }
    const labels = {
      [LABELS.stateful]: "true",
      [LABELS.service]: args.service,
      [LABELS.engine]: args.engine,
      [LABELS.tier]: args.tier,
      [LABELS.rpoSeconds]: pulumi.output(args.rpoSeconds).apply(String),
      [LABELS.rtoSeconds]: pulumi.output(args.rtoSeconds).apply(String),
      ...(args.role ? { [LABELS.role]: args.role } : {}),
    };
    const volumeName =
      args.volumeName !== undefined
        ? pulumi.output(args.volumeName)
        : new docker.Volume(`${name}-data`, { name: pulumi.interpolate`${args.serviceName}-data`, labels: dockerLabels({ [LABELS.service]: args.service, [LABELS.stateful]: "true" }) }, { parent: this }).name;

    const secrets: docker.types.input.ServiceTaskSpecContainerSpecSecret[] = [];
    const env: Record<string, pulumi.Input<string>> = {};
    if (args.password !== undefined) {
      const s = new docker.Secret(`${name}-password`, { data: base64Secret(args.password), labels: dockerLabels({ [LABELS.service]: args.service }) }, { parent: this });
      // Readable by all (Docker's default): the images read it after dropping root to the
      // database user, the only process in the container.
      secrets.push({ secretId: s.id, secretName: s.name, fileName: secretFileName(SECRET_FILES.targetPassword), fileMode: 0o444 });
    }
    // The *_FILE convention of the official images: the password never sits in env.
    if (args.engine === "postgres") {
      env.POSTGRES_USER = args.user ?? "postgres";
      env.POSTGRES_PASSWORD_FILE = SECRET_FILES.targetPassword;
      env.PGDATA = args.dataPath;
    } else if (args.engine === "redis" && args.password !== undefined) {
      env.REDIS_PASSWORD_FILE = SECRET_FILES.targetPassword;
    }

    const service = new docker.Service(
      `${name}-service`,
      {
        name: args.serviceName,
        labels: dockerLabels(labels),
        mode: { replicated: { replicas: 1 } },
        taskSpec: {
          containerSpec: {
            image: args.image,
            ...(args.args !== undefined ? { args: args.args } : {}),
            env,
            secrets,
            mounts: [{ type: "volume", source: volumeName, target: args.dataPath }],
            labels: dockerLabels(labels),
            stopGracePeriod: "60s",
          },
          networksAdvanceds: pulumi.all([args.networks ?? [], args.aliases ?? []]).apply(([ids, aliases]) => ids.map((id) => ({ id, aliases }))),
          placement: { constraints: args.placement ?? [] },
          restartPolicy: { condition: "any", delay: "5s" },
        },
        // Clients (the sidecar) reach the task itself through DNS: a stateful single-replica
        // service gains nothing from a virtual IP, and VIPs need IPVS in the kernel, which some
        // hosts (this project's test machines) lack, so the VIP is unreachable there.
        endpointSpec: { mode: "dnsrr" },
      },
      { parent: this },
    );
    this.volumeName = volumeName;
    this.serviceName = pulumi.output(args.serviceName);
    this.serviceId = service.id;
    this.registerOutputs({ volumeName: this.volumeName, serviceName: this.serviceName, serviceId: this.serviceId });
  }
}
