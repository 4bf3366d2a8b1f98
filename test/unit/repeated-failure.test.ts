/** RepeatedFailure: an outage retried every 2 s is said when it starts, once a minute, and when it ends. */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { RepeatedFailure } from "../../agent/storage/progress.js";

describe("RepeatedFailure", () => {
  beforeEach(() => vi.useFakeTimers({ now: new Date("2026-12-03T08:00:00Z") }));
  afterEach(() => vi.useRealTimers());

  it("says a five-minute outage retried every 2 s in six lines, with how long and how many attempts", () => {
    const said: string[] = [];
    const r = new RepeatedFailure("pg_receivewal stopped", (m) => said.push(`FAIL ${m}`), (m) => said.push(`OK ${m}`));
    r.ok(); // nothing was failing: nothing to say
    for (let t = 0; t < 300; t += 2) {
      r.failed(new Error("could not connect to the server: Connection refused"));
      vi.advanceTimersByTime(2000);
    }
    expect(r.failing).toBe(true);
    r.ok();
    r.ok();
    expect(said).toEqual([
      "FAIL pg_receivewal stopped: could not connect to the server: Connection refused",
      "FAIL pg_receivewal stopped: still failing after 1 min 0 s (31 attempts): could not connect to the server: Connection refused",
      "FAIL pg_receivewal stopped: still failing after 2 min 0 s (61 attempts): could not connect to the server: Connection refused",
      "FAIL pg_receivewal stopped: still failing after 3 min 0 s (91 attempts): could not connect to the server: Connection refused",
      "FAIL pg_receivewal stopped: still failing after 4 min 0 s (121 attempts): could not connect to the server: Connection refused",
      "OK pg_receivewal stopped: working again after 5 min 0 s (150 failed attempt(s))",
    ]);
    expect(r.failing).toBe(false);
    r.failed(new Error("again"));
    expect(said.at(-1)).toBe("FAIL pg_receivewal stopped: again");
  });
});
