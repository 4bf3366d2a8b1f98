/**
 * Plans shaped like what the components declare (@pulumi/docker 5.2.0 Service/Secret/Volume
 * inputs, @pulumi/minio 0.17.1 bucket/versioning/ILM/IAM inputs, @pulumi/command local.Command),
 * with secret inputs redacted to "[secret]" as `kryonix-dr plan --json` prints them.
 * `compliantPlan()` passes every policy; tests mutate a copy to break one thing at a time.
 */
import { AGENT_ENV, LABELS, objectPrefix, BACKUP_CLASSES } from "../../../contract/index.js";
import type { PlannedResource } from "../../../policies/evaluate.js";

export const SECRET = "[secret]";
const STACK = "urn:pulumi:local::kryonix-dr";

export const T = {
  service: "docker:index/service:Service",
  dockerSecret: "docker:index/secret:Secret",
  volume: "docker:index/volume:Volume",
  bucket: "minio:index/s3Bucket:S3Bucket",
  versioning: "minio:index/s3BucketVersioning:S3BucketVersioning",
  ilm: "minio:index/ilmPolicy:IlmPolicy",
  bucketPolicy: "minio:index/s3BucketPolicy:S3BucketPolicy",
  iamUser: "minio:index/iamUser:IamUser",
  iamPolicy: "minio:index/iamPolicy:IamPolicy",
  attachment: "minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment",
  command: "command:local:Command",
} as const;

function urn(type: string, name: string): string {
  return `${STACK}::${type}::${name}`;
}

function res(type: string, name: string, inputs: Record<string, unknown>, parent?: string): PlannedResource {
  return { type, name, urn: urn(type, name), inputs, ...(parent ? { parent } : {}) };
}

export function labels(m: Record<string, string>): Array<{ label: string; value: string }> {
  return Object.entries({ [LABELS.managed]: "true", ...m }).map(([label, value]) => ({ label, value }));
}

/** A protected (application) service, as the local/recovery stacks declare them. */
export function appService(
  name: string,
  opts: { image: string; volume?: string; dataPath?: string; labels?: Record<string, string>; env?: Record<string, unknown>; args?: string[]; placement?: string[] },
): PlannedResource {
  return res(T.service, `${name}-service`, {
    name,
    labels: labels({ ...opts.labels }),
    mode: { replicated: { replicas: 1 } },
    taskSpec: {
      containerSpec: {
        image: opts.image,
        env: opts.env ?? {},
        ...(opts.args ? { args: opts.args } : {}),
        mounts: opts.volume ? [{ type: "volume", source: opts.volume, target: opts.dataPath ?? "/data" }] : [],
        secrets: [],
      },
      restartPolicy: { condition: "any" },
      ...(opts.placement ? { placement: { constraints: opts.placement } } : {}),
    },
  });
}

export interface SidecarOpts {
  service: string;
  engine: "postgres" | "redis" | "volume";
  tier: "critical" | "important" | "secondary";
  bucket: string;
  full?: string;
  incremental?: string;
  fullDays?: number;
  rpoSeconds?: number;
  rtoSeconds?: number;
  walSwitchSeconds?: number;
  volume?: string;
  placement?: string[];
}

/** A BackupSidecar component and its children, as components/backup-sidecar.ts declares them. */
export function sidecar(o: SidecarOpts): PlannedResource[] {
  const comp = `${o.service}-sidecar`;
  const parent = urn("kryonix:backup:BackupSidecar", comp);
  const rpo = String(o.rpoSeconds ?? 300);
  const rto = String(o.rtoSeconds ?? 900);
  const env: Record<string, string> = {
    [AGENT_ENV.service]: o.service,
    [AGENT_ENV.engine]: o.engine,
    [AGENT_ENV.tenantId]: "00000000-0000-4000-8000-000000000001",
    [AGENT_ENV.tier]: o.tier,
    [AGENT_ENV.s3Endpoint]: "http://172.18.0.1:7480",
    [AGENT_ENV.s3Region]: "primary",
    [AGENT_ENV.s3Bucket]: o.bucket,
    [AGENT_ENV.catalogHost]: "172.18.0.1",
    [AGENT_ENV.catalogPort]: "5432",
    [AGENT_ENV.catalogDatabase]: "kryonix_dr",
    [AGENT_ENV.catalogUser]: "kdr_writer",
    [AGENT_ENV.scheduleFull]: o.full ?? "0 2 * * *",
    [AGENT_ENV.scheduleIncremental]: o.incremental ?? "0 */6 * * *",
    [AGENT_ENV.rpoSeconds]: rpo,
    [AGENT_ENV.rtoSeconds]: rto,
    [AGENT_ENV.retentionFullDays]: String(o.fullDays ?? 30),
    [AGENT_ENV.retentionIncrementalDays]: "7",
    [AGENT_ENV.retentionWalDays]: "7",
    [AGENT_ENV.lockMode]: "GOVERNANCE",
    [AGENT_ENV.metricsPort]: "9469",
    [AGENT_ENV.stateDir]: "/var/lib/kryonix-dr",
  };
  if (o.engine === "postgres") env[AGENT_ENV.walSwitchSeconds] = String(o.walSwitchSeconds ?? 30);
  if (o.engine === "volume") env[AGENT_ENV.volumePath] = "/data";
  const secretNames = ["s3-access-key", "s3-secret-key", "catalog-password", "age-recipient", ...(o.engine === "volume" ? ["restic-password"] : ["target-password"])];
  const secrets = secretNames.map((role) =>
    res(T.dockerSecret, `${comp}-${role}`, { data: SECRET, labels: labels({ [LABELS.protects]: o.service, [LABELS.role]: "sidecar" }) }, parent),
  );
  const mounts: Array<Record<string, unknown>> = [{ type: "volume", source: `${comp}-state`, target: "/var/lib/kryonix-dr" }];
  if (o.volume) mounts.push({ type: "volume", source: o.volume, target: "/data", readOnly: true });
  return [
    { type: "kryonix:backup:BackupSidecar", name: comp, urn: parent, inputs: {} },
    ...secrets,
    res(T.volume, `${comp}-state`, { labels: labels({ [LABELS.protects]: o.service, [LABELS.role]: "sidecar" }) }, parent),
    res(
      T.service,
      `${comp}-service`,
      {
        labels: labels({
          [LABELS.protects]: o.service,
          [LABELS.role]: "sidecar",
          [LABELS.engine]: o.engine,
          [LABELS.tier]: o.tier,
          [LABELS.rpoSeconds]: rpo,
          [LABELS.rtoSeconds]: rto,
        }),
        mode: { replicated: { replicas: 1 } },
        taskSpec: {
          containerSpec: {
            image: "kryonix-dr/agent:local",
            commands: ["node", "/opt/kryonix-dr/agent.cjs", "serve"],
            env,
            secrets: secretNames.map((role) => ({ secretId: `${comp}-${role}-id`, secretName: `${comp}-${role}`, fileName: `kdr-${role}`, fileMode: 256 })),
            mounts,
          },
          restartPolicy: { condition: "any", delay: "10s" },
          ...(o.placement ? { placement: { constraints: o.placement } } : {}),
        },
      },
      parent,
    ),
  ];
}

export interface StorageService {
  name: string;
  tier: "critical" | "important" | "secondary";
  engine: "postgres" | "redis" | "volume";
  fullDays?: number;
}

const policyDoc = (statements: unknown[]) => JSON.stringify({ Version: "2012-10-17", Statement: statements });

/** The least-privilege sidecar policy of components/backup-storage.ts. */
export function sidecarPolicyDoc(bucket: string, s: StorageService): string {
  const prefixes = BACKUP_CLASSES.map((c) => objectPrefix(c, s.name));
  const statements: unknown[] = [
    { Sid: "ListOwnPrefixes", Effect: "Allow", Action: ["s3:ListBucket"], Resource: [`arn:aws:s3:::${bucket}`], Condition: { StringLike: { "s3:prefix": prefixes } } },
    { Sid: "BucketFacts", Effect: "Allow", Action: ["s3:GetBucketLocation", "s3:GetBucketObjectLockConfiguration"], Resource: [`arn:aws:s3:::${bucket}`] },
    { Sid: "WriteReadOwnPrefixes", Effect: "Allow", Action: ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"], Resource: prefixes.map((p) => `arn:aws:s3:::${bucket}/${p}*`) },
    { Sid: "FindOwnStaleUploads", Effect: "Allow", Action: ["s3:ListBucketMultipartUploads"], Resource: [`arn:aws:s3:::${bucket}`] },
  ];
  if (s.engine === "volume") {
    statements.push({ Sid: "ResticLockFiles", Effect: "Allow", Action: ["s3:DeleteObject"], Resource: [`arn:aws:s3:::${bucket}/restic/${s.name}/g*/locks/*`] });
  }
  statements.push({ Sid: "NeverUnlock", Effect: "Deny", Action: ["s3:PutObjectRetention", "s3:BypassGovernanceRetention", "s3:PutObjectLegalHold", "s3:DeleteObjectVersion"], Resource: [`arn:aws:s3:::${bucket}/*`] });
  return policyDoc(statements);
}

/** A BackupStorage component: one bucket per tier with versioning, ILM, default retention, users. */
export function storage(
  prefix: string,
  services: StorageService[],
  region: { comp: string; provider?: string; endpoint: string } = { comp: "storage", endpoint: "http://172.18.0.1:7480" },
): PlannedResource[] {
  const comp = region.comp;
  const parent = urn("kryonix:storage:BackupStorage", comp);
  const out: PlannedResource[] = [{ type: "kryonix:storage:BackupStorage", name: comp, urn: parent, inputs: {} }];
  const minioRes = (type: string, name: string, inputs: Record<string, unknown>) => ({ ...res(type, name, inputs, parent), ...(region.provider ? { provider: region.provider } : {}) });
  for (const tier of ["critical", "important", "secondary"] as const) {
    const svcs = services.filter((s) => s.tier === tier);
    if (svcs.length === 0) continue;
    const bucket = `${prefix}-${tier}`;
    const days = Math.max(...svcs.map((s) => s.fullDays ?? 30), 7);
    const rules = svcs.flatMap((s) =>
      BACKUP_CLASSES.map((cls) => ({
        id: `${cls}-${s.name}`,
        status: "Enabled",
        filter: objectPrefix(cls, s.name),
        expiration: cls === "restic" ? "DeleteMarker" : `${cls === "full" || cls === "logical" ? (s.fullDays ?? 30) : 7}d`,
        noncurrentVersionExpirationDays: days,
      })),
    );
    rules.push({ id: "expired-delete-markers", status: "Enabled", filter: "", expiration: "DeleteMarker", noncurrentVersionExpirationDays: days });
    out.push(
      minioRes(T.bucket, `${comp}-${tier}`, { bucket, acl: "private", objectLocking: true, forceDestroy: false }),
      minioRes(T.versioning, `${comp}-${tier}-versioning`, { bucket, versioningConfiguration: { status: "Enabled" } }),
      minioRes(T.ilm, `${comp}-${tier}-lifecycle`, { bucket, rules }),
      res(
        T.command,
        `${comp}-${tier}-default-retention`,
        {
          create: `node bin/kryonix-dr.mjs s3 put-default-retention --bucket ${bucket} --mode GOVERNANCE --days ${days}`,
          environment: { KDR_S3_ENDPOINT: region.endpoint, KDR_S3_REGION: comp, AWS_ACCESS_KEY_ID: SECRET, AWS_SECRET_ACCESS_KEY: SECRET },
          triggers: [bucket, "GOVERNANCE", days],
        },
        parent,
      ),
    );
  }
  const user = (role: string, policy: string) => {
    out.push(
      minioRes(T.iamUser, `${comp}-${role}-user`, { name: `kdr-${role}`, forceDestroy: true }),
      minioRes(T.iamPolicy, `${comp}-${role}-policy`, { name: `kdr-${role}`, policy }),
      minioRes(T.attachment, `${comp}-${role}-attachment`, { userName: `kdr-${role}`, policyName: `kdr-${role}` }),
    );
  };
  for (const s of services) user(`sidecar-${s.name}`, sidecarPolicyDoc(`${prefix}-${s.tier}`, s));
  // The prune user may delete restic packs: it is not a sidecar credential.
  user("prune", policyDoc([{ Effect: "Allow", Action: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], Resource: [`arn:aws:s3:::${prefix}-*/restic/*`] }]));
  return out;
}

/** A minio provider resource (explicit provider of one region). */
export function minioProvider(name: string, server: string): PlannedResource {
  return res("pulumi:providers:minio", name, { minioServer: server, minioSsl: "false", minioUser: SECRET, minioPassword: SECRET, minioRegion: name });
}

/** The replicator service of replication.mode "replicator" for one bucket. */
export function replicator(bucket: string): PlannedResource {
  return res(T.service, `replicator-${bucket}-service`, {
    labels: labels({ [LABELS.role]: "replicator" }),
    taskSpec: {
      containerSpec: {
        image: "kryonix-dr/agent:local",
        commands: ["node", "/opt/kryonix-dr/agent.cjs", "replicate"],
        env: {
          [AGENT_ENV.s3Endpoint]: "http://172.18.0.1:7480",
          [AGENT_ENV.s3Region]: "primary",
          [AGENT_ENV.s3Bucket]: bucket,
          KDR_REPLICA_S3_ENDPOINT: "http://172.18.0.1:7481",
          KDR_REPLICA_S3_REGION: "dr",
          KDR_REPLICA_S3_BUCKET: `${bucket}-replica`,
          KDR_REPLICATION_INTERVAL_SECONDS: "30",
        },
        secrets: [{ secretId: "x", secretName: "replica-key", fileName: "kdr-replica-s3-secret-key" }],
      },
    },
  });
}

/**
 * A complete, compliant plan: PostgreSQL (critical), Redis (important) and a Grafana volume
 * (secondary), each with its sidecar; a stateless Traefik; storage; a replicator for the
 * critical bucket.
 */
/** Where the compliant plan's volume service and its sidecar both run. */
export const GRAFANA_NODE = "node.labels.kryonix.grafana == true";

export function compliantPlan(): PlannedResource[] {
  const bucket = (tier: string) => `kryonix-backups-${tier}`;
  return [
    appService("postgres", {
      image: "kryonix-dr/postgres:15",
      volume: "pgdata",
      dataPath: "/var/lib/postgresql/data",
      labels: { [LABELS.service]: "postgres", [LABELS.stateful]: "true", [LABELS.engine]: "postgres", [LABELS.tier]: "critical", [LABELS.rpoSeconds]: "300", [LABELS.rtoSeconds]: "900" },
      env: { POSTGRES_PASSWORD_FILE: "/run/secrets/postgres-password", PGDATA: "/var/lib/postgresql/data" },
    }),
    ...sidecar({ service: "postgres", engine: "postgres", tier: "critical", bucket: bucket("critical"), rpoSeconds: 300 }),
    appService("redis", { image: "kryonix-dr/redis:7", volume: "redisdata", args: ["--appendonly", "yes", "--port", "6379"] }),
    ...sidecar({ service: "redis", engine: "redis", tier: "important", bucket: bucket("important"), incremental: "*/30 * * * *", rpoSeconds: 3600 }),
    appService("grafana", { image: "grafana/grafana:10.4.2", volume: "grafana-data", dataPath: "/var/lib/grafana", placement: [GRAFANA_NODE] }),
    ...sidecar({ service: "grafana", engine: "volume", tier: "secondary", bucket: bucket("secondary"), volume: "grafana-data", incremental: "", rpoSeconds: 86400, rtoSeconds: 3600, placement: [GRAFANA_NODE] }),
    appService("traefik", { image: "traefik:v2.11", args: ["--providers.docker.swarmMode=true", "--entrypoints.web.address=:80"] }),
    ...storage("kryonix-backups", [
      { name: "postgres", tier: "critical", engine: "postgres" },
      { name: "redis", tier: "important", engine: "redis" },
      { name: "grafana", tier: "secondary", engine: "volume" },
    ]),
    replicator(bucket("critical")),
  ];
}

/** A deep copy to mutate. */
export function copy(plan: PlannedResource[]): PlannedResource[] {
  return structuredClone(plan);
}

/** The one resource of a type and name (throws otherwise, naming what exists). */
export function find(plan: PlannedResource[], type: string, name: string): PlannedResource {
  const r = plan.filter((x) => x.type === type && x.name === name);
  if (r.length !== 1) throw new Error(`fixture has ${r.length} ${type} "${name}"; names: ${plan.filter((x) => x.type === type).map((x) => x.name).join(", ")}`);
  return r[0]!;
}

/** The container env of a service in a plan. */
export function envOf(plan: PlannedResource[], serviceResourceName: string): Record<string, unknown> {
  const svc = find(plan, T.service, serviceResourceName);
  return ((svc.inputs.taskSpec as Record<string, unknown>).containerSpec as Record<string, unknown>).env as Record<string, unknown>;
}

export function containerSpec(plan: PlannedResource[], serviceResourceName: string): Record<string, unknown> {
  const svc = find(plan, T.service, serviceResourceName);
  return (svc.inputs.taskSpec as Record<string, unknown>).containerSpec as Record<string, unknown>;
}

/** Sets (or with undefined, removes) one label of a docker resource. */
export function setLabel(r: PlannedResource, label: string, value: string | undefined): void {
  const list = (r.inputs.labels as Array<{ label: string; value: string }>).filter((l) => l.label !== label);
  if (value !== undefined) list.push({ label, value });
  r.inputs.labels = list;
}

export function without(plan: PlannedResource[], pred: (r: PlannedResource) => boolean): PlannedResource[] {
  return plan.filter((r) => !pred(r));
}
