/**
 * Runbook §10 (add a protected service), command by command, on a stack of its own on the real
 * local platform: a deployed stack gains a volume service by one entry in its stack file;
 * `kryonix-dr plan --policy` and `kryonix-dr deploy` stand in for `pulumi preview --policy-pack`
 * and `pulumi up`. The update creates the new service's resources, replaces and deletes nothing;
 * the new sidecar's first backup is taken by hand and verified in the drill cron container.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import pg from "pg";
import { tmpdir } from "node:os";
import { join } from "node:path";
import yaml from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetBucketLifecycleConfigurationCommand, S3Client } from "@aws-sdk/client-s3";
import { runAsync } from "../support/spawn.js";
import { readPlatform } from "../../local/platform.js";
import { docker, dockerExec, waitForTask } from "../../local/drill/docker.js";

const ROOT = join(__dirname, "..", "..");
const CLI = join(ROOT, "bin", "kryonix-dr.mjs");
const STACK = "addsvc";
const PREFIX = "kdr-addsvc";
const project = mkdtempSync(join(tmpdir(), "kdrtest-addsvc-"));
const stackFile = join(project, `Pulumi.${STACK}.yaml`);
const cli = (args: string[], timeoutMs = 600_000) => runAsync(process.execPath, [CLI, ...args, "--project-dir", project], { timeoutMs, cwd: ROOT });
/** A runbook command as typed, placeholders filled in. */
const sh = (command: string, timeoutMs = 300_000) => runAsync("bash", ["-c", command], { timeoutMs, cwd: ROOT });
type StackFile = { config: Record<string, unknown> };

// Hourly fulls, incrementals every 30 min (an important service's RPO is 1 h): the test's own backup is the first.
const SCHEDULES = { full: "0 0 * * *", incremental: "*/30 * * * *" };
const WIKI = { name: "wiki", engine: "volume", tier: "important", dataPath: "/data", schedules: SCHEDULES, placement: ["node.role == manager"] };
let before: Record<string, string>;
let update = "";

async function serviceIds(): Promise<Record<string, string>> {
  const all = await docker.request<Array<{ ID: string; Spec: { Name: string } }>>("GET", "/services");
  return Object.fromEntries(all.filter((s) => s.Spec.Name.startsWith(`${PREFIX}-`)).map((s) => [s.Spec.Name, s.ID]));
}

beforeAll(async () => {
  // The project: this repository's program, and a stack file like the local stack's with one volume service.
  const pulumiYaml = readFileSync(join(ROOT, "Pulumi.yaml"), "utf8").replace(/^main: (.+)$/m, (_m, main: string) => `main: ${join(ROOT, main)}`);
  writeFileSync(join(project, "Pulumi.yaml"), pulumiYaml);
  // The stack's local commands run `node bin/kryonix-dr.mjs ...` in the project directory.
  symlinkSync(join(ROOT, "bin"), join(project, "bin"));
  const local = yaml.load(readFileSync(join(ROOT, "Pulumi.local.yaml"), "utf8")) as StackFile;
  const c = local.config;
  c["kryonix-dr:namePrefix"] = PREFIX;
  c["kryonix-dr:services"] = [{ name: "files", engine: "volume", tier: "important", dataPath: "/data", schedules: SCHEDULES, placement: ["node.role == manager"] }];
  c["kryonix-dr:catalog"] = { ...(c["kryonix-dr:catalog"] as object), backup: false };
  delete c["kryonix-dr:monitoring"];
  delete c["kryonix-dr:targetPassword-postgresql"];
  writeFileSync(stackFile, yaml.dump(local));
  const d = await cli(["deploy", "--stack", STACK, "--platform", "--quiet"]);
  expect(d.status, d.stderr).toBe(0);
  before = await serviceIds();
}, 660_000);

afterAll(async () => {
  await runAsync(process.execPath, [CLI, "destroy", "--stack", STACK, "--force", "--quiet"], { timeoutMs: 600_000, cwd: ROOT });
  rmSync(project, { recursive: true, force: true });
}, 660_000);

describe("runbook §10: add a protected service (real Swarm, RGW, PostgreSQL)", () => {
  it("1-2. one entry in the stack file; the preview with the policies passes", async () => {
    const f = yaml.load(readFileSync(stackFile, "utf8")) as StackFile;
    (f.config["kryonix-dr:services"] as unknown[]).push(WIKI);
    writeFileSync(stackFile, yaml.dump(f));
    const p = await cli(["plan", "--stack", STACK, "--policy"], 300_000);
    expect(p.status, p.stderr + p.stdout).toBe(0);
    expect(p.stdout).toMatch(/sidecar-wiki-service/);
  }, 330_000);

  it("3. the update creates the new service's resources and replaces or deletes nothing; the other services keep their ids", async () => {
    const u = await cli(["deploy", "--stack", STACK], 600_000);
    update = u.stdout + u.stderr;
    expect(u.status, update).toBe(0);
    const m = /updated stack addsvc in place: (\d+) unchanged, (\d+) updated, (\d+) replaced, (\d+) created, (\d+) deleted/.exec(update);
    expect(m, update).not.toBeNull();
    const [, , , replaced, created, deleted] = m!.map(Number);
    expect({ replaced, deleted }).toEqual({ replaced: 0, deleted: 0 });
    expect(created).toBeGreaterThanOrEqual(4);
    // In place, not replaced: a bucket's lifecycle (its rules gain the new service's prefixes)
    // was once "replaced" by create-then-delete, which left the bucket with no lifecycle at all.
    expect(update).toMatch(/updated minio:index\/ilmPolicy:IlmPolicy primary-important-lifecycle/);
    for (const r of ["primary", "dr"] as const) {
      const region = readPlatform().regions[r];
      const s3 = new S3Client({ endpoint: region.loopbackEndpoint, region: region.name, forcePathStyle: true, credentials: { accessKeyId: region.accessKey, secretAccessKey: region.secretKey } });
      const lc = await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: `${PREFIX}-backups-important` }));
      const prefixes = (lc.Rules ?? []).map((x) => x.Filter?.Prefix ?? "");
      expect(prefixes.some((p) => p.includes("wiki")), `${r}: ${prefixes.join(" ")}`).toBe(true);
      expect(prefixes.some((p) => p.includes("files")), `${r}: ${prefixes.join(" ")}`).toBe(true);
    }
    const after = await serviceIds();
    for (const [name, id] of Object.entries(before)) expect(after[name], name).toBe(id);
    expect(Object.keys(after).filter((n) => !(n in before)).sort()).toEqual([`${PREFIX}-wiki`, `${PREFIX}-wiki-backup`]);
  }, 630_000);

  it("4. its first backup, taken now in its sidecar, completes and is verified in the drill cron container", async () => {
    const wiki = await waitForTask(`${PREFIX}-wiki`, 180_000, false);
    expect((await dockerExec(wiki, ["sh", "-c", "echo 'first page' > /data/index.md"])).code).toBe(0);
    await waitForTask(`${PREFIX}-wiki-backup`, 180_000);
    const b = await sh(`docker exec $(docker ps -qf name=${PREFIX}-wiki-backup) kdr-agent backup --type full --wait 300`);
    expect(b.status, b.stderr).toBe(0);
    const l = await sh(`docker exec $(docker ps -qf name=${PREFIX}-wiki-backup) kdr-agent list --limit 3`);
    expect(l.status, l.stderr).toBe(0);
    expect(l.stdout).toMatch(/wiki\s+full\s+completed/);
    await waitForTask(`${PREFIX}-drill`, 180_000, false);
    const v = await sh(`docker exec $(docker ps -qf name=${PREFIX}-drill) kdr-agent verify --pending \\\n  --service wiki --engine volume --tier important --s3-bucket ${PREFIX}-backups-important`);
    expect(v.status, v.stderr + v.stdout).toBe(0);
    // The drill cron's own verify-new-wiki job (every 30 s on this stack) may have been first.
    expect(v.stdout).toMatch(/verify [0-9a-f-]{36}: PASSED|verify wiki: no backup waiting for verification/);
    const after = await sh(`docker exec $(docker ps -qf name=${PREFIX}-wiki-backup) kdr-agent list --limit 3`);
    expect(after.stdout).toMatch(/wiki\s+full\s+completed.*verify passed/);
  }, 600_000);
});

/**
 * Runbook §8, the catalog passwords: `pulumi config set --secret kryonix-dr:catalogWriterPassword
 * <new>` then `pulumi up` (here `kryonix-dr deploy --config-file`) changes the role's password and
 * every container that logs in with it, in one deployment; the old password stops working.
 */
describe("runbook §8: rotate a catalog password (real Swarm, PostgreSQL)", () => {
  it("the new writer password works for the sidecars, the old one is refused", async () => {
    const spec = await docker.request<{ Spec: { TaskTemplate: { ContainerSpec: { Env?: string[] } } } }>("GET", `/services/${PREFIX}-wiki-backup`);
    const env = Object.fromEntries((spec.Spec.TaskTemplate.ContainerSpec.Env ?? []).map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));
    const writer = env.KDR_CATALOG_USER!;
    const database = env.KDR_CATALOG_DATABASE ?? "kryonix_dr";
    const secretsFile = "/var/lib/kryonix-dr/deployments/addsvc.secrets.json";
    const old = (JSON.parse(readFileSync(secretsFile, "utf8")) as Record<string, string>).catalogWriterPassword!;
    const fresh = randomBytes(18).toString("base64url");
    const file = join(project, "rotate.json");
    writeFileSync(file, JSON.stringify({ catalogWriterPassword: { value: fresh, secret: true } }), { mode: 0o600 });
    const u = await cli(["deploy", "--stack", STACK, "--config-file", file], 600_000);
    expect(u.status, u.stdout + u.stderr).toBe(0);
    expect(u.stdout + u.stderr).toMatch(/updated stack addsvc in place: \d+ unchanged, [1-9]\d* updated/);
    const p = readPlatform().catalog;
    const login = async (password: string) => {
      const c = new pg.Client({ host: p.host, port: p.port, user: writer, password, database });
      try {
        await c.connect();
        await c.end();
        return "ok";
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(await login(fresh)).toBe("ok");
    expect(await login(old)).toMatch(/password authentication failed/);
    // The sidecar's task was restarted with the new secret: its next backup logs in with it.
    await waitForTask(`${PREFIX}-wiki-backup`, 180_000);
    const tries: string[] = [];
    for (let i = 0; i < 20; i++) {
      const b = await sh(`docker exec $(docker ps -qf name=${PREFIX}-wiki-backup) kdr-agent backup --type incremental`);
      if (b.status === 0) return;
      tries.push(`${new Date().toISOString()} exit ${b.status}: ${(b.stderr + b.stdout).trim().split("\n").slice(-4).join(" | ")}`);
      // The old task may still answer while Swarm replaces it.
      await new Promise((r) => setTimeout(r, 3000));
    }
    const ps = await sh(`docker service ps --no-trunc ${PREFIX}-wiki-backup; docker service logs --timestamps --tail 40 ${PREFIX}-wiki-backup`);
    throw new Error(`no backup with the rotated password succeeded within a minute:\n${tries.join("\n")}\n${ps.stdout}${ps.stderr}`);
  }, 700_000);
});


/**
 * Runbook §8, the S3 admin keys: a second key on the admin user, `pulumi config set --secret
 * kryonix-dr:primaryAccessKey/primarySecretKey` and `pulumi up` (here `kryonix-dr deploy
 * --config-file`), then the old key removed on the server. The keys are only the program's: no
 * sidecar restarts, no bucket or user is replaced, and with the old key gone the stack still
 * deploys. The test then rotates back the same way, so the platform keeps its recorded key.
 */
describe("runbook §8: rotate the S3 admin keys (real RGW, Swarm)", () => {
  it("the program manages the stack with the new key, the old one removed; nothing else changes", async () => {
    const region = readPlatform().regions.primary;
    const conf = "/var/lib/kryonix-dr/rgw/primary/ceph.conf";
    const fresh = { access: `KDRROT${randomBytes(7).toString("hex").toUpperCase()}`, secret: randomBytes(30).toString("base64url") };
    const keyCreate = (k: { access: string; secret: string }) =>
      sh(`radosgw-admin -c ${conf} key create --uid=kdr-admin --key-type=s3 --access-key=${k.access} --secret-key=${k.secret}`);
    const keyRm = (access: string) => sh(`radosgw-admin -c ${conf} key rm --uid=kdr-admin --key-type=s3 --access-key=${access}`);
    const file = join(project, "rotate-s3.json");
    const servicesBefore = await serviceIds();
    const versions = async () => {
      const all = await docker.request<Array<{ ID: string; Version: { Index: number }; Spec: { Name: string } }>>("GET", "/services");
      return Object.fromEntries(all.filter((s) => s.Spec.Name.startsWith(`${PREFIX}-`)).map((s) => [s.Spec.Name, s.Version.Index]));
    };
    const versionsBefore = await versions();
    try {
      const add = await keyCreate(fresh);
      expect(add.status, add.stderr).toBe(0);
      writeFileSync(file, JSON.stringify({ primaryAccessKey: { value: fresh.access, secret: true }, primarySecretKey: { value: fresh.secret, secret: true } }), { mode: 0o600 });
      const u = await cli(["deploy", "--stack", STACK, "--config-file", file]);
      expect(u.status, u.stdout + u.stderr).toBe(0);
      expect(u.stdout + u.stderr, "no resource is replaced or deleted by a key rotation").toMatch(/ 0 replaced, 0 created, 0 deleted/);
      // The one resource holding the key: the default-retention command runs again with it, in place.
      expect(u.stdout + u.stderr).toMatch(/^updated command:local:Command primary-important-default-retention /m);
      // The old key removed on the server: the program still reads and updates everything with the new one.
      const rm = await keyRm(region.accessKey);
      expect(rm.status, rm.stderr).toBe(0);
      // The stack keeps the keys it was given: a plain deploy uses the new ones.
      const again = await cli(["deploy", "--stack", STACK]);
      expect(again.status, again.stdout + again.stderr).toBe(0);
      expect(again.stdout + again.stderr).toMatch(/ 0 updated in place, 0 replaced, 0 created, 0 deleted/);
      // Observed with the keys the deployment now holds: nothing drifted, and the old key is not needed.
      const drift = await runAsync(process.execPath, [CLI, "drift", "--stack", STACK], { timeoutMs: 300_000, cwd: ROOT });
      expect(drift.status, drift.stdout + drift.stderr).toBe(0);
      // No sidecar was restarted: none of them holds an admin key.
      expect(await serviceIds()).toEqual(servicesBefore);
      expect(await versions()).toEqual(versionsBefore);
    } finally {
      // Rotate back the same way: the platform's recorded key on the server, a deploy with it, the new key removed.
      await keyCreate({ access: region.accessKey, secret: region.secretKey });
      // A deployed stack keeps the config it was given (as `pulumi config set` does): set the old keys back.
      const backFile = join(project, "rotate-s3-back.json");
      writeFileSync(backFile, JSON.stringify({ primaryAccessKey: { value: region.accessKey, secret: true }, primarySecretKey: { value: region.secretKey, secret: true } }), { mode: 0o600 });
      const back = await cli(["deploy", "--stack", STACK, "--config-file", backFile]);
      expect(back.status, back.stdout + back.stderr).toBe(0);
      await keyRm(fresh.access);
    }
  }, 900_000);
});
