/** The catalog connection the CLI's catalog commands take from the libpq environment (PG*). */
import pg from "pg";

/** A connected client from PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD (and PGSSLMODE), or an error naming what is missing. */
export async function catalogClientFromEnv(applicationName?: string): Promise<pg.Client> {
  const missing = ["PGHOST", "PGDATABASE", "PGUSER"].filter((k) => !process.env[k]);
  if (missing.length > 0) {
    throw new Error(`Missing environment variable(s) ${missing.join(", ")}: set the catalog connection in PGHOST, PGPORT, PGDATABASE, PGUSER and PGPASSWORD.`);
  }
  // pg reads PG* from the environment by itself.
  const client = new pg.Client(applicationName ? { application_name: applicationName } : {});
  await client.connect();
  return client;
}
