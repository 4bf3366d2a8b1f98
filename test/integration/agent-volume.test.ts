/**
 * The agent's volume engine: restic (Debian 0.14) to the local RGW, with pre/post hooks,
 * round trip by file hash, incremental upload size after a 1% change, restic check --read-data
 * as verify, and a damaged pack caught by verify. HTTP hooks (`POST <url>`, as the prod stack's
 * Prometheus snapshot) are made by the agent itself against a real HTTP server.
 */
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { treeHashes } from "../support/tree.js";
import { agentWorld, flipByte, type AgentWorld } from "../support/s3.js";

let w: AgentWorld;
let env: Record<string, string>;
let vol: string;
const SERVICE = "grafana-data";

beforeAll(async () => {
  w = await agentWorld("kdrtest-agent-vol");
  vol = path.join(w.root, "volume");
  // 200 files of 40 KiB random data (8 MiB) in a few folders, like a config/data volume.
  for (let d = 0; d < 4; d++) {
    mkdirSync(path.join(vol, `dir${d}`), { recursive: true });
    for (let i = 0; i < 50; i++) writeFileSync(path.join(vol, `dir${d}`, `file${i}.bin`), randomBytes(40 * 1024));
  }
  writeFileSync(path.join(vol, "grafana.ini"), "[server]\nhttp_port = 3000\n");
  env = w.env(SERVICE, {
    KDR_ENGINE: "volume",
    KDR_VOLUME_PATH: vol,
    KDR_HOOK_PRE: `echo pre > ${path.join(w.root, "hook.log")}`,
    KDR_HOOK_POST: `echo post >> ${path.join(w.root, "hook.log")}`,
  });
});

afterAll(async () => {
  await w?.close();
});

describe("agent: volume (restic)", () => {
  let full: { backupId: string; storedBytes: number; rawBytes: number };

  it("skips an empty volume: nothing stored, no row in the catalog, exit 0", async () => {
    const empty = path.join(w.root, "empty-volume");
    mkdirSync(empty, { recursive: true });
    const r = await w.run(["backup", "--type", "full", "--json"], { ...env, KDR_VOLUME_PATH: empty });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: "skipped", service: SERVICE, reason: expect.stringMatching(/empty-volume is empty: nothing to back up/) });
    const { rows } = await w.db.query("SELECT count(*)::int AS n FROM backup_management WHERE service_name = $1", [SERVICE]);
    expect(rows[0].n).toBe(0);
  });

  it("backs up with hooks around it and restores every file with the same hash", async () => {
    const r = await w.run(["backup", "--type", "full", "--json"], env);
    expect(r.code, r.stderr).toBe(0);
    full = JSON.parse(r.stdout);
    const rp = (full as unknown as { recoveryPoint: { start: string; end: string } }).recoveryPoint;
    // The point spans restic's walk: start before it, end after it.
    expect(Date.parse(rp.end)).toBeGreaterThan(Date.parse(rp.start));
    expect(readFileSync(path.join(w.root, "hook.log"), "utf8")).toBe("pre\npost\n");
    const [row] = (await w.db.query("SELECT * FROM backup_management WHERE backup_id = $1", [full.backupId])).rows;
    expect(row.backup_status).toBe("completed");
    expect(row.tool_version).toMatch(/restic 0\.14/);
    expect(row.backup_location).toBe(`s3://${w.bucket.bucket}/restic/${SERVICE}/g1/`);
    const objs = await w.bucket.client.send(new ListObjectsV2Command({ Bucket: w.bucket.bucket, Prefix: `restic/${SERVICE}/` }));
    expect((objs.Contents ?? []).some((o) => o.Key!.includes("/data/"))).toBe(true);
    // What the catalog says was stored is what the run added to the bucket: every pack, index and
    // snapshot object of the new repository (its config and key came before the run), after restic's compression.
    const added = (objs.Contents ?? []).filter((o) => /\/(data|index|snapshots)\//.test(o.Key!)).reduce((n, o) => n + (o.Size ?? 0), 0);
    expect(full.storedBytes).toBe(added);
    expect(Number(row.backup_size)).toBe(added);

    const target = path.join(w.root, "restore1");
    const res = await w.run(["restore", "--target", target], env);
    expect(res.code, res.stderr).toBe(0);
    expect(treeHashes(target)).toEqual(treeHashes(vol));
  });

  it("an incremental after a 1% change uploads under 10% of the full", async () => {
    // 2 of 201 files (1%) rewritten.
    writeFileSync(path.join(vol, "dir0", "file0.bin"), randomBytes(40 * 1024));
    writeFileSync(path.join(vol, "dir1", "file1.bin"), randomBytes(40 * 1024));
    const r = await w.run(["backup", "--type", "incremental", "--json"], env);
    expect(r.code, r.stderr).toBe(0);
    const inc = JSON.parse(r.stdout);
    console.log(`volume: full uploaded ${full.storedBytes} B of ${full.rawBytes} B; incremental after 1% change uploaded ${inc.storedBytes} B = ${((100 * inc.storedBytes) / full.storedBytes).toFixed(2)}%`);
    expect(inc.storedBytes).toBeGreaterThan(80 * 1024);
    expect(inc.storedBytes).toBeLessThan(0.1 * full.storedBytes);
    const target = path.join(w.root, "restore2");
    expect((await w.run(["restore", "--target", target], env)).code).toBe(0);
    expect(treeHashes(target)).toEqual(treeHashes(vol));
  });

  it("verify runs restic check --read-data and records it; a flipped byte in a pack fails it", async () => {
    const ok = await w.run(["verify", "--json"], env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).checks.join("\n")).toMatch(/restic check --read-data/);
    const objs = await w.bucket.client.send(new ListObjectsV2Command({ Bucket: w.bucket.bucket, Prefix: `restic/${SERVICE}/g1/data/` }));
    const pack = (objs.Contents ?? []).sort((a, b) => (b.Size ?? 0) - (a.Size ?? 0))[0]!;
    // restic reads the newest version of a key: a new version is exactly what bit rot looks like to it.
    await flipByte(w.bucket, pack.Key!);
    const bad = await w.run(["verify", "--json"], env);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout).error).toMatch(/restic/);
    const rows = (await w.db.query("SELECT verify_status FROM backup_management WHERE service_name = $1 AND verify_status IS NOT NULL ORDER BY verified_at", [SERVICE])).rows;
    expect(rows.map((r) => r.verify_status)).toContain("failed");
    expect(existsSync(vol)).toBe(true);
  });

  it("an empty volume after a backup that held data is a failed run that says why, never a skip", async () => {
    const gone = path.join(w.root, "unmounted-volume");
    mkdirSync(gone, { recursive: true });
    const r = await w.run(["backup", "--type", "incremental", "--json"], { ...env, KDR_VOLUME_PATH: gone });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unmounted-volume is empty, but the last backup of grafana-data \(\S+, \S+\) held [\d.]+ MiB: the volume is missing, not mounted, or this sidecar runs on a node without the data/);
    const [row] = (await w.db.query("SELECT backup_status, error_message FROM backup_management WHERE service_name = $1 ORDER BY created_at DESC LIMIT 1", [SERVICE])).rows;
    expect(row).toMatchObject({ backup_status: "failed", error_message: expect.stringMatching(/is empty, but the last backup/) });
  });

  it("a wrong restic password fails with a message naming the secret", async () => {
    writeFileSync(path.join(w.secretDir, "kdr-restic-password.bak"), readFileSync(path.join(w.secretDir, "kdr-restic-password")));
    writeFileSync(path.join(w.secretDir, "kdr-restic-password"), "not-the-password\n");
    try {
      const r = await w.run(["backup", "--type", "incremental"], env);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/restic cannot open the repository at restic\/grafana-data\/g1\/ with the password in .*kdr-restic-password \(no key there fits it\): put the repository's password into the kdr-restic-password secret/);
    } finally {
      writeFileSync(path.join(w.secretDir, "kdr-restic-password"), readFileSync(path.join(w.secretDir, "kdr-restic-password.bak")));
    }
  });

  it("HTTP hooks: the agent makes the call itself; a non-2xx answer fails the run, and the post hook still runs", async () => {
    const calls: string[] = [];
    let answer = 200;
    const srv = createServer((req, res) => {
      calls.push(`${req.method} ${req.url}`);
      res.writeHead(req.url === "/api/v1/admin/tsdb/snapshot" ? answer : 200, { "content-type": "application/json" });
      res.end(req.url === "/api/v1/admin/tsdb/snapshot" && answer === 200 ? '{"status":"success","data":{"name":"20261201T000000Z-1"}}' : '{"status":"error"}');
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as { port: number }).port;
    const hooked = { ...env, KDR_HOOK_PRE: `POST http://127.0.0.1:${port}/api/v1/admin/tsdb/snapshot`, KDR_HOOK_POST: `GET http://127.0.0.1:${port}/done` };
    try {
      const ok = await w.run(["backup", "--type", "full", "--json"], hooked);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stderr).toMatch(/hook pre: HTTP 200 \{"status":"success"/);
      expect(calls).toEqual(["POST /api/v1/admin/tsdb/snapshot", "GET /done"]);
      answer = 503;
      const bad = await w.run(["backup", "--type", "full"], hooked);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain(`KDR_HOOK_PRE call failed: POST http://127.0.0.1:${port}/api/v1/admin/tsdb/snapshot answered HTTP 503: {"status":"error"}`);
      expect(calls.slice(2)).toEqual(["POST /api/v1/admin/tsdb/snapshot", "GET /done"]);
    } finally {
      srv.close();
    }
  });
});
