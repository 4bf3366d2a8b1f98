/**
 * The health probe (agent/healthz.ts, bundled alone as healthz.cjs): its port as the agent's own
 * settings read it, its verdict from the answer, and a timeout that really ends a request that
 * never answers (the probe it replaced set one and never acted on it).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SETTINGS } from "../../contract/settings.js";
import { probe, probePort } from "../../agent/healthz.js";

let server: Server | undefined;
afterEach(() => {
  server?.closeAllConnections();
  server?.close();
  server = undefined;
  vi.restoreAllMocks();
});

async function serveWith(handler: Parameters<typeof createServer>[1]): Promise<number> {
  server = createServer(handler);
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return (server.address() as AddressInfo).port;
}

describe("probePort", () => {
  const name = SETTINGS.metricsPort.env;
  it("is the setting's default when unset or empty, else the env var's port", () => {
    expect(probePort({})).toBe(SETTINGS.metricsPort.default);
    expect(probePort({ [name]: " " })).toBe(SETTINGS.metricsPort.default);
    expect(probePort({ [name]: "19555" })).toBe(19555);
  });
  it("refuses what is no port, naming the variable and the fix", () => {
    for (const bad of ["http", "0", "70000", "12.5"]) expect(() => probePort({ [name]: bad })).toThrow(new RegExp(`${name}='${bad.replace(".", "\\.")}' is not a port \\(1-65535\\)`));
  });
});

describe("probe", () => {
  it("is 0 on a 200 and 1 on a 503, printing the answer", async () => {
    const out = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    let status = 200;
    const port = await serveWith((_req, res) => {
      res.statusCode = status;
      res.end(JSON.stringify({ ok: status === 200 }));
    });
    expect(await probe(port)).toBe(0);
    status = 503;
    expect(await probe(port)).toBe(1);
    expect(out.mock.calls.map((c) => String(c[0]))).toEqual(['{"ok":true}\n', '{"ok":false}\n']);
  });
  it("gives up on a process that accepts and never answers, within its timeout, saying so", async () => {
    const out = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    const port = await serveWith(() => undefined);
    const t0 = Date.now();
    expect(await probe(port, 300)).toBe(1);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(String(out.mock.calls.at(-1)?.[0])).toContain(`no kdr-agent serve/cron/replicate process answers on :${port} (no answer within 0.3 s)`);
  });
});
