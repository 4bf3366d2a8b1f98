/**
 * Typed access to the backup catalog, shared by the agent, the drill and the CLI. Plain SQL over
 * `pg` (no ORM); every function takes a `pg.Pool` or a connected `pg.Client`.
 *
 * These files run inside the agent image: they must never import @pulumi. This index re-exports
 * the query files, one per subject: types, runs, rebuilt (rows made from manifests), wal, plans (recovery plans and the RPO), health,
 * recovery-log, summaries (status), copies (objects copied to another region), standby (warm standbys' lag) and replication (what is not copied yet); sql.ts holds their internal helpers and is not exported.
 *
 * Multi-row changes are single SQL statements (data-modifying CTEs), so they are atomic without
 * the caller managing a transaction, and safe to call inside one.
 *
 * Conventions:
 * - Sizes are bytes (JS numbers; exact up to 8 PiB). Times are Dates. Durations are seconds.
 * - "Good" backup: completed and not failed by a verify. "Verified": verify_status = 'passed'.
 * - parent_backup_id means "a restore of this backup also needs the parent" (a delta chain).
 *   Self-contained incrementals (restic snapshots) leave it NULL and keep the tool's parent
 *   snapshot id in metadata.
 * - A physical PostgreSQL base whose WAL is inside the base (pg_basebackup -X fetch/stream) needs
 *   archived WAL from the segment holding its end LSN on; set metadata.walIncluded = false for a
 *   base taken with -X none, whose plan then starts at the segment holding its start LSN.
 */
export * from "./types.js";
export * from "./runs.js";
export * from "./rebuilt.js";
export * from "./wal.js";
export * from "./plans.js";
export * from "./health.js";
export * from "./recovery-log.js";
export * from "./summaries.js";
export * from "./copies.js";
export * from "./standby.js";
export * from "./replication.js";
