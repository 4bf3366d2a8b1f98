/** `kryonix-dr lessons`: what an incident taught, recorded on its row of disaster_recovery_log. */
import pg from "pg";
import { addLessons } from "../../catalog/recovery-log.js";
import { parseFlags, required, type Command } from "../command.js";

const USAGE = `Usage: kryonix-dr lessons --recovery-id <uuid> --text "<what was learnt>"

Adds the text, dated, to the lessons_learned of one recovery or drill in disaster_recovery_log
(below what is already there; nothing is replaced). 'kryonix-dr status' lists the latest
recoveries and drills with their ids. Connection from the libpq environment (PGHOST, PGPORT,
PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE); a kryonix_dr_writer login is enough.
Exit status: 0 recorded, 1 not recorded (the message says why), 2 usage.`;

export const command: Command = {
  name: "lessons",
  summary: "Record what an incident or drill taught on its disaster_recovery_log row",
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, { "recovery-id": { type: "string" }, text: { type: "string" } });
    const id = required(values["recovery-id"], "recovery-id");
    const text = required(values.text, "text");
    const missing = ["PGHOST", "PGDATABASE", "PGUSER"].filter((k) => !process.env[k]);
    if (missing.length > 0) throw new Error(`Missing environment variable(s) ${missing.join(", ")}: set the catalog connection in PGHOST, PGPORT, PGDATABASE, PGUSER and PGPASSWORD.`);
    const client = new pg.Client({ application_name: "kryonix-dr lessons" });
    await client.connect();
    try {
      const row = await addLessons(client, id, text);
      process.stdout.write(`recorded on ${row.incidentType} ${row.recoveryId} (${row.recoveryStatus}):\n${row.lessonsLearned}\n`);
      return 0;
    } finally {
      await client.end();
    }
  },
};
