/**
 * `kryonix-dr recover` judges its command line before it reads keys, the platform or a backup:
 * each bad value exits 2 naming the flag and what to give instead. No platform is needed (its
 * facts file is pointed away), and the deployments directory is an empty one of the test's own.
 */
import { afterAll, describe, expect, it, vi } from "vitest";
import { isolatedCli } from "../support/spawn.js";

vi.setConfig({ testTimeout: 240_000 });
const cli = isolatedCli("recover");
const dir = cli.dir;
afterAll(cli.remove);

const recover = cli.run;

describe("kryonix-dr recover: bad input", () => {
  it.each([
    [["--point", "2026-01-02T03:04:05"], "--point '2026-01-02T03:04:05' is not an ISO time with a zone: give e.g. 2026-01-02T03:04:05Z."],
    [["--point", "yesterday"], "--point 'yesterday' is not an ISO time with a zone"],
    [["--point", "2999-01-01T00:00:00Z"], "--point 2999-01-01T00:00:00Z is in the future: nothing has been backed up at that moment yet."],
    [["--source-region", "eu"], "--source-region 'eu' is not a region: use primary or dr."],
    [["--catalog", "guess"], "--catalog 'guess' is not a way to get the catalog: use existing, rebuild or restore."],
    [["--service", "postgresql", "--service", "mysql"], "--service mysql: not a service of the local stack (its services: postgresql, redis, files)."],
  ])("recover %j exits 2 with the fix", async (args, message) => {
    const r = await recover(...args);
    expect(r.stderr).toContain(message);
    expect(r.status, r.stderr).toBe(2);
  });

  it("a good command line without the local stack's keys says how to get them (exit 1), having touched nothing", async () => {
    const r = await recover("--service", "redis");
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain(`no keys of the local stack in ${dir}/local.secrets.json: its backups cannot be decrypted. Deploy it first`);
  });
});
