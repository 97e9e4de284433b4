/**
 * Who is on the other end of a loopback TCP connection: the uid that owns the client's socket,
 * read from the kernel's socket table (/proc/net/tcp and tcp6, the way identd answers). Both
 * ends live in this network namespace, so the client's socket is listed there with the peer's
 * address and port as its local end and ours as its remote end.
 */
import { readFileSync } from "node:fs";
import { isIPv4, isIPv6 } from "node:net";
import { endianness } from "node:os";

export interface ConnectionEnds {
  remoteAddress?: string;
  remotePort?: number;
  localAddress?: string;
  localPort?: number;
}

const LITTLE_ENDIAN = endianness() === "LE";

/** One 32-bit word as the kernel prints it (%08X of the word in host byte order). */
function word(b: readonly number[]): string {
  const bytes = LITTLE_ENDIAN ? [b[3], b[2], b[1], b[0]] : b;
  return bytes
    .map((x) => x.toString(16).padStart(2, "0"))
    .join("")
    .toUpperCase();
}

function ipv4Bytes(a: string): number[] {
  return a.split(".").map(Number);
}

/** The 16 bytes of an IPv6 address (an embedded IPv4 tail included). */
function ipv6Bytes(a: string): number[] {
  let text = a;
  let tail: number[] = [];
  const v4 = /:(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4 !== null) {
    tail = ipv4Bytes(v4[1]);
    text = `${text.slice(0, v4.index)}:0:0`;
  }
  const [head, rest] = text.includes("::") ? text.split("::") : [text, null];
  const groups = (s: string): number[] =>
    s === "" ? [] : s.split(":").map((g) => Number.parseInt(g, 16));
  const h = groups(head);
  const r = rest === null ? [] : groups(rest);
  const all = [...h, ...new Array(8 - h.length - r.length).fill(0), ...r];
  const out = all.flatMap((g) => [g >> 8, g & 0xff]);
  if (tail.length === 4) out.splice(12, 4, ...tail);
  return out;
}

/** An address and port as /proc/net/tcp (4 bytes) or tcp6 (16 bytes) prints them; null: not that family. */
function procEndpoint(address: string, port: number, table: 4 | 6): string | null {
  const p = port.toString(16).padStart(4, "0").toUpperCase();
  if (table === 4) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    const v4 = mapped !== null ? mapped[1] : isIPv4(address) ? address : null;
    return v4 === null ? null : `${word(ipv4Bytes(v4))}:${p}`;
  }
  const bytes = isIPv6(address)
    ? ipv6Bytes(address)
    : isIPv4(address)
      ? [...new Array(10).fill(0), 0xff, 0xff, ...ipv4Bytes(address)]
      : null;
  if (bytes === null) return null;
  let hex = "";
  for (let i = 0; i < 16; i += 4) hex += word(bytes.slice(i, i + 4));
  return `${hex}:${p}`;
}

/** The uid owning the client end of the connection, or null when it is not in the table. */
export function peerUid(
  c: ConnectionEnds,
  read: (path: string) => string = (path) => readFileSync(path, "utf8"),
): number | null {
  if (c.remoteAddress === undefined || c.remotePort === undefined) return null;
  if (c.localAddress === undefined || c.localPort === undefined) return null;
  for (const table of [4, 6] as const) {
    const local = procEndpoint(c.remoteAddress, c.remotePort, table);
    const remote = procEndpoint(c.localAddress, c.localPort, table);
    if (local === null || remote === null) continue;
    let text: string;
    try {
      text = read(table === 4 ? "/proc/net/tcp" : "/proc/net/tcp6");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const f = line.trim().split(/\s+/);
      // sl local rem st queues timer retrnsmt uid …
      if (f.length > 7 && f[1] === local && f[2] === remote) return Number(f[7]);
    }
  }
  return null;
}
