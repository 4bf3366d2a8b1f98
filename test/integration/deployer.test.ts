/**
 * The local deployer against the real local platform (Docker Swarm, Ceph RGW, PostgreSQL 15):
 * `kryonix-dr deploy` of a fixture program with one resource of every mapped type, the real
 * objects read back through their own APIs, "declared equals deployed" against `plan --json`,
 * `kryonix-dr destroy` leaving nothing behind, and an unsupported type refused before anything
 * is created. Needs `bash scripts/platform-up.sh` first.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DeleteBucketLifecycleCommand,
  DeleteObjectCommand,
  GetBucketLifecycleConfigurationCommand,
  GetBucketPolicyCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadBucketCommand,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPlatform } from "../../local/platform.js";
import { DockerApi } from "../../local/docker-api.js";
import { rgwAdmin, s3Client, type S3Connection } from "../../local/rgw.js";
import { deploy, destroy, type DeploymentState } from "../../local/deployer.js";

const ROOT = join(__dirname, "..", "..");
const FIXTURE = join(ROOT, "test", "fixtures", "deployer-fixture");
const platform = readPlatform();
const run = randomBytes(3).toString("hex");
const prefix = `kdrtest-deployer-${run}`;
const stack = "demo";
const stateDir = mkdtempSync(join(tmpdir(), "kdrtest-deployer-state-"));
const workDir = mkdtempSync(join(tmpdir(), "kdrtest-deployer-work-"));
const configFile = join(stateDir, "config.json");
const roleSecret = randomBytes(12).toString("base64url");
const primary = platform.regions.primary;
const admin: S3Connection = { endpoint: primary.loopbackEndpoint, region: primary.name, accessKey: primary.accessKey, secretKey: primary.secretKey };
const docker = new DockerApi();

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, "bin", "kryonix-dr.mjs"), ...args], {
    encoding: "utf8",
    timeout: 480_000,
    env: { ...process.env, KDR_DEPLOYMENTS_DIR: stateDir },
    maxBuffer: 64 << 20,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const catalog = () =>
  new pg.Client({ host: platform.catalog.host, port: platform.catalog.port, user: platform.catalog.user, password: platform.catalog.password, database: "postgres" });

async function query<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
  const c = catalog();
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

/** Everything of ours still on the platform, by name prefix. */
async function leftovers(p: string): Promise<string[]> {
  const found: string[] = [];
  const services = await docker.request<Array<{ Spec: { Name: string } }>>("GET", "/services");
  found.push(...services.map((s) => `service ${s.Spec.Name}`));
  const containers = await docker.request<Array<{ Names: string[] }>>("GET", "/containers/json?all=1");
  found.push(...containers.flatMap((c) => c.Names.map((n) => `container ${n.replace(/^\//, "")}`)));
  const volumes = await docker.request<{ Volumes: Array<{ Name: string }> | null }>("GET", "/volumes");
  found.push(...(volumes.Volumes ?? []).map((v) => `volume ${v.Name}`));
  const networks = await docker.request<Array<{ Name: string }>>("GET", "/networks");
  found.push(...networks.map((n) => `network ${n.Name}`));
  const secrets = await docker.request<Array<{ Spec: { Name: string } }>>("GET", "/secrets");
  found.push(...secrets.map((s) => `secret ${s.Spec.Name}`));
  const configs = await docker.request<Array<{ Spec: { Name: string } }>>("GET", "/configs");
  found.push(...configs.map((s) => `config ${s.Spec.Name}`));
  const s3 = s3Client(admin);
  try {
    await s3.send(new HeadBucketCommand({ Bucket: `${p}-bucket` }));
    found.push(`bucket ${p}-bucket`);
  } catch {
    /* gone */
  } finally {
    s3.destroy();
  }
  try {
    await rgwAdmin(admin, "GET", "user", { uid: `${p}-user` });
    found.push(`rgw user ${p}-user`);
  } catch {
    /* gone */
  }
  const roles = await query<{ n: string }>("SELECT rolname AS n FROM pg_roles WHERE rolname LIKE $1 UNION ALL SELECT datname FROM pg_database WHERE datname LIKE $1", [`${p}%`]);
  found.push(...roles.map((r) => `pg ${r.n}`));
  return found.filter((f) => f.includes(p));
}

beforeAll(() => {
  writeFileSync(
    configFile,
    JSON.stringify({
      prefix: { value: prefix },
      image: { value: platform.images.base },
      workDir: { value: workDir },
      s3Server: { value: new URL(primary.loopbackEndpoint).host },
      s3Region: { value: primary.name },
      s3AccessKey: { value: primary.accessKey, secret: true },
      s3SecretKey: { value: primary.secretKey, secret: true },
      pgHost: { value: platform.catalog.host },
      pgPort: { value: String(platform.catalog.port) },
      pgUser: { value: platform.catalog.user },
      pgPassword: { value: platform.catalog.password, secret: true },
      roleSecret: { value: roleSecret, secret: true },
    }),
    { mode: 0o600 },
  );
});

afterAll(async () => {
  // Whatever a failed assertion left behind goes too.
  if (existsSync(join(stateDir, `${stack}.json`))) cli("destroy", "--stack", stack, "--force", "--quiet");
  for (const s of ["unsupported", "net", "failing"]) if (existsSync(join(stateDir, `${s}.json`))) cli("destroy", "--stack", s, "--quiet");
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(workDir, { recursive: true, force: true });
});

describe("kryonix-dr deploy of a program using every mapping", () => {
  let deployed: ReturnType<typeof cli>;
  let state: DeploymentState;

  beforeAll(() => {
    deployed = cli("deploy", "--stack", stack, "--project-dir", FIXTURE, "--config-file", configFile);
    if (deployed.code === 0) state = JSON.parse(readFileSync(join(stateDir, `${stack}.json`), "utf8")) as DeploymentState;
  });

  it("succeeds and records every resource", () => {
    expect(deployed.stderr.slice(deployed.stderr.indexOf("kryonix-dr deploy:") >>> 0)).toBe("");
    expect(deployed.code, deployed.stderr.split("\n").slice(-25).join("\n")).toBe(0);
    expect(deployed.stdout).toMatch(/deployed stack demo: 21 resources/);
    expect(state.status).toBe("deployed");
    expect(state.outputs).toEqual({ prefix });
  });

  it("declared equals deployed: the created set is exactly what plan --json lists", () => {
    const p = cli("plan", "--stack", stack, "--project-dir", FIXTURE, "--config-file", configFile, "--json");
    expect(p.code).toBe(0);
    const all = JSON.parse(p.stdout) as Array<{ type: string; name: string; custom: boolean; inputs: any }>;
    expect(all.find((x) => x.name === `${prefix}-once`)?.inputs.uploads[0].contentBase64).toBe("[secret]");
    expect(p.stdout).not.toContain(roleSecret);
    const planned = all.filter((x) => x.custom && !x.type.startsWith("pulumi:providers:"));
    const created = state.resources.map((e) => `${e.type} ${e.name}`).sort();
    expect(created).toEqual(planned.map((x) => `${x.type} ${x.name}`).sort());
    // Explicit providers became connection settings, one per declared provider.
    expect(Object.keys(state.providers).filter((k) => !k.startsWith("default:")).length).toBe(3);
  });

  it("created the Swarm service with the declared spec, converged, wired to its secret, config, volume and network", async () => {
    const svc = await docker.request<any>("GET", `/services/${prefix}-svc`);
    const cs = svc.Spec.TaskTemplate.ContainerSpec;
    expect(svc.Spec.Labels).toMatchObject({ "kdrtest.role": "svc", "kryonix.dr.local-deployer.stack": stack });
    expect(cs.Image).toBe(platform.images.base);
    expect(cs.Env).toEqual(expect.arrayContaining(["PLAIN=visible", "SEED_FILE=/data/seed.txt"]));
    expect(cs.Secrets).toEqual([expect.objectContaining({ SecretName: `${prefix}-secret`, File: expect.objectContaining({ Name: "role-secret", Mode: 0o400 }) })]);
    expect(cs.Configs).toEqual([expect.objectContaining({ ConfigName: `${prefix}-config`, File: expect.objectContaining({ Name: "/etc/kdr/greeting" }) })]);
    expect(cs.Mounts).toEqual([expect.objectContaining({ Type: "volume", Source: `${prefix}-vol`, Target: "/data", ReadOnly: true })]);
    expect(cs.Healthcheck).toMatchObject({ Test: ["CMD", "/bin/cat", "/data/seed.txt"], Interval: 5e9, Timeout: 2e9, Retries: 3 });
    expect(svc.Spec.TaskTemplate.Resources.Limits.MemoryBytes).toBe(64 * 1024 * 1024);
    expect(svc.Spec.TaskTemplate.RestartPolicy).toMatchObject({ Condition: "on-failure", MaxAttempts: 3 });
    const net = await docker.request<any>("GET", `/networks/${prefix}-net`);
    expect(svc.Spec.TaskTemplate.Networks).toEqual([{ Target: net.Id, Aliases: [`${prefix}-alias`] }]);
    expect(net).toMatchObject({ Driver: "overlay", Attachable: true });
    const tasks = await docker.request<any[]>("GET", `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: [svc.ID] }))}`);
    expect(tasks.some((t) => t.Status.State === "running")).toBe(true);
  });

  it("ran the run-once container, with its uploaded secret file, to a zero exit before the service that depends on it", async () => {
    const c = await docker.request<any>("GET", `/containers/${prefix}-once/json`);
    expect(c.State).toMatchObject({ Status: "exited", ExitCode: 0 });
    // The service reads the seed it wrote (its command fails otherwise, and it would not converge).
    const vol = await docker.request<any>("GET", `/volumes/${prefix}-vol`);
    expect(vol.Labels).toMatchObject({ "kdrtest.role": "vol", "kryonix.dr.local-deployer.stack": stack });
  });

  it("created the bucket with versioning, object lock and default retention, lifecycle, quota and policy", async () => {
    const s3 = s3Client(admin);
    const Bucket = `${prefix}-bucket`;
    try {
      expect((await s3.send(new GetBucketVersioningCommand({ Bucket }))).Status).toBe("Enabled");
      const lock = await s3.send(new GetObjectLockConfigurationCommand({ Bucket }));
      expect(lock.ObjectLockConfiguration).toEqual({ ObjectLockEnabled: "Enabled", Rule: { DefaultRetention: { Mode: "GOVERNANCE", Days: 1 } } });
      const lc = await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket }));
      const rules = Object.fromEntries((lc.Rules ?? []).map((r) => [r.ID, r]));
      expect(rules.full).toMatchObject({ Status: "Enabled", Expiration: { Days: 30 }, NoncurrentVersionExpiration: { NoncurrentDays: 1 } });
      expect(rules.full?.Filter?.Prefix ?? rules.full?.Prefix).toBe("full/");
      expect(rules.incremental).toMatchObject({ Expiration: { Days: 7 } });
      expect(rules.markers).toMatchObject({ Expiration: { ExpiredObjectDeleteMarker: true } });
      const policy = JSON.parse((await s3.send(new GetBucketPolicyCommand({ Bucket }))).Policy!);
      expect(policy.Statement[0]).toMatchObject({ Effect: "Deny", Principal: { AWS: [`arn:aws:iam:::user/${prefix}-user`] } });
      const info = await rgwAdmin<any>(admin, "GET", "bucket", { bucket: Bucket });
      expect(info.bucket_quota).toMatchObject({ enabled: true, max_size: 10 * 1024 * 1024 });
    } finally {
      s3.destroy();
    }
  });

  it("created a least-privilege user: its own prefix only, and no delete", async () => {
    const user = await rgwAdmin<any>(admin, "GET", "user", { uid: `${prefix}-user` });
    const key = user.keys.find((k: any) => k.access_key === `${prefix}-user`);
    expect(key).toBeDefined();
    const s3 = new S3Client({ endpoint: primary.loopbackEndpoint, region: primary.name, forcePathStyle: true, credentials: { accessKeyId: key.access_key, secretAccessKey: key.secret_key } });
    const Bucket = `${prefix}-bucket`;
    try {
      const put = await s3.send(new PutObjectCommand({ Bucket, Key: "full/svc/a.txt", Body: "payload" }));
      expect(put.VersionId).toBeTruthy();
      const got = await s3.send(new GetObjectCommand({ Bucket, Key: "full/svc/a.txt" }));
      expect(await got.Body!.transformToString()).toBe("payload");
      await expect(s3.send(new PutObjectCommand({ Bucket, Key: "full/other/a.txt", Body: "x" }))).rejects.toMatchObject({ name: "AccessDenied" });
      await expect(s3.send(new PutObjectCommand({ Bucket, Key: "incremental/svc/a.txt", Body: "x" }))).rejects.toMatchObject({ name: "AccessDenied" });
      await expect(s3.send(new DeleteObjectCommand({ Bucket, Key: "full/svc/a.txt", VersionId: put.VersionId }))).rejects.toMatchObject({ name: "AccessDenied" });
      await expect(s3.send(new DeleteObjectCommand({ Bucket, Key: "full/svc/a.txt" }))).rejects.toMatchObject({ name: "AccessDenied" });
    } finally {
      s3.destroy();
    }
  });

  it("created the PostgreSQL roles, database and grants", async () => {
    const roles = await query<{ rolname: string; rolcanlogin: boolean }>("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE $1 ORDER BY 1", [`${prefix}%`]);
    expect(roles).toEqual([
      { rolname: `${prefix}-owner`, rolcanlogin: true },
      { rolname: `${prefix}-reader`, rolcanlogin: true },
    ]);
    const [db] = await query<{ owner: string; connect: boolean; member: boolean }>(
      "SELECT pg_get_userbyid(datdba) AS owner, has_database_privilege($2, datname, 'CONNECT') AS connect, pg_has_role($2, 'pg_read_all_data', 'member') AS member FROM pg_database WHERE datname = $1",
      [`${prefix}-db`, `${prefix}-reader`],
    );
    expect(db).toEqual({ owner: `${prefix}-owner`, connect: true, member: true });
    // The role's password is the secret the program gave it.
    const c = new pg.Client({ host: platform.catalog.host, port: platform.catalog.port, user: `${prefix}-owner`, password: roleSecret, database: `${prefix}-db` });
    await c.connect();
    expect((await c.query("SELECT current_user AS u")).rows[0].u).toBe(`${prefix}-owner`);
    await c.end();
  });

  it("ran the local commands and recorded their output", () => {
    expect(readFileSync(join(workDir, "marker"), "utf8")).toBe("created\n");
    expect(deployed.stderr).toContain(`created command:local:Command ${prefix}-marker`);
  });

  it("drift: nothing changed is reported clean, naming what it could not observe", () => {
    const r = cli("drift", "--stack", stack);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/^no drift: \d+ resources of stack 'demo' match what was deployed$/m);
    expect(r.stdout).toMatch(/^not checked \(no way to observe them\): .*command:local:Command/m);
    const checked = Number(/no drift: (\d+)/.exec(r.stdout)![1]);
    expect(checked).toBeGreaterThanOrEqual(15);
  });

  it("deploying again updates in place from the config the stack was deployed with: a changed service is updated (same id, new spec), the rest left alone, and back again", async () => {
    const before = await docker.request<any>("GET", `/services/${prefix}-svc`);
    const changed = join(stateDir, "config-greeting.json");
    writeFileSync(changed, JSON.stringify({ ...JSON.parse(readFileSync(configFile, "utf8")), greeting: { value: "v2" } }), { mode: 0o600 });
    const u = cli("deploy", "--stack", stack, "--project-dir", FIXTURE, "--config-file", changed);
    expect(u.code, u.stderr.split("\n").slice(-25).join("\n")).toBe(0);
    expect(u.stdout).toMatch(/^updated stack demo in place: (\d+) unchanged, 1 updated, 0 replaced, 0 created, 0 deleted; 21 resources/m);
    expect(u.stderr).toMatch(new RegExp(`^updated docker:index/service:Service ${prefix}-svc \\(${before.ID}\\)`, "m"));
    const after = await docker.request<any>("GET", `/services/${prefix}-svc`);
    expect(after.ID).toBe(before.ID);
    expect(after.Spec.TaskTemplate.ContainerSpec.Env).toContain("GREETING=v2");
    expect(after.Version.Index).toBeGreaterThan(before.Version.Index);
    // The stack keeps the config it was deployed with, as a Pulumi stack does: the setting is
    // taken back by giving it empty. The one changed service goes back, nothing else moves.
    const reset = join(stateDir, "config-reset.json");
    writeFileSync(reset, JSON.stringify({ greeting: { value: "" } }), { mode: 0o600 });
    const kept = cli("deploy", "--stack", stack, "--project-dir", FIXTURE);
    expect(kept.code, kept.stderr.split("\n").slice(-25).join("\n")).toBe(0);
    expect(kept.stdout).toMatch(/^updated stack demo in place: \d+ unchanged, 0 updated, 0 replaced, 0 created, 0 deleted; 21 resources/m);
    const back = cli("deploy", "--stack", stack, "--project-dir", FIXTURE, "--config-file", reset);
    expect(back.code, back.stderr.split("\n").slice(-25).join("\n")).toBe(0);
    expect(back.stdout).toMatch(/^updated stack demo in place: \d+ unchanged, 1 updated, 0 replaced, 0 created, 0 deleted; 21 resources/m);
    expect((await docker.request<any>("GET", `/services/${prefix}-svc`)).Spec.TaskTemplate.ContainerSpec.Env).not.toContain("GREETING=v2");
    const clean = cli("drift", "--stack", stack);
    expect(clean.code, clean.stdout).toBe(0);
  });

  it("drift: changes made outside the program (a service scaled and given an env, a lifecycle deleted, a database's owner changed) are each reported", async () => {
    const svc = await docker.request<any>("GET", `/services/${prefix}-svc`);
    const spec = structuredClone(svc.Spec);
    spec.Mode = { Replicated: { Replicas: 0 } };
    spec.TaskTemplate.ContainerSpec.Env = [...spec.TaskTemplate.ContainerSpec.Env, "SNEAKY=1"];
    await docker.request("POST", `/services/${svc.ID}/update?version=${svc.Version.Index}`, spec);
    const s3 = s3Client(admin);
    await s3.send(new DeleteBucketLifecycleCommand({ Bucket: `${prefix}-bucket` }));
    s3.destroy();
    await query(`ALTER DATABASE "${prefix}-db" OWNER TO "${prefix}-reader"`);
    try {
      const r = cli("drift", "--stack", stack);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stdout).toMatch(new RegExp(`^CHANGED  docker:index/service:Service \\S+ \\(${svc.ID}\\)$`, "m"));
      expect(r.stdout).toContain("    Mode.Replicated.Replicas: 1 -> 0");
      expect(r.stdout).toContain('    TaskTemplate.ContainerSpec.Env: +SNEAKY=1');
      expect(r.stdout).toMatch(/^CHANGED  minio:index\/ilmPolicy:IlmPolicy .*\n {4}rule full: \{.*\} -> \(not set\)/m);
      expect(r.stdout).toMatch(new RegExp(`^ {4}owner: ${prefix}-owner -> ${prefix}-reader$`, "m"));
      expect(r.stdout).toMatch(/^DRIFT: 3 of \d+ checked resources of stack 'demo' differ from what was deployed$/m);
      const json = JSON.parse(cli("drift", "--stack", stack, "--json").stdout);
      expect(json.drifted.map((d: any) => d.type).sort()).toEqual(["docker:index/service:Service", "minio:index/ilmPolicy:IlmPolicy", "postgresql:index/database:Database"]);
    } finally {
      // Put the database back so destroy's DROP OWNED/REASSIGN sees what it created.
      await query(`ALTER DATABASE "${prefix}-db" OWNER TO "${prefix}-owner"`);
    }
  });

  it("destroy removes everything in reverse dependency order, runs delete commands, and leaves nothing", async () => {
    // The bucket holds a version from the least-privilege test; its S3Bucket has forceDestroy.
    const d = cli("destroy", "--stack", stack);
    expect(d.stderr.slice(d.stderr.indexOf("kryonix-dr destroy:") >>> 0)).toBe("");
    expect(d.code, d.stderr.split("\n").slice(-25).join("\n")).toBe(0);
    expect(d.stdout).toContain("destroyed stack demo: 21 resources");
    const order = [...d.stderr.matchAll(/^destroyed (\S+) (\S+)/gm)].map((m) => m[2]);
    // Dependents before what they depend on.
    const before = (a: string, b: string) => expect(order.indexOf(`${prefix}-${a}`)).toBeLessThan(order.indexOf(`${prefix}-${b}`));
    before("svc", "secret");
    before("svc", "net");
    before("svc", "once");
    before("once", "vol");
    before("attach", "user");
    before("ilm", "bucket");
    before("connect", "db");
    before("db", "owner");
    expect(existsSync(join(workDir, "marker"))).toBe(false);
    expect(existsSync(join(stateDir, `${stack}.json`))).toBe(false);
    expect(await leftovers(prefix)).toEqual([]);
  });
});

describe("an unsupported resource type", () => {
  it("fails the deployment before anything is created, naming the type", async () => {
    const file = join(stateDir, "unsupported-config.json");
    const p = `${prefix}-u`;
    writeFileSync(file, JSON.stringify({ prefix: { value: p } }));
    const r = cli("deploy", "--stack", "unsupported", "--project-dir", FIXTURE, "--config-file", file);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`does not support resource type(s) docker:index/plugin:Plugin (resource '${p}-plugin'); nothing was created`);
    expect(existsSync(join(stateDir, "unsupported.json"))).toBe(false);
    expect(await leftovers(p)).toEqual([]);
  });
});

describe("deploy() as a library", () => {
  it("runs each stack's program in a fresh process, so one caller can deploy several stacks", async () => {
    const p = `${prefix}-lib`;
    const lines: string[] = [];
    const r = await deploy({ stack: "net", projectDir: FIXTURE, stateDir, config: { prefix: { value: p } }, log: (l) => lines.push(l) });
    expect(r.difference).toEqual({ missing: [], extra: [] });
    expect(r.state.resources.map((e) => `${e.type} ${e.name}`)).toEqual([`docker:index/network:Network ${p}-net`]);
    expect(r.registrations.map((x) => x.type)).toContain("pulumi:providers:docker");
    expect(lines).toContain(`planned 2 resources`);
    // A second program in the same caller process.
    await expect(deploy({ stack: "unsupported", projectDir: FIXTURE, stateDir, config: { prefix: { value: `${p}-u` } } })).rejects.toThrow(
      "does not support resource type(s) docker:index/plugin:Plugin",
    );
    const net = await docker.request<{ Name: string }>("GET", `/networks/${p}-net`);
    expect(net.Name).toBe(`${p}-net`);
    const d = await destroy({ stack: "net", stateDir });
    expect(d.destroyed.map((e) => e.name)).toEqual([`${p}-net`]);
    expect(await leftovers(p)).toEqual([]);
  });
});

describe("a deployment that fails midway", () => {
  it("records what it created (the failed job's container too), never creates its dependents, and destroys cleanly", async () => {
    const p = `${prefix}-f`;
    const file = join(stateDir, "failing-config.json");
    writeFileSync(file, JSON.stringify({ prefix: { value: p }, image: { value: platform.images.base } }));
    const r = cli("deploy", "--stack", "failing", "--project-dir", FIXTURE, "--config-file", file);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`docker.Container ${p}-job exited with code 3: boom`);
    expect(r.stderr).toContain("remove them with 'kryonix-dr destroy --stack failing'");
    const state = JSON.parse(readFileSync(join(stateDir, "failing.json"), "utf8")) as DeploymentState;
    expect(state.status).toBe("failed");
    expect(state.resources.map((e) => `${e.type} ${e.name}`).sort()).toEqual([`docker:index/container:Container ${p}-job`, `docker:index/network:Network ${p}-net`]);
    expect((await leftovers(p)).sort()).toEqual([`container ${p}-job`, `network ${p}-net`]);
    const d = cli("destroy", "--stack", "failing");
    expect(d.code, d.stderr.split("\n").slice(-25).join("\n")).toBe(0);
    expect(await leftovers(p)).toEqual([]);
  });
});
