/**
 * `kryonix-dr lessons`: what an incident taught, recorded in disaster_recovery_log: on the row of
 * a recovery or drill already there, or on a new row for an incident handled by hand.
 */
import { addLessons, finishRecovery, startRecovery } from "../../catalog/recovery-log.js";
import { catalogClientFromEnv } from "../catalog-env.js";
import { parseFlags, parseIsoTime, required, UsageError, type Command } from "../command.js";

/** The runbooks' incident classes (docs/runbooks.md §7). */
export const INCIDENT_TYPES = ["platform_down", "postgres_lost", "region_degraded", "service_lost", "bucket_lost", "ransomware", "key_lost"] as const;

const USAGE = `Usage: kryonix-dr lessons --recovery-id <uuid> --text "<what was learnt>"
       kryonix-dr lessons --incident <type> --tenant <uuid> --services <a,b> --runbook "<section>"
                          --started <ISO> --recovered <ISO> [--data-loss-seconds N] [--rto-seconds N] [--rpo-seconds N]
                          --text "<what was learnt>"

Adds the text, dated, to lessons_learned in disaster_recovery_log, below what is already there.
With --recovery-id: on that recovery or drill ('kryonix-dr status' lists them with their ids).
With --incident: first records an incident handled outside a drill as a completed recovery
(its measured time is --recovered minus --started), then adds the text; it prints the new id.
Incident types: ${INCIDENT_TYPES.join(", ")}.
Connection from the libpq environment (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE);
a kryonix_dr_writer login is enough. Exit status: 0 recorded, 1 not recorded (the message says why), 2 usage.`;

function seconds(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`${flag} '${v}' must be a number of seconds >= 0.`);
  return n;
}

export const command: Command = {
  name: "lessons",
  summary: "Record what an incident or drill taught in disaster_recovery_log",
  usage: USAGE,
  async run(argv) {
    const { values: v } = parseFlags(argv, {
      "recovery-id": { type: "string" },
      text: { type: "string" },
      incident: { type: "string" },
      tenant: { type: "string" },
      services: { type: "string" },
      runbook: { type: "string" },
      started: { type: "string" },
      recovered: { type: "string" },
      "data-loss-seconds": { type: "string" },
      "rto-seconds": { type: "string" },
      "rpo-seconds": { type: "string" },
    });
    const text = required(v.text, "text");
    if ((v["recovery-id"] === undefined) === (v.incident === undefined)) throw new UsageError("give either --recovery-id (a recorded recovery or drill) or --incident (a new record), not both or neither.");
    let incident: (() => Promise<string>) | undefined;
    if (v.incident !== undefined) {
      const type = v.incident;
      if (!(INCIDENT_TYPES as readonly string[]).includes(type)) throw new UsageError(`--incident '${type}' is not an incident type: use one of ${INCIDENT_TYPES.join(", ")}.`);
      const started = parseIsoTime(required(v.started, "started"), "--started");
      const recovered = parseIsoTime(required(v.recovered, "recovered"), "--recovered");
      if (recovered < started) throw new UsageError(`--recovered ${v.recovered} is before --started ${v.started}.`);
      const services = required(v.services, "services").split(",").map((s) => s.trim()).filter(Boolean);
      const input = {
        tenantId: required(v.tenant, "tenant"),
        incidentType: type,
        affectedServices: services,
        procedure: required(v.runbook, "runbook"),
        initiatedAt: started,
        rtoTargetSeconds: seconds(v["rto-seconds"], "--rto-seconds"),
        rpoTargetSeconds: seconds(v["rpo-seconds"], "--rpo-seconds"),
      };
      const dataLossSeconds = seconds(v["data-loss-seconds"], "--data-loss-seconds");
      incident = async () => {
        const row = await startRecovery(client, input);
        await finishRecovery(client, row.recoveryId, { status: "completed", actualRecoverySeconds: (recovered.getTime() - started.getTime()) / 1000, dataLossSeconds });
        return row.recoveryId;
      };
    }
    const client = await catalogClientFromEnv("kryonix-dr lessons");
    try {
      // A new incident and its lessons are one record: both or neither.
      await client.query("BEGIN");
      const id = incident ? await incident() : v["recovery-id"]!;
      const row = await addLessons(client, id, text);
      await client.query("COMMIT");
      process.stdout.write(`recorded on ${row.incidentType} ${row.recoveryId} (${row.recoveryStatus}):\n${row.lessonsLearned}\n`);
      return 0;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      await client.end();
    }
  },
};
