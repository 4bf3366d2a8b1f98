/**
 * @pulumi/postgresql 3.18.1 resources on a real PostgreSQL server, through `pg`, with the SQL the
 * provider itself issues (CREATE ROLE/DATABASE, GRANT/REVOKE). Identifiers are quoted and
 * literals escaped by pg's own escapeIdentifier/escapeLiteral.
 */
import pg from "pg";
import type { Mapping } from "./types.js";

type Obj = Record<string, any>;

export interface PgConnection {
  host: string;
  port: number;
  user: string;
  password?: string;
  database: string;
  ssl: boolean;
}

/** `pulumi:providers:postgresql` inputs (or `postgresql:*` config) as a connection. */
export function postgresqlConnection(p: Record<string, unknown>): PgConnection {
  if (!p.host) throw new Error("The postgresql provider has no host: give the program a postgresql.Provider with host, port, username and password, or set postgresql:host in the stack config.");
  const mode = String(p.sslmode ?? p.sslMode ?? "disable");
  return {
    host: String(p.host),
    port: Number(p.port ?? 5432),
    user: String(p.username ?? "postgres"),
    password: p.password === undefined ? undefined : String(p.password),
    database: String(p.database ?? "postgres"),
    ssl: mode !== "disable",
  };
}

async function withClient<T>(provider: Record<string, unknown>, database: string | undefined, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const conn = postgresqlConnection(provider);
  const client = new pg.Client({ host: conn.host, port: conn.port, user: conn.user, password: conn.password, database: database ?? conn.database, ssl: conn.ssl });
  // A session ended by the server (a database dropped WITH (FORCE) in the same destroy wave)
  // also emits 'error' on the client; unheard, that would crash the process. The failing query
  // reports it.
  client.on("error", () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const id = (c: pg.Client, s: string) => c.escapeIdentifier(s);

/** A Role's attributes as CREATE/ALTER ROLE options (the provider's defaults). */
function roleOptions(c: pg.Client, i: Obj): string[] {
  return [
    i.superuser ? "SUPERUSER" : "NOSUPERUSER",
    i.createDatabase ? "CREATEDB" : "NOCREATEDB",
    i.createRole ? "CREATEROLE" : "NOCREATEROLE",
    i.inherit === false ? "NOINHERIT" : "INHERIT",
    i.login ? "LOGIN" : "NOLOGIN",
    i.replication ? "REPLICATION" : "NOREPLICATION",
    i.bypassRowLevelSecurity ? "BYPASSRLS" : "NOBYPASSRLS",
    `CONNECTION LIMIT ${Number(i.connectionLimit ?? -1)}`,
  ];
}
const passwordOption = (c: pg.Client, i: Obj) => `${i.encrypted === false ? "" : "ENCRYPTED "}PASSWORD ${c.escapeLiteral(String(i.password))}`;

export const role: Mapping<Obj> = {
  plan: (i, reg) => ({ name: i.name ?? reg.name }),
  type: "postgresql:index/role:Role",
  async create(i, ctx, reg) {
    const name: string = i.name ?? reg.name;
    if (i.passwordWo !== undefined) throw new Error(`postgresql.Role ${reg.name}: passwordWo is not supported by the local deployer; use password.`);
    await withClient(ctx.provider, undefined, async (c) => {
      const opts = roleOptions(c, i);
      if (i.password !== undefined && i.password !== "") opts.push(passwordOption(c, i));
      if (i.validUntil) opts.push(`VALID UNTIL ${c.escapeLiteral(String(i.validUntil))}`);
      await c.query(`CREATE ROLE ${id(c, name)} WITH ${opts.join(" ")}`);
      for (const r of (i.roles as string[] | undefined) ?? []) await c.query(`GRANT ${id(c, r)} TO ${id(c, name)}`);
      if (i.searchPaths?.length) await c.query(`ALTER ROLE ${id(c, name)} SET search_path TO ${(i.searchPaths as string[]).map((s) => id(c, s)).join(", ")}`);
      if (i.statementTimeout) await c.query(`ALTER ROLE ${id(c, name)} SET statement_timeout TO ${Number(i.statementTimeout)}`);
      if (i.idleInTransactionSessionTimeout) {
        await c.query(`ALTER ROLE ${id(c, name)} SET idle_in_transaction_session_timeout TO ${Number(i.idleInTransactionSessionTimeout)}`);
      }
    });
    return { id: name, state: { name }, record: { name, skipReassignOwned: i.skipReassignOwned === true, skipDropRole: i.skipDropRole === true } };
  },
  /**
   * In place, as the provider does (ALTER ROLE): a new password or attribute must not drop the
   * role, which would take its grants and memberships with it (a password rotation once left
   * the writer login unable to connect). A new name is a new role.
   */
  async update(rec, i, ctx, reg) {
    const name: string = i.name ?? reg.name;
    if (i.passwordWo !== undefined) throw new Error(`postgresql.Role ${reg.name}: passwordWo is not supported by the local deployer; use password.`);
    if (name !== rec.name) {
      await this.destroy(rec, ctx.provider);
      return this.create(i, ctx, reg);
    }
    await withClient(ctx.provider, undefined, async (c) => {
      const opts = [
        ...roleOptions(c, i),
        i.password !== undefined && i.password !== "" ? passwordOption(c, i) : "PASSWORD NULL",
        `VALID UNTIL ${c.escapeLiteral(String(i.validUntil || "infinity"))}`,
      ];
      await c.query(`ALTER ROLE ${id(c, name)} WITH ${opts.join(" ")}`);
      // Memberships it should have are granted; one it should no longer have is not revoked
      // (the record does not keep the old list), nor are role settings (search_path, timeouts) reset.
      for (const r of (i.roles as string[] | undefined) ?? []) await c.query(`GRANT ${id(c, r)} TO ${id(c, name)}`);
    });
    return { id: name, state: { name }, record: { name, skipReassignOwned: i.skipReassignOwned === true, skipDropRole: i.skipDropRole === true } };
  },
  async destroy(rec, provider) {
    if (rec.skipDropRole) return;
    await withClient(provider, undefined, async (c) => {
      const exists = await c.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [rec.name]);
      if (exists.rowCount === 0) return;
      const dbs = await c.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate");
      // As the provider does: hand owned objects to the admin and drop the role's privileges in
      // every database, or DROP ROLE fails on leftover grants.
      for (const { datname } of dbs.rows) {
        await withClient(provider, datname, async (d) => {
          if (!rec.skipReassignOwned) await d.query(`REASSIGN OWNED BY ${id(d, String(rec.name))} TO CURRENT_USER`);
          await d.query(`DROP OWNED BY ${id(d, String(rec.name))}`);
        }).catch((err: { code?: string }) => {
          // A database dropped meanwhile (destroy runs independent resources together) holds nothing.
          if (err.code !== "3D000" && err.code !== "57P01") throw err;
        });
      }
      await c.query(`DROP ROLE IF EXISTS ${id(c, String(rec.name))}`);
    });
  },
};

export const database: Mapping<Obj> = {
  plan: (i, reg) => ({ name: i.name ?? reg.name }),
  type: "postgresql:index/database:Database",
  async create(i, ctx, reg) {
    const name: string = i.name ?? reg.name;
    await withClient(ctx.provider, undefined, async (c) => {
      const opts: string[] = [];
      if (i.owner) opts.push(`OWNER ${id(c, i.owner)}`);
      if (i.template) opts.push(`TEMPLATE ${id(c, i.template)}`);
      if (i.encoding) opts.push(`ENCODING ${c.escapeLiteral(i.encoding)}`);
      if (i.lcCollate) opts.push(`LC_COLLATE ${c.escapeLiteral(i.lcCollate)}`);
      if (i.lcCtype) opts.push(`LC_CTYPE ${c.escapeLiteral(i.lcCtype)}`);
      if (i.tablespaceName) opts.push(`TABLESPACE ${id(c, i.tablespaceName)}`);
      if (i.connectionLimit !== undefined) opts.push(`CONNECTION LIMIT ${Number(i.connectionLimit)}`);
      if (i.allowConnections !== undefined) opts.push(`ALLOW_CONNECTIONS ${i.allowConnections ? "true" : "false"}`);
      if (i.isTemplate !== undefined) opts.push(`IS_TEMPLATE ${i.isTemplate ? "true" : "false"}`);
      await c.query(`CREATE DATABASE ${id(c, name)}${opts.length ? ` WITH ${opts.join(" ")}` : ""}`);
    });
    return { id: name, state: { name }, record: { name } };
  },
  async destroy(rec, provider) {
    // WITH (FORCE) ends open sessions first, as the provider does by terminating backends.
    await withClient(provider, undefined, (c) => c.query(`DROP DATABASE IF EXISTS ${id(c, String(rec.name))} WITH (FORCE)`));
  },
};

/** The GRANT/REVOKE target clause of a postgresql.Grant. */
function grantTarget(c: pg.Client, i: Obj): string {
  const objects = (i.objects as string[] | undefined) ?? [];
  const schema = i.schema as string | undefined;
  const qualified = (o: string) => (schema ? `${id(c, schema)}.${id(c, o)}` : id(c, o));
  switch (i.objectType) {
    case "database":
      return `DATABASE ${id(c, i.database)}`;
    case "schema":
      return `SCHEMA ${id(c, schema ?? "public")}`;
    case "table":
    case "sequence":
    case "function":
    case "procedure":
    case "routine": {
      const kind = String(i.objectType).toUpperCase();
      if (objects.length === 0) return `ALL ${kind}S IN SCHEMA ${id(c, schema ?? "public")}`;
      return `${kind} ${objects.map(qualified).join(", ")}`;
    }
    default:
      throw new Error(`postgresql.Grant: objectType '${i.objectType}' is not supported by the local deployer (database, schema, table, sequence, function, procedure, routine are).`);
  }
}

function grantee(c: pg.Client, role: string): string {
  return role.toLowerCase() === "public" ? "PUBLIC" : id(c, role);
}

/**
 * Concurrent GRANTs on one database update the same catalog rows and fail with "tuple
 * concurrently updated"; like the provider, hold a transaction-scoped advisory lock per database.
 */
async function serialized<T>(c: pg.Client, database: string, fn: () => Promise<T>): Promise<T> {
  await c.query("BEGIN");
  try {
    await c.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`kryonix-dr grant ${database}`]);
    const r = await fn();
    await c.query("COMMIT");
    return r;
  } catch (err) {
    await c.query("ROLLBACK").catch(() => {});
    throw err;
  }
}

export const grant: Mapping<Obj> = {
  type: "postgresql:index/grant:Grant",
  async create(i, ctx, reg) {
    if (i.columns?.length) throw new Error(`postgresql.Grant ${reg.name}: column grants are not supported by the local deployer.`);
    const privileges = (i.privileges as string[]).map((p) => p.toUpperCase());
    await withClient(ctx.provider, i.database, (c) =>
      serialized(c, i.database, async () => {
        // The provider makes the grant exactly the declared set: revoke, then grant.
        const target = grantTarget(c, i);
        await c.query(`REVOKE ALL ON ${target} FROM ${grantee(c, i.role)}`);
        if (privileges.length > 0) {
          await c.query(`GRANT ${privileges.join(", ")} ON ${target} TO ${grantee(c, i.role)}${i.withGrantOption ? " WITH GRANT OPTION" : ""}`);
        }
      }),
    );
    const gid = `${i.role}_${i.database}_${i.schema ?? ""}_${i.objectType}`;
    return { id: gid, record: { database: i.database, role: i.role, schema: i.schema, objectType: i.objectType, objects: i.objects ?? [] } };
  },
  async destroy(rec, provider) {
    await withClient(provider, undefined, async (c) => {
      const db = await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [rec.database]);
      const role = String(rec.role).toLowerCase() === "public" ? { rowCount: 1 } : await c.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [rec.role]);
      if (db.rowCount === 0 || role.rowCount === 0) return;
      await withClient(provider, String(rec.database), (d) =>
        serialized(d, String(rec.database), () => d.query(`REVOKE ALL ON ${grantTarget(d, rec)} FROM ${grantee(d, String(rec.role))}`)),
      );
    });
  },
};

export const grantRole: Mapping<Obj> = {
  type: "postgresql:index/grantRole:GrantRole",
  async create(i, ctx) {
    await withClient(ctx.provider, undefined, (c) =>
      c.query(`GRANT ${id(c, i.grantRole)} TO ${id(c, i.role)}${i.withAdminOption ? " WITH ADMIN OPTION" : ""}`),
    );
    return { id: `${i.role}_${i.grantRole}`, record: { role: i.role, grantRole: i.grantRole } };
  },
  async destroy(rec, provider) {
    await withClient(provider, undefined, async (c) => {
      const r = await c.query("SELECT count(*)::int AS n FROM pg_roles WHERE rolname = ANY($1)", [[rec.role, rec.grantRole]]);
      if ((r.rows[0] as { n: number }).n < 2) return;
      await c.query(`REVOKE ${id(c, String(rec.grantRole))} FROM ${id(c, String(rec.role))}`);
    });
  },
};

/**
 * A physical replication slot, created as the provider creates it (reserving no WAL until a
 * client streams from it). Dropped on destroy after its stream, if any, is ended: a slot left
 * behind would keep every WAL segment on the server from then on.
 */
export const physicalReplicationSlot: Mapping<Obj> = {
  plan: (i, reg) => ({ name: i.name ?? reg.name }),
  type: "postgresql:index/physicalReplicationSlot:PhysicalReplicationSlot",
  async create(i, ctx, reg) {
    const name: string = i.name ?? reg.name;
    await withClient(ctx.provider, undefined, (c) =>
      c.query("SELECT pg_create_physical_replication_slot($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", [name]),
    );
    return { id: name, state: { name }, record: { name } };
  },
  async destroy(rec, provider) {
    await withClient(provider, undefined, async (c) => {
      for (let attempt = 0; ; attempt++) {
        await c.query("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL", [rec.name]);
        try {
          await c.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", [rec.name]);
          return;
        } catch (err) {
          // The stream's sidecar may reconnect between the two statements until it is removed.
          if ((err as { code?: string }).code !== "55006" || attempt >= 20) throw err;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    });
  },
};

export const postgresqlMappings: Mapping<any>[] = [role, database, grant, grantRole, physicalReplicationSlot];
