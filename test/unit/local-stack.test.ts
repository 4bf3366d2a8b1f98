import { mkdtempSync, rmSync, statSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DATA_KEYS, forgetGeneratedSecrets, generatedSecrets, secretsPath } from "../../local/local-stack.js";

const dir = mkdtempSync(join(tmpdir(), "kdrtest-local-stack-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("generated secrets of a local deployment", () => {
  it("are created once, kept 0600, and read back unchanged", () => {
    const first = generatedSecrets("s1", dir);
    expect(first.ageIdentity).toMatch(/^AGE-SECRET-KEY-1/);
    expect(first.ageRecipient).toMatch(/^age1/);
    expect(first.resticPassword.length).toBeGreaterThanOrEqual(32);
    expect(statSync(secretsPath("s1", dir)).mode & 0o777).toBe(0o600);
    expect(generatedSecrets("s1", dir)).toEqual(first);
  });

  it("keep the data keys across a destroy, so later deployments still read the locked backups", () => {
    const before = generatedSecrets("s2", dir);
    forgetGeneratedSecrets("s2", dir);
    const after = generatedSecrets("s2", dir);
    for (const k of DATA_KEYS) expect(after[k]).toBe(before[k]);
    // The deployment's own passwords are new: nothing of the destroyed deployment is reused.
    expect(after.catalogWriterPassword).not.toBe(before.catalogWriterPassword);
    expect(after["targetPassword-postgresql"]).not.toBe(before["targetPassword-postgresql"]);
  });

  it("forgetting a stack that never deployed is a no-op", () => {
    forgetGeneratedSecrets("never", dir);
    expect(existsSync(secretsPath("never", dir))).toBe(false);
  });
});
