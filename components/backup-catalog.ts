/**
 * The backup catalog on PostgreSQL: its database, an owner role that runs the migrations, a
 * read-only role for dashboards and a writer role for agents, and the migration step.
 */
import * as pulumi from "@pulumi/pulumi";
import * as postgresql from "@pulumi/postgresql";
import * as command from "@pulumi/command";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { validateInput } from "./shared.js";

/** Group roles the migrations create and grant table privileges to. */
export const CATALOG_GROUPS = { writer: "kryonix_dr_writer", reader: "kryonix_dr_reader" } as const;

export interface BackupCatalogArgs {
  /** Server address as seen by whoever runs the migration step. */
  readonly host: pulumi.Input<string>;
  /** @default 5432 */
  readonly port?: pulumi.Input<number>;
  /** @default "kryonix_dr" */
  readonly database?: pulumi.Input<string>;
  /** Owner role; runs the migrations, so it may create the group roles. @default "kryonix_dr_owner" */
  readonly owner?: pulumi.Input<string>;
  /** Read-only login for dashboards, member of kryonix_dr_reader. @default "kryonix_dr_dashboard" */
  readonly reader?: pulumi.Input<string>;
  /** Login for agents, member of kryonix_dr_writer. @default "kryonix_dr_agent" */
  readonly writer?: pulumi.Input<string>;
  /** Owner's password (also what the migration step connects with). */
  readonly ownerPassword: pulumi.Input<string>;
  /** Dashboard role's password. */
  readonly readerPassword: pulumi.Input<string>;
  /** Agent role's password (the sidecars' kdr-catalog-password). */
  readonly writerPassword: pulumi.Input<string>;
  /**
   * The catalog server's own backups (service CATALOG_SERVICE): a REPLICATION login that may force
   * a WAL switch, and the replication slot its WAL streams through (declared here so a destroy
   * drops it: a slot nobody reads keeps WAL on the catalog server forever).
   */
  readonly backup?: { role: pulumi.Input<string>; password: pulumi.Input<string>; slot: pulumi.Input<string> };
  /** libpq sslmode for the migration step. @default "require" */
  readonly sslmode?: pulumi.Input<string>;
  /**
   * Fingerprint of the migrations; a new or changed migration re-runs the step.
   * @default hash of catalog/migrations
   */
  readonly migrationsHash?: pulumi.Input<string>;
}

/** SHA-256 over the names and contents of the migration files, in order. */
export function hashMigrations(dir: string = join(__dirname, "..", "catalog", "migrations")): string {
  const hash = createHash("sha256");
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".sql")).sort()) {
    hash.update(file).update("\0").update(readFileSync(join(dir, file))).update("\0");
  }
  return hash.digest("hex");
}

export class BackupCatalog extends pulumi.ComponentResource {
  public readonly database: pulumi.Output<string>;
  public readonly writerRole: pulumi.Output<string>;
  public readonly readerRole: pulumi.Output<string>;
  public readonly migration: command.local.Command;
  /** The catalog server's backup login, when `backup` is given. */
  public readonly backupRole?: pulumi.Output<string>;

  constructor(name: string, args: BackupCatalogArgs, opts?: pulumi.ComponentResourceOptions) {
    super("kryonix:catalog:BackupCatalog", name, {}, opts);
    const port = args.port ?? 5432;
    validateInput(port, (p) => {
      if (!Number.isInteger(p) || p < 1 || p > 65535) {
        throw new pulumi.ResourceError(`kryonix-dr:catalog.port is ${p}; accepted: an integer from 1 to 65535`, this);
      }
    });

    const owner = new postgresql.Role(
      `${name}-owner`,
      {
        name: args.owner ?? "kryonix_dr_owner",
        login: true,
        // The migrations create the kryonix_dr_writer/reader group roles themselves.
        createRole: true,
        password: pulumi.secret(args.ownerPassword),
      },
      { parent: this },
    );
    const database = new postgresql.Database(`${name}-database`, { name: args.database ?? "kryonix_dr", owner: owner.name }, { parent: this });
    // Only the roles below may connect.
    new postgresql.Grant(`${name}-revoke-public`, { database: database.name, role: "public", objectType: "database", privileges: [] }, { parent: this });

    this.migration = new command.local.Command(
      `${name}-migrate`,
      {
        create: "node bin/kryonix-dr.mjs migrate",
        environment: {
          PGHOST: args.host,
          PGPORT: pulumi.output(port).apply(String),
          PGDATABASE: database.name,
          PGUSER: owner.name,
          PGPASSWORD: pulumi.secret(args.ownerPassword),
          PGSSLMODE: args.sslmode ?? "require",
        },
        triggers: [args.migrationsHash ?? hashMigrations()],
      },
      { parent: this, dependsOn: [database, owner] },
    );

    // Membership needs the group roles, which exist only after the migration.
    const login = (role: "writer" | "reader", roleName: pulumi.Input<string>, password: pulumi.Input<string>) => {
      const r = new postgresql.Role(
        `${name}-${role}`,
        { name: roleName, login: true, password: pulumi.secret(password), roles: [CATALOG_GROUPS[role]] },
        { parent: this, dependsOn: [this.migration] },
      );
      new postgresql.Grant(
        `${name}-${role}-connect`,
        { database: database.name, role: r.name, objectType: "database", privileges: ["CONNECT"] },
        { parent: this },
      );
      return r;
    };
    const writer = login("writer", args.writer ?? "kryonix_dr_agent", args.writerPassword);
    const reader = login("reader", args.reader ?? "kryonix_dr_dashboard", args.readerPassword);

    if (args.backup) {
      const backup = new postgresql.Role(
        `${name}-backup`,
        { name: args.backup.role, login: true, replication: true, password: pulumi.secret(args.backup.password) },
        { parent: this },
      );
      // Bounded RPO: the agent closes the current WAL segment when there was activity.
      new postgresql.Grant(
        `${name}-backup-switch-wal`,
        { database: "postgres", role: backup.name, objectType: "function", schema: "pg_catalog", objects: ["pg_switch_wal"], privileges: ["EXECUTE"] },
        { parent: this },
      );
      new postgresql.PhysicalReplicationSlot(`${name}-backup-slot`, { name: args.backup.slot }, { parent: this, dependsOn: [backup] });
      this.backupRole = backup.name;
    }

    this.database = database.name;
    this.writerRole = writer.name;
    this.readerRole = reader.name;
    this.registerOutputs({ database: this.database, writerRole: this.writerRole, readerRole: this.readerRole });
  }
}
