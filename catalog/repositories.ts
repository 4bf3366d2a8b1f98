/**
 * The catalog's record of each volume service's restic repositories (migration 007): which
 * generation is written to, the key restic must open it with, and which generations failed and
 * why. Shared by the agent (which writes it) and `kryonix-dr status` (which reports it).
 */
import type { Db } from "./types.js";

export interface ResticRepositoryRow {
  tenantId: string;
  serviceName: string;
  generation: number;
  bucket: string;
  prefix: string;
  repositoryId: string | null;
  keyId: string | null;
  status: "active" | "failed";
  createdAt: Date;
  failedAt: Date | null;
  failure: string | null;
}

const COLS = `tenant_id, service_name, generation, storage_bucket, storage_prefix, repository_id, key_id, status, created_at, failed_at, failure`;

function toRow(r: Record<string, unknown>): ResticRepositoryRow {
  return {
    tenantId: r.tenant_id as string,
    serviceName: r.service_name as string,
    generation: r.generation as number,
    bucket: r.storage_bucket as string,
    prefix: r.storage_prefix as string,
    repositoryId: (r.repository_id as string | null) ?? null,
    keyId: (r.key_id as string | null) ?? null,
    status: r.status as "active" | "failed",
    createdAt: r.created_at as Date,
    failedAt: (r.failed_at as Date | null) ?? null,
    failure: (r.failure as string | null) ?? null,
  };
}

/** Every generation of one service, oldest first (or of every service of a tenant). */
export async function listResticRepositories(db: Db, opts: { tenantId?: string; service?: string } = {}): Promise<ResticRepositoryRow[]> {
  const r = await db.query(
    `SELECT ${COLS} FROM restic_repository
     WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR service_name = $2)
     ORDER BY tenant_id, service_name, generation`,
    [opts.tenantId ?? null, opts.service ?? null],
  );
  return r.rows.map(toRow);
}

/** Records a generation that was initialised (or found intact in storage) as the one written to. */
export async function recordActiveRepository(
  db: Db,
  r: { tenantId: string; service: string; generation: number; bucket: string; prefix: string; repositoryId: string; keyId: string },
): Promise<ResticRepositoryRow> {
  const res = await db.query(
    `INSERT INTO restic_repository (tenant_id, service_name, generation, storage_bucket, storage_prefix, repository_id, key_id, status)
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'active')
     ON CONFLICT (tenant_id, service_name, generation) DO UPDATE
        SET repository_id = EXCLUDED.repository_id, key_id = EXCLUDED.key_id, storage_bucket = EXCLUDED.storage_bucket,
            storage_prefix = EXCLUDED.storage_prefix
        WHERE restic_repository.status = 'active'
     RETURNING ${COLS}`,
    [r.tenantId, r.service, r.generation, r.bucket, r.prefix, r.repositoryId, r.keyId],
  );
  if (!res.rows[0]) throw new Error(`restic repository generation ${r.generation} of '${r.service}' is recorded as failed; it is never made active again.`);
  return toRow(res.rows[0]);
}

/** Re-pins the key of an active generation (an orphan key was found and ignored). */
export async function pinRepositoryKey(db: Db, tenantId: string, service: string, generation: number, keyId: string): Promise<void> {
  await db.query(`UPDATE restic_repository SET key_id = $4 WHERE tenant_id = $1 AND service_name = $2 AND generation = $3`, [tenantId, service, generation, keyId]);
}

/**
 * Marks a generation failed with the reason (inserting the row when the catalog never knew it,
 * e.g. an init that stopped after writing its key). Idempotent: the first failure is kept.
 */
export async function recordFailedRepository(
  db: Db,
  r: { tenantId: string; service: string; generation: number; bucket: string; prefix: string; failure: string },
): Promise<ResticRepositoryRow> {
  const res = await db.query(
    `INSERT INTO restic_repository (tenant_id, service_name, generation, storage_bucket, storage_prefix, status, failed_at, failure)
     VALUES ($1, $2, $3, $4, $5, 'failed', now(), $6)
     ON CONFLICT (tenant_id, service_name, generation) DO UPDATE
        SET status = 'failed', failed_at = coalesce(restic_repository.failed_at, now()),
            failure = coalesce(restic_repository.failure, EXCLUDED.failure)
     RETURNING ${COLS}`,
    [r.tenantId, r.service, r.generation, r.bucket, r.prefix, r.failure],
  );
  return toRow(res.rows[0]!);
}
