/** Policy "protected-service-declares-rpo-rto". */
import { AGENT_ENV, LABELS } from "../../contract/index.js";
import { describe, services, setting, type Protection } from "../model.js";
import { define, type Finding } from "../define.js";
import { backupProtections, positiveNumber } from "../shared.js";

export const declaresTargets = define<object>({
  name: "protected-service-declares-rpo-rto",
  description: "Every protected service declares RPO and RTO targets.",
  defaults: {},
  schema: {},
  check(resources) {
    const out: Finding[] = [];
    const byTarget = new Map<string, Protection[]>();
    for (const p of backupProtections(services(resources))) byTarget.set(p.protects, [...(byTarget.get(p.protects) ?? []), p]);
    for (const [name, ps] of byTarget) {
      const target = ps.find((p) => p.target)?.target;
      const resource = target?.resource ?? ps[0].sidecar.resource;
      const read = (env: string, label: string) => ps.map((p) => setting(env, label, p.sidecar, p.target)).find((v) => v !== undefined);
      for (const [what, env, label] of [
        ["RPO", AGENT_ENV.rpoSeconds, LABELS.rpoSeconds],
        ["RTO", AGENT_ENV.rtoSeconds, LABELS.rtoSeconds],
      ] as const) {
        const v = read(env, label);
        if (positiveNumber(v) !== undefined) continue;
        const state = v === undefined ? "declares none" : `declares ${JSON.stringify(v)}, which is not a positive number of seconds`;
        out.push({
          resource,
          message:
            `Protected service "${name}" (${describe(resource)}) ${state} for its ${what}. ` +
            `Fix: set the label ${label} on the service (or ${env} on its sidecar) to the target in seconds.`,
        });
      }
    }
    return out;
  },
});
