/**
 * `kryonix-dr drill` judges its command line before it touches the platform: each bad value
 * exits 2 naming the flag and what to give instead. No platform is needed (its facts file is
 * pointed away), and the deployments directory is an empty one of the test's own.
 */
import { afterAll, describe, expect, it, vi } from "vitest";
import { isolatedCli } from "../support/spawn.js";

vi.setConfig({ testTimeout: 240_000 });
const cli = isolatedCli("drill");
afterAll(cli.remove);

const drill = cli.run;

describe("kryonix-dr drill: bad input", () => {
  it.each([
    [["--data-size", "0"], "--data-size '0' must be a whole number of MiB from 1 to 16384 (per service)."],
    [["--data-size", "1GB"], "--data-size '1GB' must be a whole number of MiB from 1 to 16384 (per service)."],
    [["--data-size", "64", "--disaster", "failover"], "--data-size applies to the recovery drills (services, region), not to --disaster failover."],
    [["--write-seconds", "5"], "--write-seconds '5' must be a whole number of seconds from 10 to 3600."],
    [["--disaster", "meteor"], "--disaster 'meteor' is not a disaster the drill knows: use services (the default), region or failover."],
  ])("drill %j exits 2 with the fix", async (args, message) => {
    const r = await drill(...args);
    expect(r.stderr).toContain(message);
    expect(r.status, r.stderr).toBe(2);
  });
});
