/**
 * The local platform is really up: Swarm runs a service built from a local image, both S3 regions
 * (Ceph RGW) store and serve objects, enforce object lock and run lifecycle expiry, Swarm
 * containers reach the host's S3 endpoints and catalog through the gateway address, and a second
 * platform-up run changes nothing.
 */
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutBucketLifecycleConfigurationCommand,
  PutObjectCommand,
  PutObjectLockConfigurationCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPlatform, PLATFORM_FILE, type Platform, type S3Region } from "../../local/platform.js";
import { docker, removeQuietly, runScript, waitForTask } from "../support/docker.js";

const REPO = path.resolve(__dirname, "../..");
const REGIONS = ["primary", "dr"] as const;
const run = randomBytes(3).toString("hex");
const name = (what: string) => `kdrtest-platform-${what}-${run}`;

let platform: Platform;
const services: string[] = [];
const networks: string[] = [];
const buckets: { client: S3Client; bucket: string }[] = [];

function client(r: S3Region, endpoint = r.loopbackEndpoint): S3Client {
  return new S3Client({
    endpoint,
    region: r.name,
    forcePathStyle: true,
    credentials: { accessKeyId: r.accessKey, secretAccessKey: r.secretKey },
  });
}

async function bucket(r: S3Region, label: string, lock = false): Promise<{ client: S3Client; bucket: string }> {
  const b = { client: client(r), bucket: `${name(label)}-${r.name}` };
  await b.client.send(new CreateBucketCommand({ Bucket: b.bucket, ObjectLockEnabledForBucket: lock || undefined }));
  buckets.push(b);
  return b;
}

beforeAll(() => {
  platform = readPlatform();
});

afterAll(async () => {
  removeQuietly("service", services);
  // The overlay network can be removed only once the task's container is gone.
  for (let i = 0; i < 20 && networks.length > 0; i++) {
    const r = spawnSync("docker", ["network", "rm", ...networks], { stdio: "ignore" });
    if (r.status === 0) break;
    await new Promise((res) => setTimeout(res, 1000));
  }
  for (const b of buckets) {
    const versions = await b.client.send(new ListObjectVersionsCommand({ Bucket: b.bucket })).catch(() => undefined);
    for (const v of [...(versions?.Versions ?? []), ...(versions?.DeleteMarkers ?? [])]) {
      await b.client
        .send(new DeleteObjectCommand({ Bucket: b.bucket, Key: v.Key!, VersionId: v.VersionId, BypassGovernanceRetention: true }))
        .catch(() => undefined);
    }
    await b.client.send(new DeleteBucketCommand({ Bucket: b.bucket })).catch(() => undefined);
  }
});

describe("Docker Swarm", () => {
  it("runs a service built from a local image to completion with exit code 0, and records a failing one as failed", async () => {
    const ok = name("ok");
    const bad = name("bad");
    services.push(ok, bad);
    for (const [svc, cmd] of [
      [ok, "test -s /etc/debian_version"],
      [bad, "exit 3"],
    ] as const) {
      docker(["service", "create", "--detach", "--name", svc, "--restart-condition", "none",
        "--label", "kryonix.dr.managed=true", platform.images.base, "bash", "-c", cmd]);
    }
    const good = await waitForTask(ok);
    expect(good).toMatchObject({ state: "complete", exitCode: 0 });
    const failed = await waitForTask(bad);
    expect(failed).toMatchObject({ state: "failed", exitCode: 3 });
  });

  it("the agent image answers to kdr-agent (the name the runbooks use) and carries every tool the agent drives", () => {
    const out = docker(["run", "--rm", "--label", "kryonix.dr.managed=true", "--entrypoint", "sh", platform.images.agent, "-c",
      "kdr-agent --version && pg_basebackup --version && pg_receivewal --version && redis-cli --version && restic version && age --version && zstd --version"]);
    expect(out).toMatch(/0\.\d+\.\d+/);
    for (const tool of [/pg_basebackup \(PostgreSQL\) 15/, /pg_receivewal \(PostgreSQL\) 15/, /redis-cli 7/, /restic 0\.14/, /^v?1\.\d+\.\d+$/m, /Zstandard CLI|zstd command line interface/]) expect(out).toMatch(tool);
  });

  it("lets a Swarm container on an overlay network reach both S3 endpoints and the catalog through the gateway address", async () => {
    const net = name("net");
    networks.push(net);
    docker(["network", "create", "--driver", "overlay", "--attachable", "--label", "kryonix.dr.managed=true", net]);
    const svc = name("reach");
    services.push(svc);
    // bash's /dev/tcp: a real TCP connection and an HTTP status line from each RGW.
    const probes = REGIONS.map((r) => {
      const u = new URL(platform.regions[r].endpoint);
      return `exec 3<>/dev/tcp/${u.hostname}/${u.port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 ' && exec 3<&-`;
    });
    probes.push(`exec 3<>/dev/tcp/${platform.catalog.host}/${platform.catalog.port} && exec 3<&-`);
    docker(["service", "create", "--detach", "--name", svc, "--restart-condition", "none", "--network", net,
      "--label", "kryonix.dr.managed=true", platform.images.base, "bash", "-c", probes.join(" && ")]);
    expect(await waitForTask(svc)).toMatchObject({ state: "complete", exitCode: 0 });
  });
});

describe.each(REGIONS)("S3 region %s (Ceph RGW)", (regionName) => {
  it("accepts a put and serves it back on the loopback and the gateway endpoint", async () => {
    const r = platform.regions[regionName];
    expect(r.name).toBe(regionName);
    const b = await bucket(r, "rw");
    const body = randomBytes(64 * 1024);
    await b.client.send(new PutObjectCommand({ Bucket: b.bucket, Key: "k/obj.bin", Body: body }));
    for (const endpoint of [r.loopbackEndpoint, r.endpoint]) {
      const got = await client(r, endpoint).send(new GetObjectCommand({ Bucket: b.bucket, Key: "k/obj.bin" }));
      expect(Buffer.from(await got.Body!.transformToByteArray()).equals(body)).toBe(true);
    }
  });

  it("refuses to delete a version locked by the bucket's default GOVERNANCE retention", async () => {
    const r = platform.regions[regionName];
    const b = await bucket(r, "lock", true);
    await b.client.send(new PutObjectLockConfigurationCommand({
      Bucket: b.bucket,
      ObjectLockConfiguration: { ObjectLockEnabled: "Enabled", Rule: { DefaultRetention: { Mode: "GOVERNANCE", Days: 1 } } },
    }));
    const put = await b.client.send(new PutObjectCommand({ Bucket: b.bucket, Key: "locked", Body: "keep me" }));
    expect(put.VersionId).toBeTruthy();
    const head = await b.client.send(new HeadObjectCommand({ Bucket: b.bucket, Key: "locked", VersionId: put.VersionId }));
    expect(head.ObjectLockMode).toBe("GOVERNANCE");
    await expect(
      b.client.send(new DeleteObjectCommand({ Bucket: b.bucket, Key: "locked", VersionId: put.VersionId })),
    ).rejects.toMatchObject({ name: "AccessDenied" });
    const still = await b.client.send(new GetObjectCommand({ Bucket: b.bucket, Key: "locked", VersionId: put.VersionId }));
    expect(await still.Body!.transformToString()).toBe("keep me");
  });

  it("expires an object under a lifecycle rule within the debug interval while another prefix stays", async () => {
    const r = platform.regions[regionName];
    expect(r.lcDebugIntervalSeconds).toBeGreaterThan(0);
    const b = await bucket(r, "lc");
    await b.client.send(new PutBucketLifecycleConfigurationCommand({
      Bucket: b.bucket,
      LifecycleConfiguration: { Rules: [{ ID: "expire-tmp", Status: "Enabled", Filter: { Prefix: "tmp/" }, Expiration: { Days: 1 } }] },
    }));
    await b.client.send(new PutObjectCommand({ Bucket: b.bucket, Key: "tmp/gone", Body: "x" }));
    await b.client.send(new PutObjectCommand({ Bucket: b.bucket, Key: "keep/stays", Body: "y" }));
    const started = Date.now();
    // One lifecycle "day" is lcDebugIntervalSeconds; RGW's lifecycle worker needs a few of them.
    const deadline = started + 170_000;
    let expired = false;
    while (Date.now() < deadline) {
      const res = await b.client.send(new HeadObjectCommand({ Bucket: b.bucket, Key: "tmp/gone" })).catch((e: { name?: string }) => e);
      if ((res as { name?: string }).name === "NotFound") {
        expired = true;
        break;
      }
      await new Promise((res) => setTimeout(res, 2000));
    }
    expect(expired, `tmp/gone still there after ${Math.round((Date.now() - started) / 1000)} s`).toBe(true);
    const kept = await b.client.send(new GetObjectCommand({ Bucket: b.bucket, Key: "keep/stays" }));
    expect(await kept.Body!.transformToString()).toBe("y");
  }, 200_000);
});

describe("catalog PostgreSQL", () => {
  it("accepts the published superuser over TCP on the gateway address, with scram and wal_level replica", async () => {
    const c = new pg.Client({ ...platform.catalog, database: "postgres" });
    await c.connect();
    try {
      const { rows } = await c.query("SELECT current_setting('wal_level') AS wal, current_setting('password_encryption') AS enc, version() AS v");
      expect(rows[0]).toMatchObject({ wal: "replica", enc: "scram-sha-256" });
      expect(rows[0].v).toMatch(/^PostgreSQL 15\./);
    } finally {
      await c.end();
    }
    await expect(
      new pg.Client({ ...platform.catalog, password: "wrong", database: "postgres" }).connect(),
    ).rejects.toThrow(/password authentication failed/);
  });
});

describe("platform-up", () => {
  it("changes nothing on a second run on a ready machine, and finishes in under 60 s", async () => {
    const script = path.join(REPO, "scripts/platform-up.sh");
    // The first run converges (sources of the agent image may have changed since the suite began).
    const first = await runScript(script, 900_000);
    expect(first.status, first.stdout + first.stderr).toBe(0);
    // Other work on this machine may edit the agent's sources meanwhile, which rightly rebuilds its
    // image; such a run is retried, and any other change fails the test.
    const changing = /\b(started|initialised|created|recreated|restarted|reloaded|built|imported|installed|written|initdb|set to|moved)\b/;
    for (let attempt = 1; ; attempt++) {
      const before = { mtime: statSync(PLATFORM_FILE).mtimeMs, facts: readFileSync(PLATFORM_FILE, "utf8"), pids: daemonPids() };
      const second = await runScript(script, 900_000);
      expect(second.status, second.stdout + second.stderr).toBe(0);
      const out = second.stdout.split("\n");
      const steps = out.filter((l) => l.startsWith("==> "));
      const oks = out.filter((l) => l.startsWith("    ok ("));
      expect(oks.length).toBe(steps.length);
      const changed = out.flatMap((l, i) => (l.startsWith("    ok (") && changing.test(l) ? [`${out[i - 1]} ${l.trim()}`] : []));
      if (changed.length > 0 && attempt < 3 && changed.every((c) => /^==> Image kryonix-dr\/agent:local .* ok \(built/.test(c))) continue;
      expect(changed).toEqual([]);
      expect(second.seconds).toBeLessThan(60);
      expect(statSync(PLATFORM_FILE).mtimeMs).toBe(before.mtime);
      expect(readFileSync(PLATFORM_FILE, "utf8")).toBe(before.facts);
      expect(daemonPids()).toEqual(before.pids);
      break;
    }
  }, 1_260_000);
});

/** The pids of the platform's daemons, from the pid files platform-up and the daemons keep. */
function daemonPids(): Record<string, string> {
  const state = path.dirname(PLATFORM_FILE);
  const files: Record<string, string> = {
    catalog: path.join(state, "catalog/data/postmaster.pid"),
  };
  for (const r of REGIONS) {
    for (const d of ["mon.a", "osd.0", `client.rgw.${r}`]) files[`${r}/${d}`] = path.join(state, `rgw/${r}/run/${d}.pid`);
  }
  const out: Record<string, string> = {};
  for (const [k, f] of Object.entries(files)) out[k] = readFileSync(f, "utf8").split("\n")[0]!.trim();
  out.dockerd = docker(["info", "--format", "{{.ID}}"]) + " " + spawnSync("pidof", ["dockerd"], { encoding: "utf8" }).stdout.trim();
  return out;
}
