/**
 * A TCP proxy a test can cut: while cut, nothing listens on its port (new connections are
 * refused) and every open connection is reset, as when a server stops; restored, it listens on
 * the same port again. It stands between the agent and a real server (the S3 endpoint).
 */
import net from "node:net";

export interface CuttableProxy {
  port: number;
  /** The proxy's address in the target URL's place: http://127.0.0.1:<port>. */
  url: string;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startProxy(target: string): Promise<CuttableProxy> {
  const t = new URL(target);
  const targetPort = Number(t.port || (t.protocol === "https:" ? 443 : 80));
  const sockets = new Set<net.Socket>();
  const makeServer = () =>
    net.createServer((client) => {
      const upstream = net.connect(targetPort, t.hostname);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on("close", () => sockets.delete(s));
        s.on("error", () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
  let server = makeServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  let up = true;
  const stop = async () => {
    if (!up) return;
    up = false;
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const s of sockets) s.resetAndDestroy();
    await closed;
  };
  return {
    port,
    url: `${t.protocol}//127.0.0.1:${port}`,
    cut: stop,
    async restore() {
      if (up) return;
      server = makeServer();
      await new Promise<void>((r, j) => server.once("error", j).listen(port, "127.0.0.1", () => r()));
      up = true;
    },
    close: stop,
  };
}
