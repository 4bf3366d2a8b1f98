/**
 * What a failed verify learned about the backup: a full local disk, a missing tool or an
 * unreachable store says nothing about it (its status must stay as it was); damage does.
 */
import { describe, expect, it } from "vitest";
import { diskFull, outsideTheBackup } from "../../agent/commands/shared.js";
import { IntegrityError } from "../../agent/storage/pipeline.js";

const errno = (code: string, message: string) => Object.assign(new Error(message), { code });

describe("outsideTheBackup", () => {
  it("names a full disk, with the state directory and the fix, however the tool said it", () => {
    const fix = "the local disk is full: free space in the agent's state directory (/var/lib/kdr-agent), or give its volume more room";
    for (const e of [
      errno("ENOSPC", "ENOSPC: no space left on device, write"),
      new Error("tar exited 2: tar: ./base/1/1259: Cannot write: No space left on device"),
      errno("EDQUOT", "EDQUOT: disk quota exceeded, write"),
      new Error("sqlite3 exited 1: Error: database or disk is full"),
    ]) {
      expect(outsideTheBackup(e, "/var/lib/kdr-agent")).toBe(fix);
      expect(diskFull(e, "/var/lib/kdr-agent")).toBe(fix);
    }
  });
  it("keeps an unreachable store and a missing tool apart from damage", () => {
    expect(outsideTheBackup(errno("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:1"))).toBe("the object store could not be reached");
    expect(outsideTheBackup(new Error("pg_waldump is needed by pg_verifybackup but was not found"))).toBe("a tool is missing in this container");
    expect(outsideTheBackup(new IntegrityError("SHA-256 of base.tar does not match: No space left on device"))).toBeUndefined();
    expect(outsideTheBackup(new Error("age: error: no identity matched any of the recipients"))).toBeUndefined();
    expect(diskFull(new Error("write EPIPE"))).toBeUndefined();
  });
});
