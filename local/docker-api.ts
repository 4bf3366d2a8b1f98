/**
 * A minimal Docker Engine API client over the unix socket (plain HTTP, node:http), enough for
 * the docker mapping. No new dependency: the Engine API is JSON over HTTP.
 */
import http from "node:http";

export const DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock";
// Debian's engine is 20.10 (API 1.41); pinning the version keeps request shapes stable.
const API = "/v1.41";

export class DockerApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "DockerApiError";
  }
}

export class DockerApi {
  readonly socketPath: string;

  constructor(host: string = DEFAULT_DOCKER_HOST) {
    if (!host.startsWith("unix://")) {
      throw new Error(`The local deployer only talks to a local engine over its unix socket, not ${host}: set the docker provider's host to unix:///var/run/docker.sock.`);
    }
    this.socketPath = host.slice("unix://".length);
  }

  request<T = unknown>(method: string, path: string, body?: unknown, timeoutMs = 120_000): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.socketPath,
          method,
          path: `${API}${path}`,
          headers: payload ? { "content-type": "application/json", "content-length": payload.length } : {},
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            const status = res.statusCode ?? 0;
            if (status >= 400) {
              let msg = text;
              try {
                msg = (JSON.parse(text) as { message?: string }).message ?? text;
              } catch {
                /* not JSON: keep the text */
              }
              reject(new DockerApiError(status, `${method} ${path}: ${status} ${msg.trim()}`));
              return;
            }
            if (text === "") return resolve(undefined as T);
            try {
              resolve(JSON.parse(text) as T);
            } catch {
              resolve(text as T);
            }
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer from the Docker engine within ${timeoutMs} ms`)));
      req.on("error", reject);
      if (payload) req.write(payload);
      req.end();
    });
  }

  /** DELETE that treats "already gone" (404) as success, so destroy can be re-run. */
  async remove(path: string): Promise<void> {
    try {
      await this.request("DELETE", path);
    } catch (err) {
      if (err instanceof DockerApiError && err.status === 404) return;
      throw err;
    }
  }

  /** PUT /containers/{id}/archive: extracts a tar into the container's filesystem at `path`. */
  putArchive(id: string, path: string, tar: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.socketPath,
          method: "PUT",
          path: `${API}/containers/${id}/archive?path=${encodeURIComponent(path)}`,
          headers: { "content-type": "application/x-tar", "content-length": tar.length },
        },
        (res) => {
          let text = "";
          res.on("data", (c: Buffer) => (text += c.toString()));
          res.on("end", () => ((res.statusCode ?? 0) >= 400 ? reject(new DockerApiError(res.statusCode ?? 0, `PUT archive into ${id}: ${res.statusCode} ${text.trim()}`)) : resolve()));
        },
      );
      req.on("error", reject);
      req.end(tar);
    });
  }

  /** Container logs (stdout and stderr demultiplexed). */
  async logs(id: string): Promise<{ stdout: string; stderr: string }> {
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const req = http.request({ socketPath: this.socketPath, method: "GET", path: `${API}/containers/${id}/logs?stdout=1&stderr=1` }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve(Buffer.concat(chunks)));
      });
      req.on("error", reject);
      req.end();
    });
    // Non-TTY logs are framed: 1 byte stream, 3 padding, 4 bytes big-endian length.
    let stdout = "";
    let stderr = "";
    for (let i = 0; i + 8 <= raw.length; ) {
      const stream = raw[i]!;
      const len = raw.readUInt32BE(i + 4);
      const chunk = raw.subarray(i + 8, i + 8 + len).toString("utf8");
      if (stream === 2) stderr += chunk;
      else stdout += chunk;
      i += 8 + len;
    }
    return { stdout, stderr };
  }
}
