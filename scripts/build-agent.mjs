#!/usr/bin/env node
// Bundles the agent (agent/cli.ts and everything it imports, node_modules included) into one
// CommonJS file for Node 20, so the agent image needs no node_modules and no TypeScript; and its
// health probe (agent/healthz-main.ts) into healthz.cjs beside it, a few KiB that Docker runs
// every 30 s without loading the whole agent.
// Usage: node scripts/build-agent.mjs [outfile]   (default dist/agent/agent.cjs)
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const entry = path.join(repo, "agent", "cli.ts");
const outfile = path.resolve(process.argv[2] ?? path.join(repo, "dist", "agent", "agent.cjs"));
const probeEntry = path.join(repo, "agent", "healthz-main.ts");
const probeOut = path.join(path.dirname(outfile), "healthz.cjs");

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
const bundle = (entryPoint, out) =>
  esbuild.build({
    entryPoints: [entryPoint],
    outfile: out,
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
const size = (result) => Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
try {
  const result = await bundle(entry, outfile);
  const probe = await bundle(probeEntry, probeOut);
  console.log(`build-agent: ${path.relative(repo, outfile)} (${(size(result) / 1024 / 1024).toFixed(1)} MiB), ${path.relative(repo, probeOut)} (${(size(probe) / 1024).toFixed(1)} KiB)`);
} catch (err) {
  console.error(`build-agent: esbuild failed to bundle the agent: ${err instanceof Error ? err.message : err}`);
  process.exit(1);
}
