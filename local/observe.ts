/**
 * What each deployed resource looks like on the real system right now, in the words a person
 * reads in a drift report: a flat map of property paths to values (`undefined` when the object is
 * gone). The deployer observes every resource once its deployment is complete; `kryonix-dr drift`
 * observes again and reports every difference, as `pulumi refresh --preview-only
 * --expect-no-changes` does against the real providers.
 *
 * Observed are the properties a change made outside the program would alter: a service's whole
 * spec, a container's image/env/command and whether it runs, a bucket's versioning, object lock,
 * lifecycle, policy and encryption, a user's keys and inline policy, a role's attributes, a
 * database's owner, a replication slot's existence. Types without an observer (local commands,
 * grants, policies kept by the deployer) are counted as not checked, never as clean.
 */
import {
  GetBucketEncryptionCommand,
  GetBucketLifecycleConfigurationCommand,
  GetBucketPolicyCommand,
  GetBucketVersioningCommand,
  GetObjectLockConfigurationCommand,
  HeadBucketCommand,
} from "@aws-sdk/client-s3";
import pg from "pg";
import { DockerApi, DockerApiError, DEFAULT_DOCKER_HOST } from "./docker-api.js";
import { minioConnection } from "./mappings/minio.js";
import { postgresqlConnection } from "./mappings/postgresql.js";
import { rgwAdmin, rgwIam, RgwError, s3Client } from "./rgw.js";
import { mapLimit } from "./mappings/types.js";

/** Property path → value (JSON-comparable). */
export type Observed = Record<string, unknown>;
type Observer = (record: Record<string, unknown>, provider: Record<string, unknown>) => Promise<Observed | undefined>;
type Obj = Record<string, any>;

/** Nested objects as dotted paths; arrays and scalars are leaves. */
export function flatten(value: unknown, prefix = "", out: Observed = {}): Observed {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const entries = Object.entries(value as Obj);
    if (entries.length === 0 && prefix) out[prefix] = {};
    for (const [k, v] of entries) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out[prefix] = value;
  }
  return out;
}

const docker = (provider: Record<string, unknown>) => new DockerApi(typeof provider.host === "string" && provider.host ? provider.host : DEFAULT_DOCKER_HOST);

/** GET an Engine object; undefined when it no longer exists. */
async function inspect(provider: Record<string, unknown>, path: string): Promise<Obj | undefined> {
  try {
    return await docker(provider).request<Obj>("GET", path);
  } catch (err) {
    if (err instanceof DockerApiError && err.status === 404) return undefined;
    throw err;
  }
}

const sortedEnv = (env: unknown) => (Array.isArray(env) ? [...(env as string[])].sort() : env);

const dockerObservers: Record<string, Observer> = {
  "docker:index/service:Service": async (rec, p) => {
    const s = await inspect(p, `/services/${rec.id}`);
    if (!s) return undefined;
    const spec = structuredClone(s.Spec ?? {}) as Obj;
    const cs = spec.TaskTemplate?.ContainerSpec;
    if (cs?.Env) cs.Env = sortedEnv(cs.Env);
    return flatten(spec);
  },
  "docker:index/container:Container": async (rec, p) => {
    const c = await inspect(p, `/containers/${rec.id}/json`);
    if (!c) return undefined;
    return {
      image: c.Config?.Image,
      env: sortedEnv(c.Config?.Env),
      command: c.Config?.Cmd,
      entrypoint: c.Config?.Entrypoint,
      restartPolicy: c.HostConfig?.RestartPolicy?.Name,
      mounts: (c.Mounts as Obj[] | undefined)?.map((m) => `${m.Name ?? m.Source}:${m.Destination}`).sort(),
      running: c.State?.Running === true,
    };
  },
  "docker:index/secret:Secret": async (rec, p) => {
    const s = await inspect(p, `/secrets/${rec.id}`);
    return s ? flatten({ Name: s.Spec?.Name, Labels: s.Spec?.Labels }) : undefined;
  },
  "docker:index/serviceConfig:ServiceConfig": async (rec, p) => {
    const s = await inspect(p, `/configs/${rec.id}`);
    return s ? flatten({ Name: s.Spec?.Name, Labels: s.Spec?.Labels, Data: s.Spec?.Data }) : undefined;
  },
  "docker:index/network:Network": async (rec, p) => {
    const n = await inspect(p, `/networks/${rec.id}`);
    return n ? { name: n.Name, driver: n.Driver, attachable: n.Attachable, internal: n.Internal } : undefined;
  },
  "docker:index/volume:Volume": async (rec, p) => {
    const v = await inspect(p, `/volumes/${encodeURIComponent(String(rec.name ?? rec.id))}`);
    return v ? { name: v.Name, driver: v.Driver } : undefined;
  },
};

const s3Gone = (err: unknown) => {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === "NoSuchBucket" || e?.name === "NotFound" || e?.$metadata?.httpStatusCode === 404 || (err instanceof RgwError && err.status === 404);
};
/** A bucket configuration that is not set reads as an error named after it: that is "none". */
const notSet = (err: unknown) =>
  /NoSuch(LifecycleConfiguration|BucketPolicy)|ObjectLockConfigurationNotFound|ServerSideEncryptionConfigurationNotFound/.test(
    String((err as { name?: string; Code?: string })?.name ?? (err as { Code?: string })?.Code ?? ""),
  );

/** Runs a bucket read with the provider's admin connection; undefined when the bucket is gone. */
async function bucketRead(provider: Record<string, unknown>, bucket: string, read: (s3: ReturnType<typeof s3Client>) => Promise<Observed>): Promise<Observed | undefined> {
  const s3 = s3Client(minioConnection(provider));
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
    return await read(s3);
  } catch (err) {
    if (s3Gone(err)) return undefined;
    throw err;
  } finally {
    s3.destroy();
  }
}

async function orNone<T>(p: Promise<T>): Promise<T | "none"> {
  try {
    return await p;
  } catch (err) {
    if (notSet(err)) return "none";
    throw err;
  }
}

const minioObservers: Record<string, Observer> = {
  "minio:index/s3Bucket:S3Bucket": (rec, p) => bucketRead(p, String(rec.bucket), async () => ({ exists: true })),
  "minio:index/s3BucketVersioning:S3BucketVersioning": (rec, p) =>
    bucketRead(p, String(rec.bucket), async (s3) => {
      const v = await s3.send(new GetBucketVersioningCommand({ Bucket: String(rec.bucket) }));
      const lock = await orNone(s3.send(new GetObjectLockConfigurationCommand({ Bucket: String(rec.bucket) })));
      return flatten({
        versioning: v.Status ?? "never enabled",
        objectLock: lock === "none" ? "none" : { enabled: lock.ObjectLockConfiguration?.ObjectLockEnabled, defaultRetention: lock.ObjectLockConfiguration?.Rule?.DefaultRetention ?? "none" },
      });
    }),
  "minio:index/ilmPolicy:IlmPolicy": (rec, p) =>
    bucketRead(p, String(rec.bucket), async (s3) => {
      const lc = await orNone(s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: String(rec.bucket) })));
      if (lc === "none") return { rules: "none" };
      const out: Observed = {};
      for (const r of lc.Rules ?? []) out[`rule ${r.ID}`] = JSON.stringify({ status: r.Status, filter: r.Filter ?? r.Prefix, expiration: r.Expiration, noncurrent: r.NoncurrentVersionExpiration });
      return out;
    }),
  "minio:index/s3BucketPolicy:S3BucketPolicy": (rec, p) =>
    bucketRead(p, String(rec.bucket), async (s3) => {
      const pol = await orNone(s3.send(new GetBucketPolicyCommand({ Bucket: String(rec.bucket) })));
      return { policy: pol === "none" ? "none" : pol.Policy };
    }),
  "minio:index/s3BucketServerSideEncryption:S3BucketServerSideEncryption": (rec, p) =>
    bucketRead(p, String(rec.bucket), async (s3) => {
      const enc = await orNone(s3.send(new GetBucketEncryptionCommand({ Bucket: String(rec.bucket) })));
      return { encryption: enc === "none" ? "none" : JSON.stringify(enc.ServerSideEncryptionConfiguration?.Rules ?? []) };
    }),
  "minio:index/iamUser:IamUser": async (rec, p) => {
    try {
      const u = await rgwAdmin<Obj>(minioConnection(p), "GET", "user", { uid: String(rec.uid) });
      return { suspended: u.suspended === 1 || u.suspended === true, accessKeys: ((u.keys as Obj[] | undefined) ?? []).map((k) => k.access_key).sort() };
    } catch (err) {
      if (err instanceof RgwError && (err.status === 404 || err.code === "NoSuchUser")) return undefined;
      throw err;
    }
  },
  "minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment": async (rec, p) => {
    try {
      const xml = await rgwIam(minioConnection(p), "GetUserPolicy", { UserName: String(rec.userName), PolicyName: String(rec.policyName) });
      const doc = /<PolicyDocument>([\s\S]*?)<\/PolicyDocument>/.exec(xml)?.[1] ?? "";
      return { policyDocument: decodeXml(doc) };
    } catch (err) {
      if (err instanceof RgwError && (err.status === 404 || err.code === "NoSuchEntity")) return undefined;
      throw err;
    }
  },
};

function decodeXml(s: string): string {
  const text = s.replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  try {
    return JSON.stringify(JSON.parse(decodeURIComponent(text)));
  } catch {
    return text;
  }
}

async function pgQuery(provider: Record<string, unknown>, sql: string, params: unknown[]): Promise<Obj[]> {
  const conn = postgresqlConnection(provider);
  const client = new pg.Client({ host: conn.host, port: conn.port, user: conn.user, password: conn.password, database: conn.database, ssl: conn.ssl });
  client.on("error", () => {});
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as Obj[];
  } finally {
    await client.end();
  }
}

const postgresqlObservers: Record<string, Observer> = {
  "postgresql:index/role:Role": async (rec, p) => {
    const rows = await pgQuery(
      p,
      // As text: 'infinity' (what the provider and an in-place update set when validUntil is not
      // given) is no JavaScript date, and means the same as none.
      "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolconnlimit, " +
        "CASE WHEN rolvaliduntil IS NULL OR rolvaliduntil = 'infinity' THEN NULL ELSE to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') END AS rolvaliduntil " +
        "FROM pg_roles WHERE rolname = $1",
      [rec.name],
    );
    return rows[0] ? { ...rows[0] } : undefined;
  },
  "postgresql:index/database:Database": async (rec, p) => {
    const rows = await pgQuery(p, "SELECT pg_get_userbyid(datdba) AS owner, datallowconn, datconnlimit FROM pg_database WHERE datname = $1", [rec.name]);
    return rows[0] ? { ...rows[0] } : undefined;
  },
  "postgresql:index/physicalReplicationSlot:PhysicalReplicationSlot": async (rec, p) => {
    const rows = await pgQuery(p, "SELECT slot_type FROM pg_replication_slots WHERE slot_name = $1", [rec.name]);
    return rows[0] ? { type: rows[0].slot_type } : undefined;
  },
};

export const OBSERVERS: ReadonlyMap<string, Observer> = new Map(Object.entries({ ...dockerObservers, ...minioObservers, ...postgresqlObservers }));

/** The resources of a deployment, observed now (up to 8 at a time); entries without an observer are left alone. */
export async function observeEntries(
  entries: Array<{ type: string; record: Record<string, unknown>; provider: string; observed?: Observed | null }>,
  providers: Record<string, Record<string, unknown>>,
): Promise<Map<(typeof entries)[number], Observed | undefined>> {
  const out = new Map<(typeof entries)[number], Observed | undefined>();
  const observable = entries.filter((e) => OBSERVERS.has(e.type));
  await mapLimit(observable, 8, async (e) => {
    out.set(e, await OBSERVERS.get(e.type)!(e.record, providers[e.provider] ?? {}));
  });
  return out;
}
