/** Judgements several policies share: what is stateful, what takes backups, how to name things in a message. */
import { LABELS } from "../contract/index.js";
import { isOwnRole, describe, isSecret, isUnknown, protections, type BucketView, type Protection, type ServiceView } from "./model.js";
import type { Finding } from "./define.js";

export const DEFAULT_ENGINES = [
  "postgres", "postgis", "timescale", "redis", "valkey", "keydb", "minio", "mysql", "mariadb",
  "percona", "mongo", "elasticsearch", "opensearch", "cassandra", "scylla", "influxdb",
  "clickhouse", "etcd", "rabbitmq", "nats", "kafka", "zookeeper", "couchdb", "neo4j", "questdb",
];

/** The engine an image names: any word of any path segment (tag and digest dropped) that starts with one. */
export function imageEngine(image: string, engines: string[]): string | undefined {
  const path = image.split("@")[0].toLowerCase();
  const segments = path.split("/");
  segments[segments.length - 1] = segments[segments.length - 1].split(":")[0];
  for (const word of segments.flatMap((s) => s.split(/[-_.]/))) {
    const e = engines.find((eng) => word.startsWith(eng.toLowerCase()));
    if (e) return e;
  }
  return undefined;
}

export function isOwnService(s: ServiceView): boolean {
  return isOwnRole(s.role) || s.labels[LABELS.protects] !== undefined;
}

export interface StatefulConfig {
  engines: string[];
  statefulMountTypes: string[];
  exclude: string[];
}

/** Why a service holds state, or undefined when it does not. */
export function statefulReason(s: ServiceView, cfg: StatefulConfig): string | undefined {
  if (isOwnService(s) || cfg.exclude.includes(s.name) || cfg.exclude.includes(s.logicalName)) return undefined;
  const mount = s.mounts.find((m) => cfg.statefulMountTypes.includes(m.type));
  if (mount) return `mounts ${mount.type} "${mount.source ?? "(anonymous)"}" at ${mount.target ?? "?"}`;
  if (s.labels[LABELS.engine]) return `its label ${LABELS.engine}=${s.labels[LABELS.engine]} names an engine`;
  if (s.labels[LABELS.stateful] === "true") return `it is labelled ${LABELS.stateful}=true`;
  const e = imageEngine(s.image, cfg.engines);
  if (e) return `its image "${s.image}" is a ${e} engine`;
  return undefined;
}

export function svcName(s: ServiceView): string {
  return `Swarm service "${s.name}" (${describe(s.resource)})`;
}

/** The finding for a sidecar whose settings cannot be read at all. */
export function opaqueFinding(p: Protection): Finding {
  return {
    resource: p.sidecar.resource,
    message:
      `Backup sidecar "${p.sidecar.name}" (${describe(p.sidecar.resource)}) of "${p.protects}" has a task spec or env that is a secret or unknown as a whole, ` +
      `so its schedule, retention and RPO cannot be checked. Fix: keep secrets out of taskSpec (mount them as Swarm secrets) so the settings stay plain.`,
  };
}

export function bucketLabel(b: BucketView): string {
  return `Bucket "${b.name}" (${describe(b.resource)})`;
}

/** Protections that take backups: sidecars, not cron/replicator/restore jobs that also name a service. */
export function backupProtections(all: ServiceView[]): Protection[] {
  return protections(all).filter((p) => p.sidecar.role === undefined || p.sidecar.role === "sidecar");
}

export function positiveNumber(v: string | undefined): number | undefined {
  if (v === undefined || v === "" || isSecret(v) || isUnknown(v)) return undefined;
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}
