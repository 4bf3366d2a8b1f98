/**
 * Applies the numbered SQL migrations in catalog/migrations to the catalog database.
 *
 * - Each file runs in its own transaction and is recorded in `schema_migrations` with its
 *   SHA-256, in that same transaction: a file is either fully applied and recorded, or not at all.
 * - Idempotent: a second run applies nothing.
 * - A file that was applied and has since changed is refused: migrations are append-only, so a
 *   fix goes into a new numbered file.
 * - A session advisory lock serialises runners (the Pulumi program and a drill may both migrate).
 *
 * Used by the Pulumi program's catalog component and by the agent image; imports only `pg` types.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import { AGENT_ENV } from "../contract/index.js";

/** Env var that overrides where the migration files are read from. */
export const MIGRATIONS_DIR_ENV = AGENT_ENV.migrationsDir;
/** Where the agent image copies the migrations. */
export const IMAGE_MIGRATIONS_DIR = "/opt/kryonix-dr/catalog/migrations";
/** Advisory lock key held while migrating ("kdr-migr" as ASCII). */
export const MIGRATION_LOCK_KEY = "7738889455958025842";

const FILE_RE = /^(\d{3})_[a-z0-9_]+\.sql$/;

export interface MigrateOptions {
  /** Directory holding 001_*.sql ...; default: the migrationsDir setting's env var, then catalog/migrations beside this file, then the image path. */
  dir?: string;
  /** Progress lines (one per applied file). */
  log?: (line: string) => void;
}

export interface MigrateResult {
  /** Files applied by this run, in order. */
  applied: string[];
  /** Files that were already applied with identical content. */
  skipped: string[];
  /** Recorded in the database but not present in this directory (a newer schema than this code knows). */
  unknown: string[];
}

export interface MigrationFile {
  name: string;
  sha256: string;
  sql: string;
}

/** Where the migrations are, given an explicit dir, the env var, or the usual locations. */
export function resolveMigrationsDir(dir?: string): string {
  const candidates = dir
    ? [dir]
    : process.env[MIGRATIONS_DIR_ENV]
      ? [process.env[MIGRATIONS_DIR_ENV]!]
      : [
          path.join(path.dirname(__filename), "migrations"),
          // In a bundle (esbuild) __filename is the bundle itself.
          path.join(path.dirname(__filename), "catalog", "migrations"),
          IMAGE_MIGRATIONS_DIR,
        ];
  for (const c of candidates) if (existsSync(c) && statSync(c).isDirectory()) return c;
  throw new Error(
    `Catalog migrations directory not found (looked in: ${candidates.join(", ")}). ` +
      `Pass the directory explicitly or set ${MIGRATIONS_DIR_ENV} to the folder holding 001_*.sql.`,
  );
}

function sha256(text: string): string {
  // Line endings normalised so a checkout with CRLF conversion does not look like an edit.
  return createHash("sha256").update(text.replace(/\r\n/g, "\n"), "utf8").digest("hex");
}

/** Reads and validates the migration files, in order. */
export function loadMigrations(dir: string): MigrationFile[] {
  const files = readdirSync(dir).filter((f) => f.endsWith(".sql")).sort();
  const seen = new Map<string, string>();
  return files.map((name) => {
    const m = FILE_RE.exec(name);
    if (!m) {
      throw new Error(
        `Migration file name '${name}' in ${dir} is invalid: use NNN_lowercase_words.sql (three digits, e.g. 004_add_index.sql).`,
      );
    }
    const other = seen.get(m[1]!);
    if (other) throw new Error(`Migrations '${other}' and '${name}' share the number ${m[1]}: renumber the newer one.`);
    seen.set(m[1]!, name);
    const sql = readFileSync(path.join(dir, name), "utf8");
    if (/^\s*(BEGIN|COMMIT|START\s+TRANSACTION)\s*;/im.test(sql)) {
      throw new Error(`Migration '${name}' contains its own BEGIN/COMMIT: remove it, each file already runs in one transaction.`);
    }
    return { name, sha256: sha256(sql), sql };
  });
}

export async function migrate(client: pg.ClientBase, opts: MigrateOptions = {}): Promise<MigrateResult> {
  const dir = resolveMigrationsDir(opts.dir);
  const files = loadMigrations(dir);
  const log = opts.log ?? (() => {});
  await client.query("SELECT pg_advisory_lock($1::bigint)", [MIGRATION_LOCK_KEY]);
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      filename    text PRIMARY KEY,
      sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
      applied_at  timestamptz NOT NULL DEFAULT now(),
      applied_by  text NOT NULL DEFAULT current_user,
      duration_ms integer NOT NULL
    )`);
    const { rows } = await client.query<{ filename: string; sha256: string }>(
      "SELECT filename, sha256 FROM schema_migrations ORDER BY filename",
    );
    const recorded = new Map(rows.map((r) => [r.filename, r.sha256]));
    for (const f of files) {
      const prev = recorded.get(f.name);
      if (prev !== undefined && prev !== f.sha256) {
        throw new Error(
          `Migration '${f.name}' was already applied with SHA-256 ${prev} but the file in ${dir} now has ${f.sha256}. ` +
            `Applied migrations must not change: restore the file to its applied content and put the change in a new numbered migration.`,
        );
      }
    }
    const result: MigrateResult = {
      applied: [],
      skipped: [],
      unknown: [...recorded.keys()].filter((n) => !files.some((f) => f.name === n)),
    };
    for (const f of files) {
      if (recorded.has(f.name)) {
        result.skipped.push(f.name);
        continue;
      }
      const t0 = Date.now();
      await client.query("BEGIN");
      try {
        await client.query(f.sql);
        await client.query("INSERT INTO schema_migrations (filename, sha256, duration_ms) VALUES ($1, $2, $3)", [
          f.name,
          f.sha256,
          Date.now() - t0,
        ]);
        await client.query("COMMIT");
      } catch (e) {
        await client.query("ROLLBACK").catch(() => {});
        const err = e as Error & { position?: string };
        const line = err.position ? ` (line ${f.sql.slice(0, Number(err.position)).split("\n").length})` : "";
        throw new Error(`Migration '${f.name}' failed and was rolled back${line}: ${err.message}`, { cause: e });
      }
      result.applied.push(f.name);
      log(`applied ${f.name} in ${Date.now() - t0} ms`);
    }
    return result;
  } finally {
    await client.query("SELECT pg_advisory_unlock($1::bigint)", [MIGRATION_LOCK_KEY]).catch(() => {});
  }
}
