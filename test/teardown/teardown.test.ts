/**
 * platform-down removes everything of ours and nothing else. Runs LAST (scripts/test.sh runs it in
 * its own vitest run): it stops the shared platform. Bring it back with scripts/platform-up.sh.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { afterAll, expect, it } from "vitest";
import { PLATFORM_FILE, readPlatform } from "../../local/platform.js";
import { docker, dockerTry, engineUp, lines, processesMatching, runScript } from "../support/docker.js";

const REPO = path.resolve(__dirname, "../..");
const STATE = path.dirname(PLATFORM_FILE);
const run = randomBytes(3).toString("hex");
const unrelated = { volume: `unrelated-volume-${run}`, network: `unrelated-net-${run}` };

afterAll(() => {
  if (engineUp()) {
    dockerTry(["volume", "rm", unrelated.volume]);
    dockerTry(["network", "rm", unrelated.network]);
  }
});

/** Starts a dockerd of the test's own, to look at what platform-down left in the engine's state. */
async function withTemporaryEngine(fn: () => void): Promise<void> {
  const log = openSync(path.join(mkdtempSync(path.join(tmpdir(), "kdrtest-teardown-")), "dockerd.log"), "a");
  const d = spawn("dockerd", [], { detached: true, stdio: ["ignore", log, log] });
  try {
    const deadline = Date.now() + 60_000;
    while (!engineUp()) {
      if (Date.now() > deadline) throw new Error("the test's temporary dockerd did not start within 60 s");
      await new Promise((r) => setTimeout(r, 500));
    }
    fn();
  } finally {
    d.kill("SIGTERM");
    const deadline = Date.now() + 60_000;
    while (d.exitCode === null && d.signalCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 300));
    if (d.exitCode === null && d.signalCode === null) d.kill("SIGKILL");
  }
}

/** Nothing of ours is left in the engine; the objects that are not ours are still there. */
function checkEngine(): void {
  const swarmActive = docker(["info", "--format", "{{.Swarm.LocalNodeState}}"]) === "active";
  const ours = (kind: string) => [
    ...lines(docker([kind, "ls", "-q", "--filter", "label=kryonix.dr.managed=true"])),
    ...lines(docker([kind, "ls", "--format", "{{.Name}}"])).filter((n) => /^(kdr|kryonix-dr)/.test(n)),
  ];
  for (const kind of swarmActive ? ["service", "secret", "config", "network", "volume"] : ["network", "volume"]) {
    expect(ours(kind), kind).toEqual([]);
  }
  expect(lines(docker(["ps", "-a", "--format", "{{.Names}}"])).filter((n) => /^(kdr|kryonix-dr)/.test(n))).toEqual([]);
  expect(lines(docker(["images", "--format", "{{.Repository}}", "kryonix-dr/*"]))).toEqual([]);
  expect(lines(docker(["images", "-q", "--filter", "label=kryonix.dr.managed=true"]))).toEqual([]);
  expect(lines(docker(["volume", "ls", "--format", "{{.Name}}"]))).toContain(unrelated.volume);
  expect(lines(docker(["network", "ls", "--format", "{{.Name}}"]))).toContain(unrelated.network);
  dockerTry(["volume", "rm", unrelated.volume]);
  dockerTry(["network", "rm", unrelated.network]);
}

function listening(port: number): boolean {
  const r = spawnSync("ss", ["-Hltn", `sport = :${port}`], { encoding: "utf8" });
  return r.stdout.trim().length > 0;
}

it("platform-down removes every container, service, secret, config, network, volume, image and daemon of ours, and nothing else", async () => {
  expect(engineUp(), "the platform must be up before its teardown is tested (run scripts/platform-up.sh)").toBe(true);
  const platform = readPlatform().images.base;
  expect(platform).toMatch(/^kryonix-dr\//);
  const dockerdOurs = existsSync(path.join(STATE, "owned/dockerd"));
  const swarmOurs = existsSync(path.join(STATE, "owned/swarm"));
  const ourDockerd = dockerdOurs ? readFileSync(path.join(STATE, "owned/dockerd.pid"), "utf8").trim() : undefined;

  // One of each kind of object the tests and the deployer create, some by label, some by name.
  const p = `kdrtest-teardown-${run}`;
  docker(["service", "create", "--detach", "--name", `${p}-svc`, "--restart-condition", "none", platform, "sleep", "600"]);
  docker(["service", "create", "--detach", "--name", `labelled-svc-${run}`, "--label", "kryonix.dr.managed=true", "--restart-condition", "none", platform, "sleep", "600"]);
  docker(["secret", "create", `${p}-secret`, "-"], { input: "s3cret" });
  docker(["config", "create", `${p}-config`, "-"], { input: "cfg" });
  docker(["network", "create", "--driver", "overlay", "--attachable", "--label", "kryonix.dr.managed=true", `labelled-net-${run}`]);
  docker(["volume", "create", `${p}-vol`]);
  docker(["run", "-d", "--name", `${p}-ctr`, platform, "sleep", "600"]);
  // Not ours: must survive.
  docker(["volume", "create", unrelated.volume]);
  docker(["network", "create", unrelated.network]);

  const down = await runScript(path.join(REPO, "scripts/platform-down.sh"), 600_000);
  expect(down.status, down.stdout + down.stderr).toBe(0);

  if (dockerdOurs) {
    // platform-up started the engine, so platform-down stopped it; what it removed first is
    // checked in the engine's state with a dockerd of the test's own.
    expect(engineUp()).toBe(false);
    expect(processesMatching("dockerd").filter((x) => String(x.pid) === ourDockerd)).toEqual([]);
    await withTemporaryEngine(() => {
      if (swarmOurs) expect(docker(["info", "--format", "{{.Swarm.LocalNodeState}}"])).toBe("inactive");
      checkEngine();
    });
  } else {
    checkEngine();
  }

  // No Ceph, radosgw or PostgreSQL of ours: they all run from files under the state dir.
  expect(processesMatching(STATE)).toEqual([]);
  for (const port of [7480, 7481, 5433, 6789, 6790]) expect(listening(port), `port ${port}`).toBe(false);
  expect(existsSync(STATE)).toBe(false);

  // Idempotent: a second run on a machine with nothing of ours succeeds and finds nothing.
  const again = await runScript(path.join(REPO, "scripts/platform-down.sh"), 300_000);
  expect(again.status, again.stdout + again.stderr).toBe(0);
}, 900_000);
