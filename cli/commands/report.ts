/**
 * `kryonix-dr report`: the weekly report from the catalog, as a self-contained HTML page and a
 * plain-text summary for email. Reads only, so a kryonix_dr_reader login is enough.
 */
import { isUuid } from "../../contract/index.js";
import { writeFileSync } from "node:fs";
import { catalogClientFromEnv } from "../catalog-env.js";
import { parseFlags, UsageError, type Command } from "../command.js";
import { reportData, reportHtml, reportText } from "../report.js";

const USAGE = `Usage: kryonix-dr report --html <file> [--text <file>] [--days <n>] [--tenant <uuid>]

Writes the report of the last <n> days (default 7) from the backup catalog: cards (backups,
success rate, storage used, last backup), each service's restore point against its RPO target
and its newest verified point, the latest recoveries and drills with RTO and data loss against
their targets, and charts of stored size and duration per backup. --html writes one
self-contained page (no script, nothing fetched); --text the plain-text summary for email
('-' for standard output).

Connection from the standard libpq environment: PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD
(and PGSSLMODE); a member of kryonix_dr_reader is enough. Exit 0 when written, 2 for a usage error.`;


export const command: Command = {
  name: "report",
  summary: "Weekly report from the catalog: a self-contained HTML page and a plain-text summary",
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, { html: { type: "string" }, text: { type: "string" }, days: { type: "string" }, tenant: { type: "string" } });
    if (!values.html && !values.text) throw new UsageError("give --html <file>, --text <file>, or both: the report has nowhere to go.");
    const days = values.days === undefined ? 7 : Number(values.days);
    if (!/^\d+$/.test(values.days ?? "7") || days < 1 || days > 366) throw new UsageError(`--days '${values.days}' must be a whole number of days from 1 to 366, e.g. --days 7.`);
    if (values.tenant !== undefined && !isUuid(values.tenant)) throw new UsageError(`--tenant '${values.tenant}' is not a UUID: pass the tenant id as recorded in the catalog.`);
    const client = await catalogClientFromEnv("kryonix-dr report");
    let data;
    try {
      await client.query("SET default_transaction_read_only = on");
      data = await reportData(client, { days, tenantId: values.tenant });
    } finally {
      await client.end();
    }
    const write = (file: string, body: string) => (file === "-" ? process.stdout.write(body) : writeFileSync(file, body));
    if (values.html) write(values.html, reportHtml(data));
    if (values.text) write(values.text, reportText(data));
    if (values.html && values.html !== "-") process.stderr.write(`report of the last ${days} days written to ${values.html}${values.text && values.text !== "-" ? ` and ${values.text}` : ""}\n`);
    return 0;
  },
};
