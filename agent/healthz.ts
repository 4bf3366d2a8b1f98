/**
 * The container health probe: asks the serve/cron/replicate process of this container for its
 * /healthz. Docker runs it every 30 s in every sidecar, so it is bundled alone (healthz.cjs, a few
 * KiB): loading the whole agent bundle costs about 0.3 s of CPU, and on a loaded 2-core node the
 * probe of a sidecar busy with a backup timed out three times running and Swarm killed the
 * sidecar in the middle of that backup (drill-prod, cold run 27).
 */
import { request } from "node:http";
import { SETTINGS } from "../contract/settings.js";

/** The port the process serves on, as its own settings read it (the env var, or the default). */
export function probePort(env: NodeJS.ProcessEnv): number {
  const def = SETTINGS.metricsPort;
  const raw = env[def.env]?.trim();
  if (raw === undefined || raw === "") return def.default;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`${def.env}='${raw}' is not a port (1-65535): set it to the port serve/cron/replicate listen on, or unset it for ${def.default}`);
  }
  return port;
}

/** 0 when the process answers 200, 1 otherwise; prints its answer (Docker keeps it in the health log). */
export function probe(port: number, timeoutMs = 5000): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/healthz", timeout: timeoutMs }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d));
      res.on("end", () => {
        process.stdout.write(body + "\n");
        resolve(res.statusCode === 200 ? 0 : 1);
      });
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.on("error", (e) => {
      process.stdout.write(`no kdr-agent serve/cron/replicate process answers on :${port} (${e.message})\n`);
      resolve(1);
    });
    req.end();
  });
}
