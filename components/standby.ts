/**
 * The warm standby of one critical service in the DR region, and its promotion (issue #14).
 *
 * PostgreSQL: a data volume seeded once from this region's copies of the newest base and its WAL
 * (a run-once `kdr-agent standby seed` container), the server running on it as a standby that
 * streams from the primary while it answers, and a follower (`kdr-agent standby follow`, same
 * volume) that stages each WAL segment as soon as it has been copied into this region: the
 * standby replays those when it cannot stream, so it keeps following while the primary's network
 * is gone, as long as its archive reached this region.
 * Redis: a replica of the primary (`--replicaof`), and a follower that watches its replication
 * (link up, offset lag) as numbers.
 *
 * `active: true` (kryonix-dr:active on the dr stack) declares a run-once `kdr-agent standby
 * activate` container, which refuses while the primary still answers (unless `force`) and while
 * the standby is behind what the region holds, then promotes it and records the failover. Only
 * after it succeeded does the service change: it takes the stable name clients use (a network
 * alias), the Redis replica loses --replicaof (so a restart stays a master), and the follower
 * goes.
 *
 * The same component brings a service back after a failover (the primary stack's
 * kryonix-dr:failback): a standby of the promoted service in the other region, and with
 * `handover: "switchover"` a run-once `kdr-agent standby switchover` instead of the activation: the
 * promoted side is fenced, the standby catches up exactly and is promoted; then, as above, it
 * takes the stable name.
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import { AGENT_ENV, LABELS, SECRET_FILES } from "../contract/index.js";
import { AGENT_BIN } from "./backup-sidecar.js";
import { runOnceAgent } from "./recovery-job.js";
import { ProtectedService } from "./protected-service.js";
import { base64Secret, dockerLabels, locationEnv, secretFileName, type CatalogConnection, type S3Location } from "./shared.js";

export interface WarmStandbyArgs {
  /** Logical name of the primary service (catalog service_name). */
  readonly service: string;
  readonly engine: "postgres" | "redis";
  readonly tier: pulumi.Input<string>;
  readonly tenantId: pulumi.Input<string>;
  readonly rpoSeconds: pulumi.Input<number>;
  readonly rtoSeconds: pulumi.Input<number>;
  /** The service's own image (the same as the primary's). */
  readonly image: pulumi.Input<string>;
  readonly agentImage: pulumi.Input<string>;
  /** Swarm name of the standby. */
  readonly serviceName: string;
  /** The name clients use (an alias on the application networks, taken on activation). */
  readonly stableName: pulumi.Input<string>;
  readonly dataPath: pulumi.Input<string>;
  /** Where the primary runs (Redis replicates from it; activation refuses while it answers). */
  readonly primaryHost: pulumi.Input<string>;
  readonly port: pulumi.Input<number>;
  /** postgres: the superuser. */
  readonly user?: pulumi.Input<string>;
  /** The service's password (postgres: required). */
  readonly password?: pulumi.Input<string>;
  /** Promote it: the dr stack's kryonix-dr:active. */
  readonly active: boolean;
  /** Promote even though the primary still answers (activate only). */
  readonly force?: boolean;
  /** How `active` promotes: `activate` (the primary is lost: refuses while it answers) or `switchover` (the planned hand-over back: needs it answering, fences it). @default activate */
  readonly handover?: "activate" | "switchover";
  /** Seconds the standby may take to replay what the region holds before activation refuses. */
  readonly catchUpSeconds?: number;
  /** Application networks (ids or names): the standby joins them, with the stable name once active. */
  readonly networks: pulumi.Input<pulumi.Input<string>[]>;
  /** Network names the run-once containers join (attachable overlays). */
  readonly containerNetworks: pulumi.Input<pulumi.Input<string>[]>;
  readonly placement?: pulumi.Input<pulumi.Input<string>[]>;
  /** This region's copies, read with restore (read-only) credentials. */
  readonly s3: S3Location;
  readonly catalog: CatalogConnection;
  /** age identity: the WAL is decrypted here. */
  readonly encryptionIdentity: pulumi.Input<string>;
}

export class WarmStandby extends pulumi.ComponentResource {
  public readonly serviceName: pulumi.Output<string>;
  public readonly volumeName: pulumi.Output<string>;
  /** The activation (or switchover) container (active only). */
  public readonly activationId?: pulumi.Output<string>;

  constructor(name: string, args: WarmStandbyArgs, opts?: pulumi.ComponentResourceOptions) {
    super("kryonix:dr:WarmStandby", name, {}, opts);
    if (args.engine === "postgres" && args.password === undefined) {
      throw new pulumi.ResourceError(`the PostgreSQL standby of ${args.service} needs its password: set kryonix-dr:targetPassword-${args.service} on the dr stack (the primary's)`, this);
    }
    const labels = { [LABELS.service]: args.service, [LABELS.role]: "standby" };
    const env: Record<string, pulumi.Input<string>> = {
      [AGENT_ENV.service]: args.service,
      [AGENT_ENV.engine]: args.engine,
      [AGENT_ENV.tier]: args.tier,
      [AGENT_ENV.tenantId]: args.tenantId,
      [AGENT_ENV.targetHost]: args.serviceName,
      [AGENT_ENV.targetPort]: pulumi.output(args.port).apply(String),
      [AGENT_ENV.primaryHost]: args.primaryHost,
      ...locationEnv(args.s3, args.catalog),
      [AGENT_ENV.rpoSeconds]: pulumi.output(args.rpoSeconds).apply(String),
      [AGENT_ENV.rtoSeconds]: pulumi.output(args.rtoSeconds).apply(String),
      [AGENT_ENV.catchUpSeconds]: String(args.catchUpSeconds ?? 60),
    };
    if (args.user !== undefined) env[AGENT_ENV.targetUser] = args.user;
    const files: Array<{ role: string; file: string; value: pulumi.Input<string> }> = [
      { role: "s3-access-key", file: SECRET_FILES.s3AccessKey, value: args.s3.accessKey },
      { role: "s3-secret-key", file: SECRET_FILES.s3SecretKey, value: args.s3.secretKey },
      { role: "catalog-password", file: SECRET_FILES.catalogPassword, value: args.catalog.password },
      { role: "age-identity", file: SECRET_FILES.encryptionIdentity, value: args.encryptionIdentity },
    ];
    if (args.password !== undefined) files.push({ role: "target-password", file: SECRET_FILES.targetPassword, value: args.password });
    const runOnce = (suffix: string, command: pulumi.Input<string>[], mounts: docker.types.input.ContainerMount[]) =>
      runOnceAgent(`${name}-${suffix}`, { image: args.agentImage, command, env, files, mounts, networks: args.containerNetworks, labels: { ...labels, [LABELS.role]: `standby-${suffix}` } }, { parent: this });

    let volumeName: pulumi.Output<string> | undefined;
    let volume: docker.Volume | undefined;
    const deps: pulumi.Resource[] = [];
    if (args.engine === "postgres") {
      volume = new docker.Volume(`${name}-data`, { name: `${args.serviceName}-data`, labels: dockerLabels({ ...labels, [LABELS.stateful]: "true" }) }, { parent: this });
      const seed = runOnce("seed", ["standby", "seed", "--target", args.dataPath], [{ type: "volume", source: volume.name, target: args.dataPath }]);
      volumeName = pulumi.all([seed.id, volume.name]).apply(([, v]) => v);
    }
    // The follower: PostgreSQL's stages the WAL copied to this region beside the standby (same
    // volume); both export the standby's replication and report it to the catalog (status and the
    // health job judge it against the RPO). Redis's only watches the replica, so it gets the
    // service's password and the catalog's, and no S3 key or age identity.
    if (!args.active) {
      const followerFiles = args.engine === "postgres" ? files : files.filter((f) => f.role === "target-password" || f.role === "catalog-password");
      const secretRefs = followerFiles.map(({ role, file, value }) => {
        const s = new docker.Secret(`${name}-follower-${role}`, { data: base64Secret(value), labels: dockerLabels({ ...labels, [LABELS.role]: "standby-follower" }) }, { parent: this });
        return { secretId: s.id, secretName: s.name, fileName: secretFileName(file), fileMode: 0o400 };
      });
      new docker.Service(
        `${name}-follower`,
        {
          name: `${args.serviceName}-follower`,
          labels: dockerLabels({ ...labels, [LABELS.role]: "standby-follower" }),
          mode: { replicated: { replicas: 1 } },
          taskSpec: {
            containerSpec: {
              image: args.agentImage,
              commands: ["node", AGENT_BIN, "standby", "follow", ...(volumeName ? ["--target", args.dataPath] : [])],
              env,
              secrets: secretRefs,
              mounts: volumeName ? [{ type: "volume", source: volumeName, target: args.dataPath }] : [],
              stopGracePeriod: "30s",
            },
            networksAdvanceds: pulumi.output(args.networks).apply((ids) => ids.map((id) => ({ id }))),
            placement: { constraints: args.placement ?? [] },
            restartPolicy: { condition: "any", delay: "10s" },
          },
        },
        { parent: this },
      );
    }
    let promoted: pulumi.Output<string> = pulumi.output("");
    if (args.active) {
      // PostgreSQL: with its data mounted, so that the primary's password for streaming goes on promotion.
      const how = args.handover ?? "activate";
      const activate = runOnce(
        how,
        ["standby", how, ...(args.force && how === "activate" ? ["--force"] : []), ...(volume ? ["--target", args.dataPath] : [])],
        volume ? [{ type: "volume", source: volume.name, target: args.dataPath }] : [],
      );
      deps.push(activate);
      this.activationId = activate.id;
      // Through the activation's id, so the service's own inputs wait for the promotion to have
      // succeeded (a refusal stops the deployment before any client is moved).
      promoted = activate.id;
    }
    const svc = new ProtectedService(
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
        volumeName,
        user: args.user,
        password: args.password,
        networks: args.networks,
        aliases: pulumi.all([promoted, args.stableName]).apply(([, n]) => (args.active ? [n] : [])),
        args: args.engine === "redis" ? pulumi.all([promoted, args.primaryHost, args.port]).apply(([, h, p]) => (args.active ? [] : ["--replicaof", h, String(p)])) : undefined,
        placement: args.placement,
        role: args.active ? "promoted" : "standby",
      },
      { parent: this, dependsOn: deps },
    );
    // Through the service's id: what connects to it (the promoted service's sidecar) waits for it.
    this.serviceName = pulumi.all([svc.serviceId, svc.serviceName]).apply(([, n]) => n);
    this.volumeName = svc.volumeName;
    this.registerOutputs({ serviceName: this.serviceName, volumeName: this.volumeName });
  }
}
