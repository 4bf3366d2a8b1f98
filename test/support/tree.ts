/** SHA-256 of every file under a directory, by path relative to it: equality means the same tree of files. */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

export function treeHashes(dir: string, base = dir, out: Record<string, string> = {}): Record<string, string> {
  for (const f of readdirSync(dir).sort()) {
    const p = path.join(dir, f);
    if (statSync(p).isDirectory()) treeHashes(p, base, out);
    else out[path.relative(base, p)] = createHash("sha256").update(readFileSync(p)).digest("hex");
  }
  return out;
}
