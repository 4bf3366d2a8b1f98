/**
 * recovery: `pulumi up` rebuilds the listed services from backups. For each: a fresh volume, a
 * run-once restore job at the configured recovery point, then the fresh service; once they run,
 * their sidecars resume protection (new least-privilege users on the existing buckets).
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import * as command from "@pulumi/command";
import { LABELS, TOOL_ENV } from "../contract/index.js";
import { BackupStorage } from "../components/backup-storage.js";
import { RecoveryJob } from "../components/recovery-job.js";
import { dockerLabels } from "../components/shared.js";
import { SECRET, type RecoveryPoint, type Secrets, type Specs } from "./config.js";
import { declareSidecars, minioProvider, storageServices, type DeclaredTarget } from "./common.js";

/** The recovery point as the agent takes it (KDR_RECOVERY_POINT). */
export function recoveryPointValue(p: RecoveryPoint): string {
  return p.kind === "latest" ? "latest" : p.kind === "time" ? p.at : p.id;
}

/**
 * recovery.catalog rebuild|restore: before any restore job, `kryonix-dr catalog <mode> --from-env`
 * gets the catalog back from the source region (local/catalog-recovery.ts), on the machine that
 * runs the deployment (it needs Docker and the catalog server). `existing` declares nothing.
 */
function declareCatalogStep(specs: Specs, secrets: Secrets, storage: BackupStorage): command.local.Command | undefined {
  const rec = specs.recovery!;
  if (rec.catalog === "existing") return undefined;
  const source = specs.regions[rec.sourceRegion]!;
  const inputs = pulumi
    .all([
      secrets.get(SECRET.catalogAdminPassword),
      secrets.get(SECRET.catalogOwnerPassword),
      secrets.get(SECRET.catalogWriterPassword),
      secrets.get(SECRET.ageIdentity),
      storage.restoreCredentials!.accessKey,
      storage.restoreCredentials!.secretKey,
      pulumi.output(storage.buckets as Record<string, pulumi.Input<string>>),
    ])
    .apply(([adminPassword, ownerPassword, writerPassword, ageIdentity, accessKey, secretKey, buckets]) =>
      JSON.stringify({
        catalog: {
          host: specs.catalog.host,
          port: specs.catalog.port,
          adminUser: specs.catalog.adminUser,
          adminPassword,
          database: specs.catalog.database,
          owner: specs.catalog.owner,
          ownerPassword,
          writer: specs.catalog.writer,
          writerPassword,
          reader: specs.catalog.reader,
        },
        tenantId: specs.tenantId,
        region: { name: source.name, endpoint: source.endpoint },
        buckets: Object.values(buckets),
        restore: { accessKey, secretKey },
        ageIdentity,
        images: { agent: specs.images.agent, postgres: specs.images.postgres },
      }),
    );
  const time = rec.point.kind === "time" ? ` --time ${rec.point.at}` : "";
  return new command.local.Command("catalog", {
    // --json: stdout (the stack output catalogRecovery) is the result; progress goes to stderr.
    create: `node bin/kryonix-dr.mjs catalog ${rec.catalog} --from-env --json${rec.catalog === "restore" ? time : ""}`,
    environment: { [TOOL_ENV.catalogRecovery]: pulumi.secret(inputs) },
  });
}

export function recovery(specs: Specs, secrets: Secrets): Record<string, unknown> {
  const rec = specs.recovery!;
  const source = specs.regions[rec.sourceRegion]!;
  const storage = new BackupStorage(
    "recovery",
    {
      existingBuckets: true,
      region: source.name,
      endpoint: source.endpoint,
      adminAccessKey: secrets.get(source.accessKeyKey),
      adminSecretKey: secrets.get(source.secretKeyKey),
      bucketPrefix: specs.storage.bucketPrefix,
      services: storageServices(specs),
      namePrefix: specs.namePrefix,
      lockMode: specs.storage.lockMode,
      access: { sidecars: true, restore: true },
    },
    { providers: { minio: minioProvider(source, secrets) } },
  );
  const network = new docker.Network("network", {
    name: `${specs.namePrefix}-net`,
    driver: "overlay",
    attachable: true,
    labels: dockerLabels({ [LABELS.role]: "network" }),
  });
  const networks: pulumi.Input<string>[] = [network.id, ...specs.sidecar.networks];
  const point = recoveryPointValue(rec.point);
  const catalogStep = declareCatalogStep(specs, secrets, storage);
  const jobs: RecoveryJob[] = [];
  const declared: Record<string, DeclaredTarget> = {};
  for (const s of specs.services) {
    const job = new RecoveryJob(`recover-${s.name}`, {
      service: s.name,
      engine: s.engine,
      tier: s.tier,
      tenantId: specs.tenantId,
      recoveryPoint: point,
      agentImage: specs.images.agent,
      image: s.image,
      serviceName: `${rec.serviceNamePrefix}-${s.name}`,
      dataPath: s.dataPath,
      rpoSeconds: s.rpoSeconds,
      rtoSeconds: s.rtoSeconds,
      s3: {
        endpoint: source.endpoint,
        region: source.name,
        bucket: storage.buckets[s.tier]!,
        accessKey: storage.restoreCredentials!.accessKey,
        secretKey: storage.restoreCredentials!.secretKey,
      },
      catalog: {
        host: specs.catalog.agentHost,
        port: specs.catalog.port,
        database: specs.catalog.database,
        user: specs.catalog.writer,
        password: secrets.get(SECRET.catalogWriterPassword),
      },
      encryptionIdentity: secrets.get(SECRET.ageIdentity),
      resticPassword: s.engine === "volume" ? secrets.get(SECRET.resticPassword) : undefined,
      password: s.passwordKey ? secrets.get(s.passwordKey) : undefined,
      user: s.user,
      containerNetworks: [network.name],
      networks,
      placement: s.placement,
      args: s.args,
      aliases: rec.stableNames ? [s.name] : [],
    }, { dependsOn: catalogStep ? [catalogStep] : [] });
    jobs.push(job);
    declared[s.name] = { host: job.serviceName, volume: job.volumeName };
  }
  const sidecars = declareSidecars({ specs, secrets, region: source, storage, networks, declared, dependsOn: jobs });
  return {
    role: specs.role,
    recoveryPoint: point,
    sourceRegion: source.name,
    catalog: rec.catalog,
    /** recovery.catalog rebuild|restore: what `kryonix-dr catalog` did (JSON). */
    ...(catalogStep ? { catalogRecovery: catalogStep.stdout } : {}),
    network: network.name,
    recovered: Object.fromEntries(jobs.map((j, i) => [specs.services[i]!.name, { service: j.serviceName, volume: j.volumeName, restoreContainer: j.restoreContainerId }])),
    sidecarServices: Object.fromEntries(Object.entries(sidecars).map(([k, v]) => [k, v.serviceId])),
  };
}
