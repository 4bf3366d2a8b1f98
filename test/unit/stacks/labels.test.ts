/**
 * Oversized labels (#16): no label kryonix-dr puts on a resource is free text. Every label on every
 * resource of the prod, recovery and local stacks, under Pulumi mocks, is one of the contract's keys
 * (the dr stack's services come from prod's outputs, through the same components), and its
 * value is a service name the config validated (at most 31 characters), a member of a fixed set,
 * or a whole number of seconds; so no config, however long its strings, makes a label longer than
 * the names the config accepts.
 */
import { describe, expect, it } from "vitest";
import { ENGINES, LABELS, TIERS } from "../../../contract/index.js";
import { labelsOf, reveal, runProgram, setupMocks, stackFileConfig, type Registration } from "../../support/mocks.js";

/** Labels on the resource itself and on the containers of a service's tasks. */
function allLabels(r: Registration): Record<string, string>[] {
  const out = [labelsOf(r.inputs)];
  const spec = reveal<{ containerSpec?: { labels?: Array<{ label: string; value: string }> } }>(r.inputs.taskSpec);
  const inner = reveal<Array<{ label: string; value: string }>>(spec?.containerSpec?.labels);
  if (inner) out.push(Object.fromEntries(inner.map((l) => [l.label, l.value])));
  return out;
}

const NAME = /^[a-z][a-z0-9-]{0,30}$/;
const ROLE = /^[a-z][a-z-]{1,23}$/;
const KEYS = new Set<string>(Object.values(LABELS));

describe.each(["prod", "recovery", "local"])("labels of the %s stack", (stack) => {
  it("are the contract's keys, with a validated name, a fixed word or a number of seconds as value", async () => {
    const file = stackFileConfig(stack);
    const regs = await setupMocks({ ...file, stack });
    await runProgram();
    const names = new Set(((file.config.services ?? []) as Array<{ name: string }>).map((s) => s.name));
    let seen = 0;
    for (const r of regs) {
      for (const labels of allLabels(r)) {
        for (const [key, value] of Object.entries(labels)) {
          seen++;
          const where = `${r.type} ${r.name}: ${key}=${value}`;
          expect(KEYS.has(key), where).toBe(true);
          if (key === LABELS.service || key === LABELS.protects) {
            expect(value, where).toMatch(NAME);
            expect(names.has(value) || value === "kdr-catalog", where).toBe(true);
          } else if (key === LABELS.tier) expect(TIERS, where).toContain(value);
          else if (key === LABELS.engine) expect(ENGINES, where).toContain(value);
          else if (key === LABELS.rpoSeconds || key === LABELS.rtoSeconds) expect(value, where).toMatch(/^[1-9][0-9]{0,9}$/);
          else if (key === LABELS.managed || key === LABELS.stateful) expect(["true", "false"], where).toContain(value);
          else expect(value, where).toMatch(ROLE);
        }
      }
    }
    expect(seen).toBeGreaterThan(10);
  });
});
