/**
 * The agent's catalog connection. The queries themselves live in catalog/queries.ts, shared
 * with the drill and the CLI, so the agent and the recovery tooling agree on every plan.
 */
import pg from "pg";
import { AGENT_ENV } from "../contract/index.js";
import { ConfigError, type Settings } from "./config.js";

export * from "../catalog/queries.js";
export * from "../catalog/repositories.js";

export async function connectCatalog(s: Settings): Promise<pg.Client> {
  const host = s.require("catalogHost");
  const port = s.int("catalogPort", 5432);
  const database = s.get("catalogDatabase") ?? "kryonix_dr";
  const user = s.require("catalogUser");
  const c = new pg.Client({ host, port, database, user, password: s.secret("catalogPassword"), application_name: "kdr-agent", connectionTimeoutMillis: 15000 });
  try {
    await c.connect();
  } catch (e) {
    throw new ConfigError(`cannot connect to the catalog ${user}@${host}:${port}/${database}: ${(e as Error).message}. Check ${AGENT_ENV.catalogHost}, ${AGENT_ENV.catalogPort}, ${AGENT_ENV.catalogDatabase}, ${AGENT_ENV.catalogUser} and the kdr-catalog-password secret.`);
  }
  // A connection error later (catalog restarted) must not crash a long-running sidecar.
  c.on("error", () => undefined);
  await c.query("SET idle_in_transaction_session_timeout = '60s'");
  return c;
}

/**
 * A long-lived process (serve, replicate) holds its catalog connection for days; once the catalog
 * restarts, that connection is gone for good and every later query fails. Resolves with the
 * reason when it is lost; the process then exits and Swarm starts it again with a new one.
 */
export function catalogLost(c: pg.Client): Promise<string> {
  return new Promise((resolve) => {
    c.on("error", (e: Error) => resolve(e.message));
    c.on("end", () => resolve("the catalog closed the connection"));
  });
}

/** Exit status of a long-lived process that lost its catalog (EX_TEMPFAIL: start it again). */
export const EXIT_CATALOG_LOST = 75;

/**
 * Ends a catalog connection, waiting at most 2 s: pg's end() never settles on a connection the
 * server already closed (a catalog restart), and a process must not hang on its way out.
 */
export async function closeCatalog(c: pg.Client): Promise<void> {
  let t: NodeJS.Timeout | undefined;
  await Promise.race([c.end().catch(() => undefined), new Promise<void>((r) => (t = setTimeout(r, 2000)))]);
  clearTimeout(t);
}
