#!/usr/bin/env node
// Bundles the agent (agent/cli.ts and everything it imports, node_modules included) into one
// CommonJS file for Node 20, so the agent image needs no node_modules and no TypeScript.
// Usage: node scripts/build-agent.mjs [outfile]   (default dist/agent/agent.cjs)
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const entry = path.join(repo, "agent", "cli.ts");
const outfile = path.resolve(process.argv[2] ?? path.join(repo, "dist", "agent", "agent.cjs"));

if (!existsSync(entry)) {
  console.error(`build-agent: ${entry} does not exist yet; the agent's entry point must be agent/cli.ts. Write it (agent lane), then run 'node scripts/build-agent.mjs' again.`);
  process.exit(2);
}

let esbuild;
try {
  esbuild = await import("esbuild");
} catch {
  console.error("build-agent: esbuild is not installed. Run 'npm ci --ignore-scripts' in the repository, then run this again.");
  process.exit(2);
}

mkdirSync(path.dirname(outfile), { recursive: true });
try {
  const result = await esbuild.build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    // pg tries an optional native binding; the agent uses the pure-JS client.
    external: ["pg-native"],
    sourcemap: false,
    legalComments: "none",
    logLevel: "warning",
    metafile: true,
  });
  const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
  console.log(`build-agent: ${path.relative(repo, outfile)} (${(bytes / 1024 / 1024).toFixed(1)} MiB)`);
} catch (err) {
  console.error(`build-agent: esbuild failed to bundle ${path.relative(repo, entry)}: ${err instanceof Error ? err.message : err}`);
  process.exit(1);
}
