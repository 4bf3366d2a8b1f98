/**
 * The recovery stack when the catalog is lost (recovery.catalog restore): one step before any
 * restore job gets it back from the source region, with every input a secret.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { TOOL_ENV } from "../../../contract/index.js";
import { byType, isSecret, one, reveal, runProgram, setupMocks, stackFileConfig, testSecretValue, type Registration } from "../../support/mocks.js";

let regs: Registration[];

beforeAll(async () => {
  const file = stackFileConfig("recovery");
  file.config.recovery = { ...(file.config.recovery as object), point: "2026-11-28T20:15:00Z", catalog: "restore" };
  file.config.catalogAdminPassword = testSecretValue("catalogAdminPassword");
  file.config.catalogOwnerPassword = testSecretValue("catalogOwnerPassword");
  regs = await setupMocks({ ...file, stack: "recovery", secretKeys: [...(file.secretKeys ?? []), "catalogAdminPassword", "catalogOwnerPassword"] });
  await runProgram();
});

describe("recovery stack, recovery.catalog: restore", () => {
  it("restores the catalog to the recovery point before any restore job, with its inputs as one secret", () => {
    const step = one(regs, "command:local:Command", "catalog");
    expect(step.inputs.create).toBe("node bin/kryonix-dr.mjs catalog restore --from-env --json --time 2026-11-28T20:15:00.000Z");
    expect(isSecret(step.inputs.environment)).toBe(true);
    const inputs = JSON.parse(reveal<Record<string, string>>(step.inputs.environment)[TOOL_ENV.catalogRecovery]!);
    expect(inputs.catalog).toMatchObject({ database: "kryonix_dr", owner: "kryonix_dr_owner", writer: "kryonix_dr_agent", adminPassword: testSecretValue("catalogAdminPassword"), ownerPassword: testSecretValue("catalogOwnerPassword") });
    expect(inputs.region.name).toBe("local-primary");
    expect(inputs.buckets.sort()).toEqual(["kdr-local-backups-critical", "kdr-local-backups-important"]);
    expect(inputs.ageIdentity).toBe(testSecretValue("ageIdentity"));
    for (const job of byType(regs, "docker:index/container:Container")) expect(job.seq, job.name).toBeGreaterThan(step.doneSeq!);
  });
});
