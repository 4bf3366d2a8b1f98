/** Entry of healthz.cjs, the HEALTHCHECK of every agent container (see healthz.ts). */
import { probe, probePort } from "./healthz.js";

let port: number;
try {
  port = probePort(process.env);
} catch (e) {
  process.stdout.write(`healthz: ${(e as Error).message}\n`);
  process.exit(1);
}
void probe(port).then((code) => process.exit(code));
