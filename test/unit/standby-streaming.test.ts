/**
 * A warm standby's streaming settings (agent/engines/postgres.ts writeStreamingConfig): the
 * primary's password only in a passfile inside the data directory, never in the configuration.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { STANDBY_PASSFILE, writeStreamingConfig } from "../../agent/engines/postgres.js";

let dir = "";
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "kdrtest-standby-"));
  writeFileSync(path.join(dir, "postgresql.auto.conf"), "restore_command = 'cp x %p'\n");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("writeStreamingConfig", () => {
  it("adds primary_conninfo naming a passfile, and writes the password there alone (0600, libpq's escaping)", () => {
    expect(writeStreamingConfig(dir, { host: "kdr-local-postgresql", port: 5432, user: "postgres", password: "p:w\\d'x" })).toBe(true);
    const conf = readFileSync(path.join(dir, "postgresql.auto.conf"), "utf8");
    const pass = path.join(dir, STANDBY_PASSFILE);
    expect(conf).toContain("restore_command = 'cp x %p'");
    expect(conf).toContain(`primary_conninfo = 'host=kdr-local-postgresql port=5432 user=postgres passfile=${pass} application_name=kdr_standby connect_timeout=3'`);
    expect(conf).not.toContain("p:w");
    expect(readFileSync(pass, "utf8")).toBe("kdr-local-postgresql:5432:*:postgres:p\\:w\\\\d'x\n");
    expect(statSync(pass).mode & 0o777).toBe(0o600);
  });

  it("run again (a standby seeded before streaming existed, or a seed cut short): the passfile is rewritten, primary_conninfo not repeated", () => {
    writeStreamingConfig(dir, { host: "db", port: 5432, user: "postgres", password: "old" });
    expect(writeStreamingConfig(dir, { host: "db", port: 5432, user: "postgres", password: "new" })).toBe(false);
    expect(readFileSync(path.join(dir, "postgresql.auto.conf"), "utf8").match(/primary_conninfo/g)).toHaveLength(1);
    expect(readFileSync(path.join(dir, STANDBY_PASSFILE), "utf8")).toBe("db:5432:*:postgres:new\n");
  });

  it("a fresh seed from the base of a server that was a standby itself (failing back from a promoted one): its old primary_conninfo is replaced, not kept", () => {
    // What the promoted server's data directory carried into its base: the conninfo of its own old primary.
    writeStreamingConfig(dir, { host: "kdr-local-postgresql", port: 5432, user: "postgres", password: "pw" });
    expect(writeStreamingConfig(dir, { host: "postgresql", port: 5432, user: "postgres", password: "pw" }, { replace: true })).toBe(true);
    const conf = readFileSync(path.join(dir, "postgresql.auto.conf"), "utf8");
    expect(conf.match(/primary_conninfo/g)).toHaveLength(1);
    expect(conf).toContain("primary_conninfo = 'host=postgresql port=5432");
    expect(conf).not.toContain("kdr-local-postgresql");
    expect(conf.match(/# written by kdr-agent standby seed/g)).toHaveLength(1);
    expect(conf).toContain("restore_command = 'cp x %p'");
  });

  it("refuses a host or user that primary_conninfo cannot take as it is, and writes nothing", () => {
    expect(() => writeStreamingConfig(dir, { host: "db host", port: 5432, user: "postgres", password: "x" })).toThrow(/primary host 'db host' is not a plain host or role name/);
    expect(() => writeStreamingConfig(dir, { host: "db", port: 5432, user: "o'neil", password: "x" })).toThrow(/user 'o'neil' is not a plain host or role name/);
    expect(readFileSync(path.join(dir, "postgresql.auto.conf"), "utf8")).toBe("restore_command = 'cp x %p'\n");
  });
});
