// Loaded by the Pulumi CLI (package.json "main"). The CLI's own TypeScript hook (a vendored
// ts-node) cannot resolve this repo's `./x.js` specifiers to `./x.ts`; tsx, which the whole
// repo runs under, can. So register tsx's CommonJS hook and load the real entry.
require("tsx/cjs/api").register();
require("./index.ts");
