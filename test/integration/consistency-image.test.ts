/**
 * #13's consistency steps, run by the agent inside its image with the volume mounted read-write
 * as the sidecar mounts it for these two services, against real restic on RGW and a real catalog:
 * - Prometheus (Debian's, admin API on): each backup is a TSDB snapshot taken through the API,
 *   stored alone, and removed from the volume after the upload; the restored snapshot starts a
 *   Prometheus that answers for a moment before the backup.
 * - Nextcloud's maintenance mode: on during the copy (seen by the pre hook, and in the copy),
 *   off after it, also when the run failed; the restored copy comes back out of it.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPlatform } from "../../local/platform.js";
import { dockerTry } from "../support/docker.js";
import { agentWorld, type AgentWorld } from "../support/s3.js";

let w: AgentWorld;
let out: string;
const RUN = Date.now().toString(36);

beforeAll(async () => {
  w = await agentWorld("kdrtest-consistency");
  out = mkdtempSync(path.join(tmpdir(), "kdrtest-consistency-out-"));
});

afterAll(async () => {
  // The containers wrote as root.
  dockerTry(["run", "--rm", "-v", `${out}:/o`, "--entrypoint", "sh", readPlatform().images.agent, "-c", "rm -rf /o/*"]);
  rmSync(out, { recursive: true, force: true });
  await w?.close();
});

/** kdr-agent in the agent image, host network (catalog and RGW on loopback), `mount` at /data read-write, `out` at /out. */
function agent(env: Record<string, string>, mount: string, args: string[]) {
  const e = Object.entries(env).filter(([k]) => k.startsWith("KDR_") && k !== "KDR_SECRET_DIR" && k !== "KDR_STATE_DIR" && k !== "KDR_VOLUME_PATH");
  return dockerTry([
    "run", "--rm", "--network", "host",
    "-v", `${w.secretDir}:/run/secrets:ro`, "-v", `${mount}:/data`, "-v", `${out}:/out`,
    "-e", "KDR_VOLUME_PATH=/data", ...e.flatMap(([k, v]) => ["-e", `${k}=${v}`]),
    "--entrypoint", "kdr-agent", readPlatform().images.agent, ...args,
  ]);
}

/** A Prometheus of the platform's image on `data`, published on a loopback port; returns its URL. */
async function startPrometheus(name: string, data: string): Promise<string> {
  const r = dockerTry(["run", "-d", "--name", name, "-v", `${data}:/prometheus`, "-p", "127.0.0.1::9090", readPlatform().images.prometheus]);
  if (r.status !== 0) throw new Error(r.stderr);
  const port = dockerTry(["port", name, "9090/tcp"]).stdout.trim().split(":").pop();
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 60; i++) {
    if (await fetch(`${url}/-/ready`).then((x) => x.ok, () => false)) return url;
    await new Promise((res) => setTimeout(res, 1000));
  }
  throw new Error(`Prometheus ${name} not ready: ${dockerTry(["logs", "--tail", "20", name]).stderr}`);
}

/** The value of up{job="prometheus"} at `time` (unix seconds), or undefined when there is no sample. */
async function upAt(url: string, time: number): Promise<string | undefined> {
  const q = new URLSearchParams({ query: 'up{job="prometheus"}', time: String(time) });
  const r = (await (await fetch(`${url}/api/v1/query?${q}`)).json()) as { data: { result: Array<{ value: [number, string] }> } };
  return r.data.result[0]?.value[1];
}

describe("Prometheus: a TSDB snapshot per backup, stored alone and removed after upload (agent image, real Prometheus)", () => {
  const volume = `kdrtest-prom-${RUN}`;
  const live = `kdrtest-prom-live-${RUN}`;
  const restored = `kdrtest-prom-restored-${RUN}`;
  let url = "";
  let sampledAt = 0;
  let backupId = "";
  let env: Record<string, string>;

  beforeAll(async () => {
    url = await startPrometheus(live, volume);
    // Its own scrape (Debian's config: job "prometheus", every 15 s): wait for a sample.
    for (let i = 0; i < 60 && !sampledAt; i++) {
      const t = Math.floor(Date.now() / 1000);
      if ((await upAt(url, t)) === "1") sampledAt = t;
      else await new Promise((res) => setTimeout(res, 2000));
    }
    if (!sampledAt) throw new Error("Prometheus scraped nothing in two minutes");
    env = w.env("prometheus-tsdb", { KDR_ENGINE: "volume", KDR_VOLUME_PATH: "/data", KDR_TSDB_SNAPSHOT_URL: url });
  }, 240_000);

  afterAll(() => {
    dockerTry(["rm", "-f", live, restored]);
    dockerTry(["volume", "rm", "-f", volume]);
  });

  it("takes the snapshot through the admin API, stores it, and leaves no snapshot in the volume", async () => {
    const b = agent(env, volume, ["backup", "--type", "full", "--json"]);
    expect(b.status, b.stderr).toBe(0);
    backupId = (JSON.parse(b.stdout) as { backupId: string }).backupId;
    const name = /tsdb: snapshot (\S+)\n/.exec(b.stderr)?.[1];
    expect(name, b.stderr).toBeDefined();
    expect(b.stderr).toContain(`tsdb: snapshot ${name} removed from the volume`);
    const left = dockerTry(["run", "--rm", "-v", `${volume}:/p`, "--entrypoint", "ls", readPlatform().images.agent, "-A", "/p/snapshots"]);
    expect(left.stdout.trim(), "no snapshot left in Prometheus's volume").toBe("");
    const { rows } = await w.db.query("SELECT backup_status, metadata AS details FROM backup_management WHERE backup_id = $1", [backupId]);
    expect(rows[0].backup_status).toBe("completed");
    expect(rows[0].details.tsdbSnapshot.name).toBe(name);
  }, 300_000);

  it("a second backup leaves none either (each run removes its own)", () => {
    const b = agent(env, volume, ["backup", "--type", "incremental"]);
    expect(b.status, b.stderr).toBe(0);
    expect(dockerTry(["run", "--rm", "-v", `${volume}:/p`, "--entrypoint", "ls", readPlatform().images.agent, "-A", "/p/snapshots"]).stdout.trim()).toBe("");
  }, 300_000);

  it("restores the snapshot as a data directory (no WAL, no snapshots in it) that a new Prometheus serves, with the sample from before the backup", async () => {
    const r = agent(env, volume, ["restore", "--backup-id", backupId, "--target", "/out/prometheus"]);
    expect(r.status, r.stderr).toBe(0);
    const entries = dockerTry(["run", "--rm", "-v", `${out}:/o`, "--entrypoint", "ls", readPlatform().images.agent, "-A", "/o/prometheus"]).stdout.trim().split("\n");
    expect(entries.length).toBeGreaterThan(0);
    expect(entries).not.toContain("wal");
    expect(entries).not.toContain("snapshots");
    const back = await startPrometheus(restored, path.join(out, "prometheus"));
    expect(await upAt(back, sampledAt)).toBe("1");
  }, 300_000);
});

describe("Nextcloud: maintenance mode around the copy (agent image)", () => {
  const CONFIG = "<?php\n$CONFIG = array (\n  'instanceid' => 'oc1kdr',\n  'maintenance' => false,\n  'datadirectory' => '/var/www/html/data',\n);\n";
  let vol: string;
  let env: Record<string, string>;
  let backupId = "";
  const config = () => readFileSync(path.join(vol, "config", "config.php"), "utf8");

  beforeAll(() => {
    vol = mkdtempSync(path.join(tmpdir(), "kdrtest-nextcloud-"));
    mkdirSync(path.join(vol, "config"));
    mkdirSync(path.join(vol, "data", "admin", "files"), { recursive: true });
    writeFileSync(path.join(vol, "config", "config.php"), CONFIG, { mode: 0o640 });
    writeFileSync(path.join(vol, "data", "admin", "files", "report.txt"), "quarterly numbers\n");
    // The pre hook runs inside maintenance mode: it keeps what config.php said then.
    env = w.env("nextcloud-mm", { KDR_ENGINE: "volume", KDR_VOLUME_PATH: "/data", KDR_MAINTENANCE_MODE: "nextcloud", KDR_HOOK_PRE: "cp /data/config/config.php /out/during.php" });
  });

  afterAll(() => rmSync(vol, { recursive: true, force: true }));

  it("is on during the copy and off after it, config.php byte for byte as before", async () => {
    const b = agent(env, vol, ["backup", "--type", "full", "--json"]);
    expect(b.status, b.stderr).toBe(0);
    backupId = (JSON.parse(b.stdout) as { backupId: string }).backupId;
    expect(b.stderr).toMatch(/nextcloud: maintenance mode on[\s\S]*restic[\s\S]*nextcloud: maintenance mode off/);
    expect(readFileSync(path.join(out, "during.php"), "utf8")).toMatch(/'maintenance' => true/);
    expect(config()).toBe(CONFIG);
    const { rows } = await w.db.query("SELECT metadata AS details FROM backup_management WHERE backup_id = $1", [backupId]);
    expect(rows[0].details.maintenanceMode).toMatch(/turned on and off by this run/);
  }, 300_000);

  it("the restored copy, taken in maintenance mode, comes back out of it", () => {
    const r = agent(env, vol, ["restore", "--backup-id", backupId, "--target", "/out/nextcloud"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/nextcloud: maintenance mode was on in the copy \(turned on by the backup\); turning it off/);
    expect(readFileSync(path.join(out, "nextcloud", "config", "config.php"), "utf8")).toBe(CONFIG);
    expect(readFileSync(path.join(out, "nextcloud", "data", "admin", "files", "report.txt"), "utf8")).toBe("quarterly numbers\n");
  }, 300_000);

  it("a run that fails inside maintenance mode still turns it off, and says why it failed", () => {
    const b = agent({ ...env, KDR_HOOK_PRE: "echo pre hook broke >&2; exit 3" }, vol, ["backup", "--type", "incremental"]);
    expect(b.status).not.toBe(0);
    expect(b.stderr).toMatch(/KDR_HOOK_PRE command failed \(exit 3\)/);
    expect(b.stderr).toMatch(/nextcloud: maintenance mode off/);
    expect(config()).toBe(CONFIG);
  }, 300_000);

  it("a maintenance mode an operator set is left on", () => {
    const on = CONFIG.replace("=> false", "=> true");
    writeFileSync(path.join(vol, "config", "config.php"), on);
    const b = agent({ ...env, KDR_HOOK_PRE: "" }, vol, ["backup", "--type", "incremental"]);
    expect(b.status, b.stderr).toBe(0);
    expect(b.stderr).toMatch(/already in maintenance mode \(not set by a backup\)/);
    expect(config()).toBe(on);
    writeFileSync(path.join(vol, "config", "config.php"), CONFIG);
  }, 300_000);
});
