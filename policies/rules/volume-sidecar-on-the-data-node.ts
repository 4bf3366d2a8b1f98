/** Policy "volume-sidecar-on-the-data-node". */
import { describe, engineOf, services } from "../model.js";
import { define, type Finding } from "../define.js";
import { backupProtections } from "../shared.js";

export const volumeSidecarOnDataNode = define<object>({
  name: "volume-sidecar-on-the-data-node",
  description:
    "A volume backup sidecar is pinned by placement constraints to the node that holds the volume: the protected service's own constraints, and some at all.",
  defaults: {},
  schema: {},
  check(resources) {
    const out: Finding[] = [];
    for (const p of backupProtections(services(resources))) {
      if (engineOf(p) !== "volume") continue;
      const who = `Backup sidecar "${p.sidecar.name}" (${describe(p.sidecar.resource)}) of "${p.protects}"`;
      const fix = `Fix: set kryonix-dr:services[].placement of "${p.protects}" (e.g. ["node.labels.kryonix.${p.protects} == true"], with that label on the one node that holds its data); the service and its sidecar both get it.`;
      if (p.sidecar.constraints.length === 0) {
        out.push({
          resource: p.sidecar.resource,
          message: `${who} has no placement constraint: on a multi-node swarm it can start on a node where its volume is empty (a local volume lives on one node) and back up nothing. ${fix}`,
        });
        continue;
      }
      if (!p.target) continue;
      if (p.target.constraints.length === 0) {
        out.push({
          resource: p.target.resource,
          message: `Protected service "${p.protects}" (${describe(p.target.resource)}) keeps its data on a volume but has no placement constraint, so its data is wherever it last ran and its sidecar cannot follow. ${fix}`,
        });
        continue;
      }
      const missing = p.target.constraints.filter((c) => !p.sidecar.constraints.includes(c));
      if (missing.length) {
        out.push({
          resource: p.sidecar.resource,
          message: `${who} lacks the protected service's placement constraint(s) ${missing.map((c) => JSON.stringify(c)).join(", ")}, so it can run on another node than the data. ${fix}`,
        });
      }
    }
    return out;
  },
});
