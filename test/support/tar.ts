/**
 * Test support: a tar archive built byte by byte (ustar headers), so a test can hand an unpacker
 * members no well-behaved tar would write: '../' names, absolute names, a file under a symlink.
 */
export interface TarMember {
  name: string;
  type?: "file" | "symlink" | "dir";
  linkname?: string;
  content?: string;
}

export function tarArchive(members: TarMember[]): Buffer {
  const blocks: Buffer[] = [];
  const octal = (n: number, width: number) => `${n.toString(8).padStart(width - 1, "0")}\0`;
  for (const m of members) {
    const body = Buffer.from(m.type === "file" || m.type === undefined ? (m.content ?? "") : "");
    const h = Buffer.alloc(512);
    h.write(m.name, 0, 100, "utf8");
    h.write(octal(m.type === "dir" ? 0o755 : 0o644, 8), 100);
    h.write(octal(0, 8), 108);
    h.write(octal(0, 8), 116);
    h.write(octal(body.length, 12), 124);
    h.write(octal(Math.floor(Date.now() / 1000), 12), 136);
    h.write(" ".repeat(8), 148);
    h.write({ file: "0", symlink: "2", dir: "5" }[m.type ?? "file"], 156);
    if (m.linkname) h.write(m.linkname, 157, 100, "utf8");
    h.write("ustar\0", 257);
    h.write("00", 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
    blocks.push(h, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}
