#!/usr/bin/env node
// The CLI is TypeScript run directly (no build step). The project's .ts files are CommonJS-interop
// (package.json has no "type"), so register both of tsx's hooks: the ESM one for this import and
// the CJS one for the require() calls that @pulumi and the program make.
import { register as registerEsm } from "tsx/esm/api";
import { register as registerCjs } from "tsx/cjs/api";

// The pinned AWS SDK warns on every run that releases after January 2027 will need Node 22;
// the machines run Node 20 and the version is pinned, so the warning is noise in every command's
// output (and in the progress the drill relays). An explicit setting still wins.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

// `kryonix-dr plan --json | head` closes the pipe early: that is the reader's choice, not a failure.
process.stdout.on("error", (err) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

registerEsm();
registerCjs();

const mod = await import("../cli/main.ts");
// CommonJS-interop modules arrive under `default`.
const main = mod.main ?? mod.default.main;
process.exitCode = await main(process.argv.slice(2));
