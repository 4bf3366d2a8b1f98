/**
 * A Swarm service running the agent in `cron` mode: it runs a list of agent commands on their
 * schedules (croner inside the agent), reporting every run to the catalog. Stacks declare a
 * maintenance cron (health checks, prune) and a drill cron (restore drills; the only cron with
 * the age identity).
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import { AGENT_ENV, LABELS } from "../contract/index.js";
import { AGENT_BIN, HEALTHCHECK } from "./backup-sidecar.js";
import { base64Secret, dockerLabels, secretFileName, validateInput, swarmLimits, type AgentLimits } from "./shared.js";

export interface CronJobEntry {
  /** Unique within the cron service; becomes the job name in logs and metrics. */
  readonly name: string;
  /** croner expression, 5 or 6 fields. */
  readonly schedule: string;
  /** Agent argv, e.g. ["prune", "--service", "pg", ...]: settings as flags (contract.AGENT_ENV in kebab case). */
  readonly command: readonly string[];
}

export interface CronJobArgs {
  /** Agent image. */
  readonly image: pulumi.Input<string>;
  /** What this cron is for; becomes the `kryonix.dr.role` label (`cron-<purpose>`). */
  readonly purpose: pulumi.Input<string>;
  /** Jobs to run; they travel as one env var (KDR_CRON_JOBS), so they may come from Outputs. */
  readonly jobs: pulumi.Input<readonly CronJobEntry[]>;
  /** Non-secret settings; keys must be contract.AGENT_ENV names. @default {} */
  readonly env?: Record<string, pulumi.Input<string>>;
  /** Credentials and keys, each a Swarm secret mounted at its contract.SECRET_FILES path. @default [] */
  readonly secrets?: ReadonlyArray<{ readonly file: string; readonly value: pulumi.Input<string> }>;
  /** Swarm service name. @default auto-named by the provider */
  readonly serviceName?: pulumi.Input<string>;
  /** @default [] */
  readonly networks?: pulumi.Input<pulumi.Input<string>[]>;
  /** @default [] */
  readonly placement?: pulumi.Input<pulumi.Input<string>[]>;
  /** @default { cpus: 1, memoryMiB: 1024 } */
  readonly limits?: AgentLimits;
  /** Extra volume mounts (e.g. scratch space for drills). @default [] */
  readonly mounts?: docker.types.input.ServiceTaskSpecContainerSpecMount[];
}

export class CronJob extends pulumi.ComponentResource {
  public readonly serviceId: pulumi.Output<string>;

  constructor(name: string, args: CronJobArgs, opts?: pulumi.ComponentResourceOptions) {
    super("kryonix:cron:CronJob", name, {}, opts);
    validateInput(args.jobs, (jobs) => {
      const names = jobs.map((j) => j.name);
      if (names.length === 0 || new Set(names).size !== names.length || names.some((n) => !/^[a-z][a-z0-9-]*$/.test(n))) {
        throw new pulumi.ResourceError(`cron ${name}: jobs need unique lowercase names (got ${JSON.stringify(names)})`, this);
      }
    });
    const allowed = new Set<string>(Object.values(AGENT_ENV));
    const unknown = Object.keys(args.env ?? {}).filter((k) => !allowed.has(k));
    if (unknown.length > 0) {
      throw new pulumi.ResourceError(`cron ${name}: env ${unknown.join(", ")} is not in contract.AGENT_ENV; credentials go in 'secrets'`, this);
    }
    const role = pulumi.interpolate`cron-${args.purpose}`;

    const secretRefs = (args.secrets ?? []).map(({ file, value }) => {
      const fileName = secretFileName(file);
      const s = new docker.Secret(`${name}-${fileName.replace(/^kdr-/, "")}`, { data: base64Secret(value), labels: dockerLabels({ [LABELS.role]: role }) }, { parent: this });
      return { secretId: s.id, secretName: s.name, fileName, fileMode: 0o400 };
    });

    const jobs = pulumi.output(args.jobs).apply((list) => JSON.stringify(list.map((j) => ({ name: j.name, schedule: j.schedule, command: j.command }))));
    const limits = args.limits ?? { cpus: 1, memoryMiB: 1024 };
    const service = new docker.Service(
      `${name}-service`,
      {
        name: args.serviceName,
        labels: dockerLabels({ [LABELS.role]: role }),
        mode: { replicated: { replicas: 1 } },
        taskSpec: {
          containerSpec: {
            image: args.image,
            commands: ["node", AGENT_BIN, "cron"],
            env: { ...(args.env ?? {}), [AGENT_ENV.cronJobs]: jobs },
            secrets: secretRefs,
            mounts: args.mounts ?? [],
            healthcheck: { tests: HEALTHCHECK, interval: "60s", timeout: "15s", retries: 3 },
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
    this.registerOutputs({ serviceId: this.serviceId });
  }
}
