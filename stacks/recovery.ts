/**
 * recovery: `pulumi up` rebuilds the listed services from backups. For each: a fresh volume, a
 * run-once restore job at the configured recovery point, then the fresh service; once they run,
 * their sidecars resume protection (new least-privilege users on the existing buckets).
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import { LABELS } from "../contract/index.js";
import { BackupStorage } from "../components/backup-storage.js";
import { RecoveryJob } from "../components/recovery-job.js";
import { dockerLabels } from "../components/shared.js";
import { SECRET, type RecoveryPoint, type Secrets, type Specs } from "./config.js";
import { declareSidecars, minioProvider, storageServices, type DeclaredTarget } from "./common.js";

/** The recovery point as the agent takes it (KDR_RECOVERY_POINT). */
export function recoveryPointValue(p: RecoveryPoint): string {
  return p.kind === "latest" ? "latest" : p.kind === "time" ? p.at : p.id;
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
    });
    jobs.push(job);
    declared[s.name] = { host: job.serviceName, volume: job.volumeName };
  }
  const sidecars = declareSidecars({ specs, secrets, region: source, storage, networks, declared, dependsOn: jobs });
  return {
    role: specs.role,
    recoveryPoint: point,
    sourceRegion: source.name,
    network: network.name,
    recovered: Object.fromEntries(jobs.map((j, i) => [specs.services[i]!.name, { service: j.serviceName, volume: j.volumeName, restoreContainer: j.restoreContainerId }])),
    sidecarServices: Object.fromEntries(Object.entries(sidecars).map(([k, v]) => [k, v.serviceId])),
  };
}
