/**
 * The agent commands the runbooks name, run inside the agent image (not on the host, whose
 * PostgreSQL server binaries once hid that the image had no pg_waldump, so every verify of a
 * PostgreSQL backup in a cron container failed and recovery then refused good backups).
 * The backup itself is taken by the agent on the host; everything else runs in a container of
 * kryonix-dr/agent:local with its secrets at /run/secrets, as in the drill cron container.
 */
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPlatform } from "../../local/platform.js";
import { dockerTry } from "../support/docker.js";
import { agentWorld, type AgentWorld } from "../support/s3.js";
import { freePort, startTmpPostgres, type TmpPostgres } from "../support/tmp-postgres.js";
import { tarArchive, type TarMember } from "../support/tar.js";
import { UNTAR_ARGS } from "../../agent/storage/pipeline.js";
import { AGENT_BIN, HEALTHCHECK, STATE_DIR } from "../../components/backup-sidecar.js";
import { SETTINGS } from "../../contract/settings.js";

let w: AgentWorld;
let primary: TmpPostgres;
let env: Record<string, string>;
let backupId: string;
const SERVICE = "pg-image";

beforeAll(async () => {
  w = await agentWorld("kdrtest-agent-image");
  primary = await startTmpPostgres();
  writeFileSync(path.join(w.secretDir, "kdr-target-password"), primary.password + "\n", { mode: 0o600 });
  const c = new pg.Client({ connectionString: primary.url });
  await c.connect();
  await c.query("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g");
  await c.end();
  env = w.env(SERVICE, { KDR_ENGINE: "postgres", KDR_TARGET_HOST: primary.host, KDR_TARGET_PORT: String(primary.port), KDR_TARGET_USER: "postgres" });
  const b = await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 });
  if (b.code !== 0) throw new Error(b.stderr);
  backupId = JSON.parse(b.stdout).backupId;
});

afterAll(async () => {
  await primary?.stop().catch(() => undefined);
  await w?.close();
});

/** `kdr-agent <args>` in a fresh container of the agent image (host network: the catalog and RGW listen on loopback). */
function inImage(args: string[], secretDir = w.secretDir, dockerArgs: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const image = readPlatform().images.agent;
  const e = Object.entries(env).filter(([k]) => k.startsWith("KDR_") && k !== "KDR_SECRET_DIR" && k !== "KDR_STATE_DIR");
  return dockerTry([
    "run", "--rm", "--network", "host", ...dockerArgs,
    "-v", `${secretDir}:/run/secrets:ro`,
    ...e.flatMap(([k, v]) => ["-e", `${k}=${v}`]),
    "--entrypoint", "kdr-agent", image, ...args,
  ]);
}

describe("agent commands inside the agent image", () => {
  it("verify of a PostgreSQL base backup passes, pg_verifybackup parsing its WAL with pg_waldump", () => {
    const r = inImage(["verify", "--backup-id", backupId, "--json"]);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    const v = JSON.parse(r.stdout) as { passed: boolean; checks: string[] };
    expect(v.passed, r.stdout).toBe(true);
    expect(v.checks.join("\n")).toMatch(/base\.tar: pg_verifybackup \(checksums against backup_manifest, WAL parsed with pg_waldump\): backup successfully verified/);
  }, 120_000);

  it("the verify is recorded as passed in the catalog", async () => {
    const { rows } = await w.db.query("SELECT verify_status FROM backup_management WHERE backup_id = $1", [backupId]);
    expect(rows[0].verify_status).toBe("passed");
  });

  it("a verify that cannot reach the object store judges nothing: exit 1, the reason, and the recorded status stays passed", async () => {
    const r = inImage(["verify", "--backup-id", backupId, "--s3-endpoint", "http://127.0.0.1:1", "--s3-retry-seconds", "1"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`verify of ${backupId} could not run, so the backup was not judged \\(its verify status is unchanged\\): the object store could not be reached`));
    const { rows } = await w.db.query("SELECT verify_status FROM backup_management WHERE backup_id = $1", [backupId]);
    expect(rows[0].verify_status).toBe("passed");
  }, 180_000);

  it("a verify whose scratch space runs out judges nothing: exit 1, the disk named as the reason with the fix, and the recorded status stays as it was", async () => {
    // The state directory (where a verify unpacks the base to check it) on a 1 MiB tmpfs.
    const status = async () => (await w.db.query("SELECT verify_status FROM backup_management WHERE backup_id = $1", [backupId])).rows[0].verify_status as string | null;
    const before = await status();
    const r = inImage(["verify", "--backup-id", backupId], w.secretDir, ["--tmpfs", `${SETTINGS.stateDir.default}:size=1m`]);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`verify of ${backupId} could not run, so the backup was not judged \\(its verify status is unchanged\\): the local disk is full: free space in the agent's state directory \\(${SETTINGS.stateDir.default}\\), or give its volume more room: [\\s\\S]*No space left on device`));
    expect(await status()).toBe(before);
  }, 180_000);

  it("a restore into a full disk fails naming the disk, removes what it had written, and judges nothing", async () => {
    // The target on a 1 MiB tmpfs: the base does not fit. A shell in the same container lists
    // what the failed restore left there.
    const status = async () => (await w.db.query("SELECT verify_status FROM backup_management WHERE backup_id = $1", [backupId])).rows[0].verify_status as string | null;
    const before = await status();
    const e = Object.entries(env).filter(([k]) => k.startsWith("KDR_") && k !== "KDR_SECRET_DIR" && k !== "KDR_STATE_DIR");
    const r = dockerTry([
      "run", "--rm", "--network", "host", "--tmpfs", "/restore:size=1m",
      "-v", `${w.secretDir}:/run/secrets:ro`,
      ...e.flatMap(([k, v]) => ["-e", `${k}=${v}`]),
      "--entrypoint", "sh", readPlatform().images.agent, "-c", `kdr-agent restore --target /restore/pg --backup-id ${backupId}; echo "exit $?"; echo "left: $(ls -A /restore/pg | wc -l)"`,
    ]);
    expect(r.stdout, r.stderr).toMatch(/^exit 1$/m);
    expect(r.stderr).toMatch(/the disk holding \/restore\/pg is full: free space there, or restore to a larger volume \(this backup is [\d.]+ MiB unpacked, plus its WAL\): [\s\S]*No space left on device/);
    expect(r.stderr).toContain("restore pg-image: removed what this restore had written to /restore/pg");
    expect(r.stdout).toMatch(/^left: 0$/m);
    // A full disk says nothing of the backup: not recorded as failed.
    expect(await status()).toBe(before);
  }, 180_000);

  it("restore refuses what it cannot honour before writing anything: a time without its zone, an id no backup has, --clean-target of the root", () => {
    const noZone = inImage(["restore", "--target", "/tmp/r", "--time", "2026-11-28T21:04:05"]);
    expect(noZone.status, noZone.stderr).toBe(2);
    expect(noZone.stderr).toContain("--time '2026-11-28T21:04:05' is not an ISO 8601 time with a zone");
    const unknown = "00000000-0000-4000-8000-000000000000";
    const none = inImage(["restore", "--target", "/tmp/r", "--backup-id", unknown]);
    expect(none.status, none.stderr).toBe(2);
    expect(none.stderr).toContain(`backup ${unknown} of '${SERVICE}' is not in the catalog: run 'kdr-agent list' to see ids.`);
    const root = inImage(["restore", "--target", "/", "--clean-target"]);
    expect(root.status, root.stderr).toBe(2);
    expect(root.stderr).toContain("--clean-target refuses --target /: it would empty the whole filesystem");
  }, 120_000);

  it("list and health answer from the catalog", () => {
    const l = inImage(["list", "--limit", "5"]);
    expect(l.status, l.stderr).toBe(0);
    expect(l.stdout).toContain(backupId.slice(0, 8));
    const h = inImage(["health", "--json"]);
    expect(h.status === 0 || h.status === 1, h.stderr).toBe(true);
    expect(JSON.parse(h.stdout)).toMatchObject({ service: SERVICE });
  }, 60_000);
});

/**
 * Rotating the age key without losing the old backups (docs/ci.md's rotation procedure): the new
 * public key becomes kdr-age-recipient, and kdr-age-identity holds the new private key and the old
 * one, one per line; age tries each. Run where the runbook runs verify: in the image.
 */
describe("age key rotation, inside the agent image", () => {
  let rotated: string;
  let newOnly: string;
  let secondId: string;

  beforeAll(async () => {
    const keygen = (file: string) => {
      const r = spawnSync("age-keygen", ["-o", file], { encoding: "utf8" });
      if (r.status !== 0) throw new Error(r.stderr);
    };
    rotated = mkdtempSync(path.join(tmpdir(), "kdrtest-rotated-"));
    newOnly = mkdtempSync(path.join(tmpdir(), "kdrtest-newkey-"));
    for (const dir of [rotated, newOnly]) cpSync(w.secretDir, dir, { recursive: true });
    const fresh = path.join(newOnly, "kdr-age-identity");
    rmSync(fresh);
    keygen(fresh);
    const recipient = spawnSync("age-keygen", ["-y", fresh], { encoding: "utf8" }).stdout;
    for (const dir of [rotated, newOnly]) writeFileSync(path.join(dir, "kdr-age-recipient"), recipient, { mode: 0o600 });
    writeFileSync(path.join(rotated, "kdr-age-identity"), readFileSync(fresh, "utf8") + readFileSync(path.join(w.secretDir, "kdr-age-identity"), "utf8"), { mode: 0o600 });
    // The next backup, by a sidecar given the new public key.
    const b = await w.run(["backup", "--type", "full", "--no-logical", "--json"], { ...env, KDR_SECRET_DIR: rotated }, { timeoutMs: 180_000 });
    if (b.code !== 0) throw new Error(b.stderr);
    secondId = JSON.parse(b.stdout).backupId;
  }, 240_000);

  afterAll(() => {
    for (const dir of [rotated, newOnly]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("with the new and the old key in kdr-age-identity, both the backup before the rotation and the one after verify", () => {
    for (const id of [backupId, secondId]) {
      const r = inImage(["verify", "--backup-id", id, "--json"], rotated);
      expect(r.status, r.stderr + r.stdout).toBe(0);
      expect((JSON.parse(r.stdout) as { passed: boolean }).passed).toBe(true);
    }
  }, 240_000);

  it("with the new key alone, the old backup is refused naming both key ids, and its verify status is left alone", async () => {
    const r = inImage(["verify", "--backup-id", backupId], newOnly);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/wrong decryption key: the backup was encrypted for key id age-[0-9a-f]{16}, but the age identity in \S+ has key id age-[0-9a-f]{16}\. .*after a key rotation: the new key and the old one, one per line/);
    const { rows } = await w.db.query("SELECT verify_status FROM backup_management WHERE backup_id = $1", [backupId]);
    expect(rows[0].verify_status).toBe("passed");
    const ok = inImage(["verify", "--backup-id", secondId], newOnly);
    expect(ok.status, ok.stderr).toBe(0);
  }, 240_000);
});

/** The drill cron's verify-new job (`kdr-agent verify --pending`), in the image, as the cron runs it. */
describe("verify --pending, inside the agent image", () => {
  const fresh: string[] = [];

  beforeAll(async () => {
    for (let i = 0; i < 2; i++) {
      const b = await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 });
      if (b.code !== 0) throw new Error(b.stderr);
      fresh.push(JSON.parse(b.stdout).backupId);
    }
  }, 400_000);

  it("verifies each backup no verify has judged yet, newest first, and leaves the judged ones alone", async () => {
    const before = await w.db.query("SELECT backup_id, verified_at FROM backup_management WHERE verify_status IS NOT NULL");
    const r = inImage(["verify", "--pending", "--json"]);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    const p = JSON.parse(r.stdout) as { service: string; verified: Array<{ backupId: string; passed: boolean }>; stoppedBy?: string };
    expect(p.stoppedBy).toBeUndefined();
    expect(p.verified.map((v) => v.backupId)).toEqual([...fresh].reverse());
    expect(p.verified.every((v) => v.passed)).toBe(true);
    const { rows } = await w.db.query("SELECT count(*)::int AS n FROM backup_management WHERE backup_id = ANY($1) AND verify_status = 'passed'", [fresh]);
    expect(rows[0].n).toBe(2);
    for (const b of before.rows) {
      const { rows: now } = await w.db.query("SELECT verified_at FROM backup_management WHERE backup_id = $1", [b.backup_id]);
      expect(now[0].verified_at).toEqual(b.verified_at);
    }
  }, 300_000);

  it("two verifies at the same moment with one state directory both pass (a cron container verifies several PostgreSQL services at the same minute)", async () => {
    // With one shared unpack directory, one verify read the other's half-unpacked base and failed
    // a good backup ("present in the manifest but not on disk"); the region drill found it.
    const runs = await Promise.all([fresh[0]!, fresh[1]!, fresh[0]!].map((id) => w.run(["verify", "--backup-id", id, "--json"], env, { timeoutMs: 180_000 })));
    for (const r of runs) {
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect((JSON.parse(r.stdout) as { passed: boolean }).passed).toBe(true);
    }
  }, 300_000);

  it("says so when nothing waits, and exits 0", () => {
    const r = inImage(["verify", "--pending"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(`verify ${SERVICE}: no backup waiting for verification`);
  }, 120_000);

  it("stops at the first verify that cannot run, judging nothing, and exits 1", async () => {
    const b = await w.run(["backup", "--type", "full", "--no-logical", "--json"], env, { timeoutMs: 180_000 });
    expect(b.code, b.stderr).toBe(0);
    const id = JSON.parse(b.stdout).backupId as string;
    const r = inImage(["verify", "--pending", "--s3-endpoint", "http://127.0.0.1:1", "--s3-retry-seconds", "1"]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`^verify ${SERVICE}: stopped, nothing more judged: verify of ${id} could not run`, "m"));
    const { rows } = await w.db.query("SELECT verify_status FROM backup_management WHERE backup_id = $1", [id]);
    expect(rows[0].verify_status).toBeNull();
  }, 300_000);
});

/**
 * A volume's SQLite database (prod's Grafana: `sqlite: [grafana.db]`) backed up inside the agent
 * image while a writer commits to it every few milliseconds, the volume mounted read-only as in a
 * sidecar; restored in the image: the database passes PRAGMA integrity_check. (A writer that
 * commits back to back with no pause at all can starve the backup's shared lock in rollback-journal
 * mode: measured here, one attempt of 30 s failed with "database is locked"; the agent tries four
 * times and then fails the run saying so.)
 */
describe("SQLite online copies of a volume, inside the agent image", () => {
  const VOL_SERVICE = "grafana-sqlite";
  let vol: string;
  let out: string;
  let writer: string;
  let volEnv: Record<string, string>;
  let sqliteBackup: string;

  /** kdr-agent in the image with the volume at /data (read-only, as a sidecar mounts it) and `out` at /out. */
  function agentWithVolume(args: string[], dockerArgs: string[] = []) {
    const image = readPlatform().images.agent;
    const e = Object.entries(volEnv).filter(([k]) => k.startsWith("KDR_") && k !== "KDR_SECRET_DIR" && k !== "KDR_STATE_DIR" && k !== "KDR_VOLUME_PATH");
    return dockerTry([
      "run", "--rm", "--network", "host", ...dockerArgs,
      "-v", `${w.secretDir}:/run/secrets:ro`, "-v", `${vol}:/data:ro`, "-v", `${out}:/out`,
      "-e", "KDR_VOLUME_PATH=/data", ...e.flatMap(([k, v]) => ["-e", `${k}=${v}`]),
      "--entrypoint", "kdr-agent", image, ...args,
    ]);
  }

  beforeAll(() => {
    vol = mkdtempSync(path.join(tmpdir(), "kdrtest-sqlite-vol-"));
    out = mkdtempSync(path.join(tmpdir(), "kdrtest-sqlite-out-"));
    writeFileSync(path.join(vol, "grafana.ini"), "[server]\nhttp_port = 3000\n");
    volEnv = w.env(VOL_SERVICE, { KDR_ENGINE: "volume", KDR_VOLUME_PATH: vol, KDR_SQLITE_FILES: JSON.stringify(["grafana.db"]) });
    // The writer: one transaction after another into grafana.db (rollback journal, Grafana's default), in the agent image's sqlite3.
    // Owned by Grafana's uid (472), as in its image: the restored copy must be too.
    const script = "sqlite3 /data/grafana.db 'CREATE TABLE IF NOT EXISTS v (id INTEGER PRIMARY KEY, data TEXT NOT NULL)'; chown 472:472 /data/grafana.db; " +
      "while :; do sqlite3 /data/grafana.db \"PRAGMA busy_timeout=5000; BEGIN; INSERT INTO v (data) SELECT hex(randomblob(2048)) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3); UPDATE v SET data = hex(randomblob(2048)) WHERE id % 5 = abs(random()) % 5; COMMIT;\"; sleep 0.05; done";
    const r = dockerTry(["run", "-d", "--rm", "-v", `${vol}:/data`, "--entrypoint", "sh", readPlatform().images.agent, "-c", script]);
    if (r.status !== 0) throw new Error(r.stderr);
    writer = r.stdout.trim();
  });

  afterAll(() => {
    if (writer) dockerTry(["rm", "-f", writer]);
    // The containers wrote as root.
    dockerTry(["run", "--rm", "-v", `${vol}:/v`, "-v", `${out}:/o`, "--entrypoint", "sh", readPlatform().images.agent, "-c", "rm -rf /v/* /o/*"]);
    rmSync(vol, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  });

  it("backs up the database with SQLite's online backup while it is written, and says so", async () => {
    await new Promise((r) => setTimeout(r, 3000));
    const b = agentWithVolume(["backup", "--type", "full", "--json"]);
    expect(b.status, b.stderr).toBe(0);
    sqliteBackup = (JSON.parse(b.stdout) as { backupId: string }).backupId;
    expect(b.stderr).toMatch(/sqlite grafana\.db: online copy taken and checked in [\d.]+ s/);
    expect(b.stderr).toMatch(/sqlite: grafana\.db stored as snapshot [0-9a-f]{8} beside the volume's/);
    const { rows } = await w.db.query("SELECT backup_status FROM backup_management WHERE backup_id = $1", [sqliteBackup]);
    expect(rows[0].backup_status).toBe("completed");
  }, 180_000);

  it("restores the database whole: it passes PRAGMA integrity_check, with the rows of the moment of the copy", () => {
    const r = agentWithVolume(["restore", "--backup-id", sqliteBackup, "--target", "/out/restored"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/SQLite online copies of snapshot [0-9a-f]{8} restored over it/);
    const check = dockerTry(["run", "--rm", "-v", `${out}:/out`, "--entrypoint", "sqlite3", readPlatform().images.agent, "/out/restored/grafana.db", "PRAGMA integrity_check; SELECT count(*) > 0 FROM v;"]);
    expect(check.stdout.trim().split("\n")).toEqual(["ok", "1"]);
    expect(statSync(path.join(out, "restored", "grafana.db")).uid, "the copy keeps the database's owner").toBe(472);
    expect(readFileSync(path.join(out, "restored", "grafana.ini"), "utf8")).toContain("http_port = 3000");
  }, 180_000);

  it("a restore over a target that holds a stale journal removes it before laying the copy (else SQLite would apply it to the copy)", () => {
    writeFileSync(path.join(out, "restored", "grafana.db-journal"), "stale journal of an older database");
    const r = agentWithVolume(["restore", "--backup-id", sqliteBackup, "--target", "/out/restored", "--force-overwrite-source", "--yes"]);
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(path.join(out, "restored", "grafana.db-journal"))).toBe(false);
    const check = dockerTry(["run", "--rm", "-v", `${out}:/out`, "--entrypoint", "sqlite3", readPlatform().images.agent, "/out/restored/grafana.db", "PRAGMA integrity_check;"]);
    expect(check.stdout.trim()).toBe("ok");
  }, 180_000);

  it("a volume that holds only the database (restic refuses an empty snapshot): the online copy is the run's snapshot, and it restores", () => {
    rmSync(path.join(vol, "grafana.ini"));
    const b = agentWithVolume(["backup", "--type", "full", "--json"]);
    expect(b.status, b.stderr).toBe(0);
    expect(b.stderr).toMatch(/sqlite: grafana\.db stored as snapshot [0-9a-f]{8} \(the volume holds nothing else\)/);
    const id = (JSON.parse(b.stdout) as { backupId: string }).backupId;
    const r = agentWithVolume(["restore", "--backup-id", id, "--target", "/out/only-db"]);
    expect(r.status, r.stderr).toBe(0);
    const check = dockerTry(["run", "--rm", "-v", `${out}:/out`, "--entrypoint", "sqlite3", readPlatform().images.agent, "/out/only-db/grafana.db", "PRAGMA integrity_check;"]);
    expect(check.stdout.trim()).toBe("ok");
  }, 180_000);

  it("a backup whose staging space runs out fails, naming the full disk and the fix; nothing of it is completed", async () => {
    // The state directory (the online copy's staging, restic's cache) on a 256 KiB tmpfs; the database is larger by now.
    const b = agentWithVolume(["backup", "--type", "full"], ["--tmpfs", `${SETTINGS.stateDir.default}:size=256k`]);
    expect(b.status, b.stderr).toBe(1);
    const said = new RegExp(`the local disk is full: free space in the agent's state directory \\(${SETTINGS.stateDir.default}\\), or give its volume more room: `);
    expect(b.stderr).toMatch(said);
    const { rows } = await w.db.query("SELECT backup_status, error_message FROM backup_management WHERE service_name = $1 ORDER BY created_at DESC LIMIT 1", [VOL_SERVICE]);
    expect(rows[0].backup_status).toBe("failed");
    expect(rows[0].error_message).toMatch(said);
  }, 300_000);
});

/**
 * A base backup is unpacked with GNU tar as the image ships it (agent/storage/pipeline.ts untar).
 * An archive that tries to write outside the restore target (a forged object, a damaged catalog)
 * writes nothing there: fed to the same command in the image, each escape is refused or kept inside.
 */
describe("unpacking a hostile archive, inside the agent image", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "kdrtest-untar-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function unpack(name: string, members: TarMember[]): { rc: number; found: string[]; out: string } {
    writeFileSync(path.join(dir, `${name}.tar`), tarArchive(members));
    const script = [
      "mkdir -p /restore /outside",
      `tar ${UNTAR_ARGS.join(" ")} -C /restore < /in/${name}.tar; echo "rc=$?"`,
      "find /restore /outside /escape /abs-escape -mindepth 0 2>/dev/null | sort",
    ].join("; ");
    const r = dockerTry(["run", "--rm", "-v", `${dir}:/in:ro`, "--entrypoint", "sh", readPlatform().images.agent, "-c", script]);
    expect(r.status, r.stderr).toBe(0);
    const rc = Number(/rc=(\d+)/.exec(r.stdout)?.[1]);
    return { rc, found: r.stdout.split("\n").filter((l) => l.startsWith("/")), out: `${r.stdout}\n${r.stderr}` };
  }

  it("a member named ../escape is refused (tar exits non-zero, so the restore fails) and nothing lands beside the target", () => {
    const u = unpack("dotdot", [{ name: "PG_VERSION", content: "15\n" }, { name: "../escape", content: "x" }]);
    expect(u.rc, u.out).not.toBe(0);
    expect(u.found).toContain("/restore/PG_VERSION");
    expect(u.found).not.toContain("/escape");
  });

  it("an absolute member name lands inside the target", () => {
    const u = unpack("absolute", [{ name: "/abs-escape", content: "x" }]);
    expect(u.found, u.out).toContain("/restore/abs-escape");
    expect(u.found).not.toContain("/abs-escape");
  });

  it("a file under a symlink that points away (absolute or by '..') is not written through it", () => {
    const u = unpack("symlink", [
      { name: "link", type: "symlink", linkname: "/outside" },
      { name: "link/evil", content: "x" },
      { name: "up", type: "symlink", linkname: "../outside" },
      { name: "up/evil2", content: "x" },
    ]);
    expect(u.rc, u.out).not.toBe(0);
    expect(u.found.filter((f) => f.startsWith("/outside/")), u.out).toEqual([]);
  });
});

describe("the HEALTHCHECK every agent container declares, in the agent image", () => {
  it("reports a running cron process healthy without loading the agent bundle; fails, saying why, when nothing answers or the port is no port", async () => {
    const image = readPlatform().images.agent;
    // The container shares the host network: a port nothing on the host holds.
    const port = await freePort();
    const e = Object.entries(env).filter(([k]) => k.startsWith("KDR_") && k !== "KDR_SECRET_DIR" && k !== "KDR_STATE_DIR");
    const jobs = JSON.stringify([{ name: "health", schedule: "0 0 1 1 *", command: ["health", "--service", SERVICE] }]);
    const name = `kdrtest-healthz-${process.pid}`;
    const run = dockerTry([
      "run", "-d", "--name", name, "--network", "host", "-v", `${w.secretDir}:/run/secrets:ro`,
      ...e.flatMap(([k, v]) => ["-e", `${k}=${v}`]), "-e", `KDR_METRICS_PORT=${port}`, "-e", `KDR_CRON_JOBS=${jobs}`,
      "--health-cmd", HEALTHCHECK.slice(1).join(" "), "--health-interval", "1s", "--health-timeout", "15s", "--health-retries", "3",
      image, "cron",
    ]);
    expect(run.status, run.stderr).toBe(0);
    try {
      const health = () => JSON.parse(dockerTry(["inspect", name, "--format", "{{json .State.Health}}"]).stdout) as { Status: string; Log: { ExitCode: number; Output: string }[] };
      let h = health();
      for (let i = 0; i < 60 && h.Status !== "healthy"; i++) {
        await new Promise((r) => setTimeout(r, 500));
        h = health();
      }
      expect(h.Status, `${JSON.stringify(h.Log)}\n${dockerTry(["logs", name]).stderr}`).toBe("healthy");
      expect(h.Log.at(-1)!.Output).toMatch(/"ok":true/);
      // The probe is the small bundle: it neither is nor loads agent.cjs.
      const size = dockerTry(["exec", name, "stat", "-c", "%s", HEALTHCHECK[2]!]);
      expect(Number(size.stdout.trim())).toBeLessThan(64 * 1024);
    } finally {
      dockerTry(["rm", "-f", name]);
    }
    // Nothing listening: the probe fails with a line that says so (no port means no process).
    const none = dockerTry(["run", "--rm", "--network", "host", "-e", `KDR_METRICS_PORT=${port}`, "--entrypoint", "node", image, HEALTHCHECK[2]!]);
    expect(none.status).toBe(1);
    expect(none.stdout).toContain(`no kdr-agent serve/cron/replicate process answers on :${port}`);
    const bad = dockerTry(["run", "--rm", "-e", "KDR_METRICS_PORT=http", "--entrypoint", "node", image, HEALTHCHECK[2]!]);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(/KDR_METRICS_PORT='http' is not a port/);
  });
});

/**
 * Swarm replaces a sidecar's task (a `pulumi up` that changes a secret, a node drained) while
 * its serve runs a scheduled backup. The state directory is a volume that outlives the task, and
 * the new task's serve is pid 1 as the old one's was.
 */
describe("a sidecar task replaced during a scheduled run, inside the agent image", () => {
  const SVC = "vol-replaced";
  const state = `kdrtest-replaced-state-${process.pid}`;
  const names = [`kdrtest-replaced-a-${process.pid}`, `kdrtest-replaced-b-${process.pid}`, `kdrtest-replaced-c-${process.pid}`];
  let vol: string;
  const lockFile = `${STATE_DIR}/locks/backup_${SVC}.lock`;

  /** A sidecar as the stack declares it (node agent.cjs serve as pid 1, the state volume mounted), started detached. */
  async function sidecar(name: string, extra: Record<string, string>): Promise<void> {
    const e = Object.entries(w.env(SVC, { KDR_ENGINE: "volume", ...extra })).filter(([k]) => k.startsWith("KDR_") && !["KDR_SECRET_DIR", "KDR_STATE_DIR", "KDR_VOLUME_PATH"].includes(k));
    const r = dockerTry([
      "run", "-d", "--name", name, "--network", "host", "-v", `${w.secretDir}:/run/secrets:ro`, "-v", `${state}:${STATE_DIR}`, "-v", `${vol}:/data:ro`,
      "-e", "KDR_VOLUME_PATH=/data", "-e", `KDR_STATE_DIR=${STATE_DIR}`, "-e", `KDR_METRICS_PORT=${await freePort()}`, ...e.flatMap(([k, v]) => ["-e", `${k}=${v}`]),
      "--entrypoint", "node", readPlatform().images.agent, AGENT_BIN, "serve",
    ]);
    if (r.status !== 0) throw new Error(r.stderr);
  }

  async function logged(name: string, pattern: RegExp): Promise<string> {
    let out = "";
    for (let i = 0; i < 120; i++) {
      const l = dockerTry(["logs", name]);
      out = l.stdout + l.stderr;
      if (pattern.test(out)) return out;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`${name} did not log ${pattern} within 60 s:\n${out.slice(-3000)}`);
  }

  beforeAll(() => {
    vol = mkdtempSync(path.join(w.root, "replaced-data-"));
    writeFileSync(path.join(vol, "index.md"), "first page\n");
  });

  afterAll(() => {
    dockerTry(["rm", "-f", ...names]);
    dockerTry(["volume", "rm", "-f", state]);
  });

  it("a scheduled run's hook does not stall the serve: /healthz answers, and SIGTERM stops it at once, the run recorded as failed", async () => {
    await sidecar(names[0]!, { KDR_SCHEDULE_FULL: "* * * * * *", KDR_HOOK_PRE: "sleep 300" });
    await logged(names[0]!, /hook pre: sleep 300/);
    const probe = dockerTry(["exec", names[0]!, "node", HEALTHCHECK[2]!]);
    expect(probe.status, probe.stdout + probe.stderr).toBe(0);
    const t0 = Date.now();
    const stop = dockerTry(["stop", "-t", "30", names[0]!]);
    expect(stop.status, stop.stderr).toBe(0);
    expect(Date.now() - t0).toBeLessThan(15_000);
    const out = dockerTry(["logs", names[0]!]);
    expect(out.stdout + out.stderr).toMatch(/serve vol-replaced: recorded 1 unfinished run\(s\) as failed/);
  }, 180_000);

  it("killed in a run, its lock file left behind: the next task's backups are not refused as 'in progress' (its serve is pid 1 too)", async () => {
    await sidecar(names[1]!, { KDR_SCHEDULE_FULL: "* * * * * *", KDR_HOOK_PRE: "sleep 300" });
    await logged(names[1]!, /hook pre: sleep 300/);
    const held = dockerTry(["exec", names[1]!, "cat", lockFile]);
    // "<pid> <hostname> <start ticks>". On the host network both tasks have the host's name, as
    // two tasks of a service with a hostname template do: the start time tells them apart.
    expect(held.stdout, held.stderr).toMatch(/^1 \S+ \d+$/);
    // SIGKILL, as after the stop grace period or on a node that lost power: nothing is released.
    expect(dockerTry(["kill", names[1]!]).status).toBe(0);
    await sidecar(names[2]!, { KDR_SCHEDULE_FULL: "" });
    await logged(names[2]!, /serve vol-replaced: \/healthz and \/metrics/);
    expect(dockerTry(["exec", names[2]!, "cat", lockFile]).stdout).toMatch(/^1 /);
    const b = dockerTry(["exec", names[2]!, "kdr-agent", "backup", "--type", "full"]);
    expect(b.status, b.stderr).toBe(0);
    // A run in progress in this task is still refused (its lock file names a live process here).
    const slow = spawn("docker", ["exec", "-e", "KDR_HOOK_PRE=sleep 15", names[2]!, "kdr-agent", "backup", "--type", "incremental"], { stdio: ["ignore", "ignore", "pipe"] });
    let slowErr = "";
    slow.stderr.on("data", (d: Buffer) => (slowErr += d.toString()));
    const slowDone = new Promise<number | null>((r) => slow.once("close", r));
    for (let i = 0; i < 60 && !/hook pre: sleep 15/.test(slowErr); i++) await new Promise((r) => setTimeout(r, 500));
    expect(slowErr).toMatch(/hook pre: sleep 15/);
    const second = dockerTry(["exec", names[2]!, "kdr-agent", "backup", "--type", "incremental"]);
    expect(second.status, second.stderr).toBe(2);
    expect(second.stderr).toMatch(/another backup run for 'vol-replaced' is in progress/);
    expect(await slowDone, slowErr).toBe(0);
  }, 180_000);
});
