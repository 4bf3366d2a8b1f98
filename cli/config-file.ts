/** The --config-file that plan and deploy take (config the stack file cannot hold, e.g. real secrets). */
import { readFileSync } from "node:fs";
import { UsageError } from "./command.js";

/** Reads a --config-file: an object of `{value, secret?}` entries. */
export function readConfigFile(file: string): Record<string, { value: unknown; secret?: boolean }> {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new UsageError(`--config-file ${file} is not readable JSON: ${(err as Error).message}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new UsageError(`--config-file ${file} must hold a JSON object of {"key": {"value": ..., "secret": bool}}.`);
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    if (v === null || typeof v !== "object" || !("value" in (v as object))) {
      throw new UsageError(`--config-file ${file}: entry '${k}' must be {"value": ..., "secret": bool}.`);
    }
  }
  return doc as Record<string, { value: unknown; secret?: boolean }>;
}
