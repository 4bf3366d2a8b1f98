/** `kryonix-dr drill`: the main job, a real recovery end to end on the local platform. */
import { join, resolve } from "node:path";
import { parseFlags, parseIsoTime, UsageError, type Command } from "../command.js";
import { runDrill, runFailover } from "../../local/drill/drill.js";
import { formatFailoverReport, formatReport } from "../../local/drill/report.js";

const USAGE = `Usage: kryonix-dr drill [--stack local|prod] [--disaster services|region|failover [--catalog restore|rebuild]] [--keep] [--point-in-time <ISO>] [--write-seconds N] [--data-size MiB] [--json]

Proves recovery end to end on the local platform (scripts/platform-up.sh): deploys the local
stack (PostgreSQL, Redis and a volume service with their backup sidecars, buckets, catalog and
crons), writes data continuously while the schedules take full, incremental and WAL backups,
removes the primary services and their volumes, deploys the recovery stack (restore jobs from
the catalog's recovery point, fresh services), verifies every acknowledged write, and records
the measured recovery time and data-loss window in disaster_recovery_log.
  --stack prod             protect and recover the prod stack's own services (Pulumi.prod.yaml: all
                           nine, with their engines, tiers, incremental schedules, hooks, placement
                           and targets) instead of the local stack's three; PostgreSQL 15, Redis 7
                           and Debian's Prometheus run as themselves, Grafana, Nextcloud, Traefik,
                           Keycloak and MinIO as stand-ins (images/standins); this swarm node is
                           labelled for their placement constraints
  --disaster region        lose the whole primary region instead: its S3 server is stopped and the
                           catalog database dropped too; the recovery stack gets the catalog back from
                           the DR region (recovery.catalog) and restores from there; the primary region
                           is started again after
  --disaster failover      the fast path: the local-dr stack's warm standbys (Pulumi.local-dr.yaml)
                           follow the primaries; writers write through the stable names; the primary
                           region is lost (services killed, S3 server stopped); the local-dr stack is
                           deployed with kryonix-dr:active true; the drill measures the time to the
                           first write on the promoted side (target 60 s), checks every write
                           acknowledged more than the RPO before the loss, and waits for the promoted
                           services' first verified backups in the DR region; then the way back
                           (runbook §9c): the primary region returns, its services come back as
                           standbys of the promoted ones (kryonix-dr:failback), switch over
                           (failback.switch true) with every write kept, and the local-dr stack
                           returns to standbys (active false, failover.generation 2)
  --catalog restore|rebuild  region: restore the catalog database from the catalog server's own
                           backups, then add what is newer (default), or rebuild it from the
                           manifests alone
  --keep                   keep both stacks afterwards (and the catalog with the log row)
  --point-in-time <ISO>    recover to this moment (with zone, e.g. 2026-01-02T03:04:05Z) instead of the latest
  --write-seconds N        write for at least N seconds before the disaster (default 75)
  --data-size MiB          first fill each service with this much data (PostgreSQL rows, Redis keys,
                           volume files; not a snapshot-backed Prometheus), checked whole after the
                           recovery by a fingerprint taken before the disaster: RTO against size
  --json                   print the report as JSON on stdout
Progress goes to stderr. Exit status: 0 passed, 1 data missing beyond the RPO, an RTO target
missed, or the drill failed, 2 usage.`;

export const command: Command = {
  name: "drill",
  summary: "Prove recovery end to end on the local platform: deploy, write, back up, destroy, recover, verify",
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, {
      keep: { type: "boolean" },
      "point-in-time": { type: "string" },
      "write-seconds": { type: "string" },
      "data-size": { type: "string" },
      disaster: { type: "string" },
      catalog: { type: "string" },
      stack: { type: "string" },
      json: { type: "boolean" },
    });
    const stack = values.stack ?? "local";
    if (stack !== "local" && stack !== "prod") throw new UsageError(`--stack '${stack}' is not a stack the drill can run: use local (the default) or prod.`);
    const disaster = values.disaster ?? "services";
    if (disaster !== "services" && disaster !== "region" && disaster !== "failover") throw new UsageError(`--disaster '${disaster}' is not a disaster the drill knows: use services (the default), region or failover.`);
    if (disaster === "failover" && stack !== "local") throw new UsageError("--disaster failover drills the local-dr stack's standbys of the local stack: drop --stack prod.");
    if (disaster === "failover" && values["point-in-time"] !== undefined) throw new UsageError("--point-in-time does not apply to --disaster failover: a promoted standby holds the latest it received.");
    const catalog = values.catalog;
    if (catalog !== undefined && catalog !== "restore" && catalog !== "rebuild") throw new UsageError(`--catalog '${catalog}' is not a way to get the catalog back: use restore (the default) or rebuild.`);
    if (catalog !== undefined && disaster !== "region") throw new UsageError("--catalog applies to --disaster region (the other drills keep their catalog).");
    let pointInTime: Date | undefined;
    if (values["point-in-time"] !== undefined) {
      pointInTime = parseIsoTime(values["point-in-time"], "--point-in-time");
    }
    let writeSeconds: number | undefined;
    if (values["write-seconds"] !== undefined) {
      writeSeconds = Number(values["write-seconds"]);
      if (!Number.isInteger(writeSeconds) || writeSeconds < 10 || writeSeconds > 3600) {
        throw new UsageError(`--write-seconds '${values["write-seconds"]}' must be a whole number of seconds from 10 to 3600.`);
      }
    }
    let dataSizeMiB: number | undefined;
    if (values["data-size"] !== undefined) {
      dataSizeMiB = Number(values["data-size"]);
      if (!Number.isInteger(dataSizeMiB) || dataSizeMiB < 1 || dataSizeMiB > 16384) {
        throw new UsageError(`--data-size '${values["data-size"]}' must be a whole number of MiB from 1 to 16384 (per service).`);
      }
      if (disaster === "failover") throw new UsageError("--data-size applies to the recovery drills (services, region), not to --disaster failover.");
    }
    if (disaster === "failover") {
      const r = await runFailover({ keep: values.keep, disaster, projectDir: resolve(join(__dirname, "..", "..")), log: (l) => process.stderr.write(`${l}\n`) });
      process.stdout.write(values.json ? `${JSON.stringify(r, null, 2)}\n` : `${formatFailoverReport(r)}\n`);
      return r.ok ? 0 : 1;
    }
    const report = await runDrill({
      keep: values.keep,
      pointInTime,
      writeSeconds,
      dataSizeMiB,
      disaster,
      catalog,
      stack,
      projectDir: resolve(join(__dirname, "..", "..")),
      log: (l) => process.stderr.write(`${l}\n`),
    });
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`);
    return report.ok ? 0 : 1;
  },
};
