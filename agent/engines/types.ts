/** What every engine gets and gives back; the commands (agent/commands/) do catalog and manifest. */
import type { Settings } from "../config.js";
import type { SealedArtifact } from "../storage/pipeline.js";
import type { Lock, Storage } from "../storage/s3.js";

export interface BackupContext {
  settings: Settings;
  storage: Storage;
  service: string;
  backupId: string;
  /** Path of the age recipient file (engines that encrypt with age). */
  recipientFile: string;
  /** Object-lock retention for a class, or undefined (bucket default applies). */
  lock(cls: "full" | "incremental" | "wal" | "logical"): Lock | undefined;
  /** Key prefix for this backup's artifacts: `<class>/<service>/<backupId>/`. */
  prefix: string;
}

export interface EngineResult {
  artifacts: SealedArtifact[];
  tool: string;
  toolVersion: string;
  /** Recovery points this backup covers. */
  recoveryPointStart: Date;
  recoveryPointEnd: Date;
  /** Engine facts worth keeping (LSNs, snapshot ids, what "incremental" meant). */
  details: Record<string, unknown>;
  /** restic: the tool stores its own data; sizes are measured from its summary. */
  measured?: { rawBytes: number; storedBytes: number };
}
