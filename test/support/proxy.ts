/**
 * A TCP proxy a test can cut or hold. Cut: nothing listens on its port (new connections are
 * refused) and every open connection is reset, as when a server stops; restored, it listens on the
 * same port again. Held: connections stay open but nothing passes either way, as a server that
 * stopped answering; released, what was held passes on, except on a connection whose other end
 * closed meanwhile (a killed client's last request never reaches the server). It stands between
 * the agent and a real server (the S3 endpoint, the catalog).
 */
import net from "node:net";

export interface CuttableProxy {
  port: number;
  /** The proxy's address in the target URL's place: http://127.0.0.1:<port>. */
  url: string;
  cut(): Promise<void>;
  restore(): Promise<void>;
  /** Nothing passes from now on, on open connections and new ones, until release(). */
  hold(): void;
  release(): void;
  close(): Promise<void>;
}

/** One direction of a connection: written through, or queued while held. */
interface Pipe {
  from: net.Socket;
  to: net.Socket;
  queue: Buffer[];
}

export async function startProxy(target: string): Promise<CuttableProxy> {
  const t = new URL(target);
  const targetPort = Number(t.port || (t.protocol === "https:" ? 443 : 80));
  const sockets = new Set<net.Socket>();
  const pipes = new Set<Pipe>();
  let held = false;
  const flush = (p: Pipe) => {
    if (!p.to.destroyed) for (const b of p.queue) p.to.write(b);
    p.queue = [];
  };
  const makeServer = () =>
    net.createServer((client) => {
      const upstream = net.connect(targetPort, t.hostname);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on("close", () => sockets.delete(s));
        s.on("error", () => undefined);
      }
      for (const p of [{ from: client, to: upstream, queue: [] }, { from: upstream, to: client, queue: [] }] as Pipe[]) {
        pipes.add(p);
        p.from.on("data", (d: Buffer) => (held ? p.queue.push(d) : p.to.write(d)));
        p.from.on("close", () => {
          pipes.delete(p);
          p.queue = [];
        });
      }
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
    hold() {
      held = true;
    },
    release() {
      held = false;
      for (const p of pipes) flush(p);
    },
    close: stop,
  };
}
