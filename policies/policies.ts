/**
 * The kryonix-dr policies, one file each under rules/ (named by the policy), built with define.ts
 * from the planned graph that model.ts reads. The pack entry (index.ts) hands this list to
 * `new PolicyPack`, and `evaluatePolicies` (evaluate.ts) calls the very same `validateStack` on an
 * in-process plan.
 *
 * Every check reports one message per problem; each message names the resource and says how to fix it.
 */
import type { KdrPolicy } from "./define.js";
import { statefulServiceHasSidecar } from "./rules/stateful-service-has-backup-sidecar.js";
import { backupBucketIsSafe } from "./rules/backup-bucket-private-versioned-locked.js";
import { lockCoversLifecycle } from "./rules/lock-retention-covers-lifecycle.js";
import { retentionCoversFulls } from "./rules/retention-covers-two-full-backups.js";
import { scheduleMeetsRpo } from "./rules/schedule-meets-rpo.js";
import { criticalBucketReplicated } from "./rules/critical-bucket-replicated.js";
import { noPlainCredentials } from "./rules/no-plaintext-credentials.js";
import { sidecarCannotDelete } from "./rules/sidecar-cannot-delete-backups.js";
import { noPublicBucket } from "./rules/no-public-bucket-policy.js";
import { declaresTargets } from "./rules/protected-service-declares-rpo-rto.js";
import { volumeSidecarOnDataNode } from "./rules/volume-sidecar-on-the-data-node.js";

export type { Finding, KdrPolicy } from "./define.js";

/** Every policy, in the order the issue lists them. */
export const policies: KdrPolicy[] = [
  statefulServiceHasSidecar,
  backupBucketIsSafe,
  lockCoversLifecycle,
  retentionCoversFulls,
  scheduleMeetsRpo,
  criticalBucketReplicated,
  noPlainCredentials,
  sidecarCannotDelete,
  noPublicBucket,
  declaresTargets,
  volumeSidecarOnDataNode,
];
