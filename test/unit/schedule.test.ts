/**
 * contract/schedule.ts: the one worst-gap function, and proof that config validation and the
 * schedule policy now give the same verdict for the same service (they used two algorithms:
 * config took the shorter of the two schedules' own gaps, the policy the gap of their union).
 */
import { describe, expect, it } from "vitest";
import { AGENT_ENV } from "../../contract/index.js";
import { cronError, humanDuration, worstGapSeconds } from "../../contract/schedule.js";
import { evaluatePolicies } from "../../policies/evaluate.js";
import { ConfigError, parseSpecs, type RawConfig } from "../../stacks/config.js";
import { compliantPlan, copy, envOf } from "./policies/fixtures.js";

describe("worstGapSeconds", () => {
  it("gives the longest gap of one schedule", () => {
    expect(worstGapSeconds(["0 2 * * *"])).toBe(86400);
    expect(worstGapSeconds(["0 */6 * * *"])).toBe(21600);
    expect(worstGapSeconds(["*/30 * * * * *"])).toBe(30);
    // Weekdays only: the weekend makes the longest gap three days.
    expect(worstGapSeconds(["0 2 * * 1-5"])).toBe(3 * 86400);
    // Every 30 s from 09:00 to 17:59: the longest gap is 17:59:30 -> 09:00:00.
    expect(worstGapSeconds(["*/30 * 9-17 * * *"])).toBe(15 * 3600 + 30);
    expect(worstGapSeconds(["0 3 1 * *"])).toBe(31 * 86400);
  });

  it("gives the longest time with no run of any of several schedules", () => {
    expect(worstGapSeconds(["0 0 * * *", "0 12 * * *"])).toBe(12 * 3600);
    expect(worstGapSeconds(["0 2 * * *", "0 14 * * *"])).toBe(12 * 3600);
    expect(worstGapSeconds(["0 2 * * *", "0 */6 * * *"])).toBe(6 * 3600);
    // A dense daytime schedule beside a nightly full: 17:59:30 -> 02:00 is the longest pause.
    expect(worstGapSeconds(["0 2 * * *", "*/30 * 9-17 * * *"])).toBe(8 * 3600 + 30);
    expect(worstGapSeconds(["0 2 * * *", ""])).toBe(86400);
  });

  it("is infinite for no schedule, and throws croner's message for a bad one", () => {
    expect(worstGapSeconds([])).toBe(Number.POSITIVE_INFINITY);
    expect(worstGapSeconds(["", ""])).toBe(Number.POSITIVE_INFINITY);
    expect(() => worstGapSeconds(["0 25 * * *"])).toThrow();
    expect(cronError("0 25 * * *")).toMatch(/hour|range|invalid/i);
    expect(cronError("0 2 * * *")).toBeUndefined();
  });

  it("formats durations for messages", () => {
    expect(humanDuration(12 * 3600)).toBe("12 h");
    expect(humanDuration(3 * 86400 + 90)).toBe("3 d 1 min 30 s");
    expect(humanDuration(Number.POSITIVE_INFINITY)).toBe("never");
  });
});

describe("config validation and the schedule policy agree", () => {
  const secrets = new Set(["primaryAccessKey", "primarySecretKey", "drAccessKey", "drSecretKey", "catalogAdminPassword", "catalogOwnerPassword", "catalogWriterPassword", "catalogReaderPassword", "catalogReplicationPassword", "ageRecipient", "ageIdentity", "resticPassword"]);

  /** Does stack config accept a volume service with these schedules and RPO? */
  function configAccepts(full: string, incremental: string, rpoSeconds: number): boolean {
    const raw: RawConfig = {
      stack: "prod",
      regions: { primary: { name: "r1", endpoint: "https://s3.one.example:9000" }, dr: { name: "r2", endpoint: "https://s3.two.example:9000" } },
      catalog: { host: "catalog.example" },
      services: [{ name: "grafana", engine: "volume", tier: "secondary", volume: "grafana-data", placement: ["node.labels.kryonix.grafana == true"], schedules: { full, incremental }, rpoSeconds }],
    };
    try {
      parseSpecs(raw, secrets);
      return true;
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      expect(e.message).toMatch(/services\[0\]\.rpoSeconds: RPO target/);
      return false;
    }
  }

  /** Does the schedule-meets-rpo policy accept a sidecar with these schedules and RPO? */
  function policyAccepts(full: string, incremental: string, rpoSeconds: number): boolean {
    const plan = copy(compliantPlan());
    const env = envOf(plan, "grafana-sidecar-service");
    env[AGENT_ENV.scheduleFull] = full;
    env[AGENT_ENV.scheduleIncremental] = incremental;
    env[AGENT_ENV.rpoSeconds] = String(rpoSeconds);
    return evaluatePolicies(plan).filter((v) => v.policy === "schedule-meets-rpo").length === 0;
  }

  const cases: Array<[string, string, number]> = [
    ["0 2 * * *", "0 14 * * *", 12 * 3600], // interleaved: 12 h, which the old config check saw as 24 h
    ["0 2 * * *", "0 14 * * *", 11 * 3600],
    ["0 2 * * *", "0 */6 * * *", 6 * 3600],
    ["0 2 * * *", "0 */6 * * *", 5 * 3600],
    ["0 2 * * *", "", 86400],
    ["0 2 * * *", "", 86399],
    ["0 2 * * 1-5", "", 2 * 86400],
    ["0 2 * * *", "*/30 * 9-17 * * *", 8 * 3600 + 30],
    ["0 2 * * *", "*/30 * 9-17 * * *", 8 * 3600],
  ];

  it.each(cases)("full %s + incremental %s, RPO %i s: same verdict", (full, incremental, rpo) => {
    const expected = worstGapSeconds([full, incremental]) <= rpo;
    expect(configAccepts(full, incremental, rpo)).toBe(expected);
    expect(policyAccepts(full, incremental, rpo)).toBe(expected);
  });
});
