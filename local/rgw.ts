/**
 * Clients for a Ceph RGW endpoint: S3 (@aws-sdk/client-s3), and the two interfaces RGW has where
 * MinIO has its admin API: the admin ops REST API (/admin/user, /admin/bucket) and the IAM API
 * (inline user policies). Requests are signed with SigV4 by @smithy/signature-v4, the signer the
 * AWS SDK itself uses.
 */
import { createHash, createHmac, type Hash, type Hmac } from "node:crypto";
import { S3Client } from "@aws-sdk/client-s3";
import { SignatureV4 } from "@smithy/signature-v4";

export interface S3Connection {
  /** http(s)://host:port */
  endpoint: string;
  region: string;
  accessKey: string;
  secretKey: string;
}

type SourceData = string | ArrayBuffer | ArrayBufferView;
const bytes = (d: SourceData): string | Uint8Array =>
  typeof d === "string" ? d : d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

class Sha256 {
  private h: Hash | Hmac;
  private readonly secret?: string | Uint8Array;
  constructor(secret?: SourceData) {
    this.secret = secret === undefined ? undefined : bytes(secret);
    this.h = this.secret ? createHmac("sha256", this.secret) : createHash("sha256");
  }
  update(data: SourceData): void {
    this.h.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest());
  }
  reset(): void {
    this.h = this.secret ? createHmac("sha256", this.secret) : createHash("sha256");
  }
}

export function s3Client(c: S3Connection): S3Client {
  return new S3Client({
    endpoint: c.endpoint,
    region: c.region,
    forcePathStyle: true,
    credentials: { accessKeyId: c.accessKey, secretAccessKey: c.secretKey },
  });
}

export class RgwError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "RgwError";
  }
}

async function signedFetch(
  c: S3Connection,
  service: string,
  method: string,
  path: string,
  query: Record<string, string>,
  body?: string,
  contentType?: string,
): Promise<{ status: number; text: string }> {
  const url = new URL(c.endpoint);
  const signer = new SignatureV4({
    service,
    region: c.region,
    credentials: { accessKeyId: c.accessKey, secretAccessKey: c.secretKey },
    sha256: Sha256,
  });
  // RGW authenticates a SigV4 request with a body only when it names the payload's hash.
  const headers: Record<string, string> = { host: url.host, "x-amz-content-sha256": createHash("sha256").update(body ?? "").digest("hex") };
  if (contentType) headers["content-type"] = contentType;
  const signed = await signer.sign({
    method,
    protocol: url.protocol,
    hostname: url.hostname,
    port: url.port ? Number(url.port) : undefined,
    path,
    query,
    headers,
    body,
  });
  const qs = new URLSearchParams(query).toString().replace(/=(&|$)/g, "$1");
  const res = await fetch(`${url.origin}${path}${qs ? `?${qs}` : ""}`, {
    method,
    headers: signed.headers as Record<string, string>,
    body,
  });
  return { status: res.status, text: await res.text() };
}

function errorOf(status: number, text: string, what: string): RgwError {
  const code = /"Code"\s*:\s*"([^"]+)"/.exec(text)?.[1] ?? /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? String(status);
  return new RgwError(status, code, `${what}: ${status} ${code}`);
}

/** RGW admin ops API (the admin user needs users=* and buckets=* caps). */
export async function rgwAdmin<T = unknown>(c: S3Connection, method: string, resource: "user" | "bucket", query: Record<string, string>, body?: unknown): Promise<T> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const r = await signedFetch(c, "s3", method, `/admin/${resource}`, { ...query, format: "json" }, payload, payload ? "application/json" : undefined);
  if (r.status >= 300) throw errorOf(r.status, r.text, `RGW admin ${method} /admin/${resource}`);
  return (r.text ? JSON.parse(r.text) : undefined) as T;
}

/** RGW IAM API (form-encoded Action=..., answered in XML). */
export async function rgwIam(c: S3Connection, action: string, params: Record<string, string>): Promise<string> {
  const body = new URLSearchParams({ Action: action, Version: "2010-05-08", ...params }).toString();
  const r = await signedFetch(c, "iam", "POST", "/", {}, body, "application/x-www-form-urlencoded");
  if (r.status >= 300) throw errorOf(r.status, r.text, `RGW IAM ${action}`);
  return r.text;
}
