/** Policy "stateful-service-has-backup-sidecar". */
import { LABELS } from "../../contract/index.js";
import { services, sidecarsOf } from "../model.js";
import { define } from "../define.js";
import { DEFAULT_ENGINES, statefulReason, svcName, type StatefulConfig } from "../shared.js";

export const statefulServiceHasSidecar = define<StatefulConfig>({
  name: "stateful-service-has-backup-sidecar",
  description:
    "Every stateful Swarm service (mounts a volume, or its image or labels name a known engine) is covered by a backup sidecar.",
  defaults: { engines: DEFAULT_ENGINES, statefulMountTypes: ["volume"], exclude: [] },
  schema: {
    engines: { type: "array", items: { type: "string" }, description: "Image words that mark a stateful engine." },
    statefulMountTypes: { type: "array", items: { type: "string" }, description: "Mount types that hold state." },
    exclude: { type: "array", items: { type: "string" }, description: "Service names whose data is disposable." },
  },
  check(resources, cfg) {
    const all = services(resources);
    return all.flatMap((s) => {
      const why = statefulReason(s, cfg);
      if (!why || sidecarsOf(s, all).length > 0) return [];
      return [
        {
          resource: s.resource,
          message:
            `${svcName(s)} holds state (${why}) but no backup sidecar protects it. ` +
            `Fix: add a backup sidecar for it (a Swarm service labelled ${LABELS.protects}=${s.logicalName}), ` +
            `or, if its data is disposable, list "${s.name}" under "exclude" in this policy's config.`,
        },
      ];
    });
  },
});
