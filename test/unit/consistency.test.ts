/**
 * The consistency steps around a volume copy (agent/engines/consistency.ts) on real files and a
 * real HTTP server: Nextcloud's maintenance switch and Prometheus's snapshot call. The copies
 * themselves, in the agent image with a real Prometheus, are in consistency-image.test.ts.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Settings } from "../../agent/config.js";
import { enterMaintenance, leaveMaintenance, recoverMaintenance, removeTsdbSnapshot, takeTsdbSnapshot } from "../../agent/engines/consistency.js";

const CONFIG = "<?php\n$CONFIG = array (\n  'instanceid' => 'oc1',\n  'maintenance' => false,\n  'datadirectory' => '/var/www/html/data',\n);\n";
const dirs: string[] = [];
function volume(config: string | null = CONFIG): string {
  const d = mkdtempSync(join(tmpdir(), "kdrtest-consistency-"));
  dirs.push(d);
  if (config !== null) {
    mkdirSync(join(d, "config"));
    writeFileSync(join(d, "config", "config.php"), config, { mode: 0o640 });
  }
  return d;
}
const php = (d: string) => readFileSync(join(d, "config", "config.php"), "utf8");
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("Nextcloud maintenance mode around a copy", () => {
  it("turns it on, then off, leaving config.php as it was byte for byte", () => {
    const d = volume();
    expect(enterMaintenance(d)).toBe(true);
    expect(php(d)).toMatch(/'maintenance' => true/);
    leaveMaintenance(d, true);
    expect(php(d)).toBe(CONFIG);
  });
  it("adds the switch when config.php has none, and turns it off after", () => {
    const d = volume("<?php\n$CONFIG = array (\n  'instanceid' => 'oc1',\n);\n");
    expect(enterMaintenance(d)).toBe(true);
    expect(php(d)).toMatch(/'maintenance' => true,/);
    leaveMaintenance(d, true);
    expect(php(d)).toMatch(/'maintenance' => false,/);
    expect(php(d)).not.toMatch(/kdr-agent/);
  });
  it("leaves a maintenance mode someone else set on, before and after the copy", () => {
    const on = CONFIG.replace("=> false", "=> true");
    const d = volume(on);
    expect(enterMaintenance(d)).toBe(false);
    leaveMaintenance(d, false);
    expect(php(d)).toBe(on);
    recoverMaintenance(d, "test");
    expect(php(d), "not ours: left alone at start and in a restore").toBe(on);
  });
  it("one a killed run left on is taken over by the next run, or turned off at start and in a restored copy", () => {
    const d = volume();
    enterMaintenance(d);
    // The run was killed here. The next one owns it and turns it off after its copy.
    expect(enterMaintenance(d)).toBe(true);
    leaveMaintenance(d, true);
    expect(php(d)).toBe(CONFIG);
    enterMaintenance(d);
    recoverMaintenance(d, "test");
    expect(php(d)).toBe(CONFIG);
  });
  it("names the problem when config.php is missing or is not Nextcloud's", () => {
    expect(() => enterMaintenance(volume(null))).toThrow(/config\/config\.php does not exist: KDR_VOLUME_PATH must be Nextcloud's \/var\/www\/html volume/);
    expect(() => enterMaintenance(volume("<?php echo 1;\n"))).toThrow(/no \$CONFIG array/);
  });
});

describe("Prometheus TSDB snapshot", () => {
  let server: Server;
  let url = "";
  let answer: { status: number; body: string } = { status: 200, body: "" };
  let vol = "";
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.method === "POST" && req.url === "/api/v1/admin/tsdb/snapshot") {
        const name = /"name":"([^"]+)"/.exec(answer.body)?.[1];
        if (answer.status === 200 && name) mkdirSync(join(vol, "snapshots", name), { recursive: true });
        res.writeHead(answer.status).end(answer.body);
      } else res.writeHead(404).end("404 page not found");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));
  const settings = (state: string) => new Settings(new Map(), { KDR_TSDB_SNAPSHOT_URL: url, KDR_STATE_DIR: state });

  it("takes a snapshot, returns its directory, and removes it (and its pending record) after", async () => {
    vol = volume(null);
    const state = volume(null);
    answer = { status: 200, body: JSON.stringify({ status: "success", data: { name: "20261202T050000Z-1a2b3c" } }) };
    const snap = await takeTsdbSnapshot(settings(state), vol);
    expect(snap).toEqual({ name: "20261202T050000Z-1a2b3c", dir: join(vol, "snapshots", "20261202T050000Z-1a2b3c") });
    expect(existsSync(join(state, "tsdb-snapshot-pending"))).toBe(true);
    removeTsdbSnapshot(settings(state), vol, snap.name);
    expect(existsSync(snap.dir)).toBe(false);
    expect(existsSync(join(state, "tsdb-snapshot-pending"))).toBe(false);
  });
  it("removes the snapshot a killed run left before taking the next one", async () => {
    vol = volume(null);
    const state = volume(null);
    answer = { status: 200, body: JSON.stringify({ status: "success", data: { name: "first-1" } }) };
    await takeTsdbSnapshot(settings(state), vol);
    answer = { status: 200, body: JSON.stringify({ status: "success", data: { name: "second-2" } }) };
    await takeTsdbSnapshot(settings(state), vol);
    expect(existsSync(join(vol, "snapshots", "first-1"))).toBe(false);
    expect(existsSync(join(vol, "snapshots", "second-2"))).toBe(true);
  });
  it("says to enable the admin API when Prometheus refuses, and names an unreachable URL", async () => {
    vol = volume(null);
    answer = { status: 405, body: "admin APIs disabled" };
    await expect(takeTsdbSnapshot(settings(volume(null)), vol)).rejects.toThrow(/answered HTTP 405: admin APIs disabled \(start Prometheus with --web.enable-admin-api\)/);
    const s = new Settings(new Map(), { KDR_TSDB_SNAPSHOT_URL: "http://127.0.0.1:1", KDR_STATE_DIR: volume(null) });
    await expect(takeTsdbSnapshot(s, vol)).rejects.toThrow(/KDR_TSDB_SNAPSHOT_URL: POST http:\/\/127\.0\.0\.1:1\/api\/v1\/admin\/tsdb\/snapshot failed: .*is Prometheus on a network the sidecar is attached to/);
  });
  it("refuses a volume that is not Prometheus's data directory", async () => {
    vol = volume(null);
    answer = { status: 200, body: JSON.stringify({ status: "success", data: { name: "x-1" } }) };
    const other = volume(null);
    await expect(takeTsdbSnapshot(settings(volume(null)), other)).rejects.toThrow(/snapshots\/x-1 does not exist: KDR_VOLUME_PATH must be Prometheus's data volume/);
  });
});
