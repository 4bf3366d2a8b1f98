/**
 * `kryonix-dr migrate`: applies the catalog's numbered migrations. The Pulumi program runs it
 * through @pulumi/command after declaring the database, with the connection in PG* env (the
 * password as a secret env var), so `pulumi up` and the local deployer migrate the same way.
 */
import { catalogClientFromEnv } from "../catalog-env.js";
import { parseFlags, type Command } from "../command.js";
import { migrate } from "../../catalog/migrate.js";

const USAGE = `Usage: kryonix-dr migrate [--dir <migrations dir>]

Applies catalog/migrations to the catalog database, each file once, in order (idempotent).
Connection from the standard libpq environment: PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD
(and PGSSLMODE). --dir overrides where the SQL files are read from.`;

export const command: Command = {
  name: "migrate",
  summary: "Apply the backup catalog's SQL migrations (connection from PG* env)",
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, { dir: { type: "string" } });
    const client = await catalogClientFromEnv();
    try {
      const r = await migrate(client, { dir: values.dir, log: (l) => process.stdout.write(`${l}\n`) });
      process.stdout.write(`migrations: ${r.applied.length} applied, ${r.skipped.length} already applied${r.unknown.length ? `, ${r.unknown.length} recorded but unknown to this version (${r.unknown.join(", ")})` : ""}\n`);
    } finally {
      await client.end();
    }
    return 0;
  },
};
