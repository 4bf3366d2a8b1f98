/**
 * docs/config.md: every example, applied over the stack file it names, passes the program's own
 * config parser; and the examples cover every top-level key and every service field.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import yaml from "js-yaml";
import { describe, expect, it } from "vitest";
import { parseSpecs, type RawConfig } from "../../stacks/config.js";

const ROOT = join(__dirname, "..", "..");
const doc = readFileSync(join(ROOT, "docs", "config.md"), "utf8");
const examples = [...doc.matchAll(/```yaml\n# over: (\w+)\n([\s\S]*?)```/g)].map((m) => ({ stack: m[1]!, text: m[2]! }));
const TOP_LEVEL = ["role", "namePrefix", "tenantId", "services", "defaults", "maintenance", "regions", "replication", "storage", "catalog", "images", "sidecar", "monitoring", "primaryStack", "recovery", "failover", "active", "failback"];
const SERVICE_FIELDS = ["name", "engine", "tier", "priority", "rpoSeconds", "rtoSeconds", "host", "port", "user", "volume", "dataPath", "hooks", "schedules", "retention", "walSwitchSeconds", "placement", "networks", "image", "args", "sqlite"];

function stackConfig(stack: string): Record<string, unknown> {
  return (yaml.load(readFileSync(join(ROOT, `Pulumi.${stack}.yaml`), "utf8")) as { config: Record<string, unknown> }).config;
}

describe("docs/config.md", () => {
  it("has examples, each naming the stack file it applies over", () => {
    expect(examples.length).toBeGreaterThan(10);
    expect([...doc.matchAll(/```yaml\n/g)].length).toBe(examples.length);
  });

  it.each(examples.map((e, i) => [i + 1, e.stack, e] as const))("example %i (over %s) passes the config parser", (_i, stack, e) => {
    const merged = { ...stackConfig(stack), ...(yaml.load(e.text) as Record<string, unknown>) };
    const plain = Object.fromEntries(Object.entries(merged).map(([k, v]) => [k.replace(/^kryonix-dr:/, ""), v]));
    const raw = { ...plain, stack } as unknown as RawConfig;
    expect(() => parseSpecs(raw, new Set(Object.keys(plain)))).not.toThrow();
  });

  it("covers every top-level key and every service field", () => {
    const all = examples.map((e) => e.text).join("\n");
    expect(TOP_LEVEL.filter((k) => !all.includes(`kryonix-dr:${k}:`))).toEqual([]);
    const services = examples.map((e) => e.text).filter((t) => t.includes("kryonix-dr:services:")).join("\n");
    expect(SERVICE_FIELDS.filter((f) => !new RegExp(`[{,]\\s*${f}:`).test(services))).toEqual([]);
  });
});
