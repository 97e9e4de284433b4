/**
 * The ICMP socket addon (native/icmp_socket.cc, built by the package's install script): its
 * typed interface and how it is found, from `src/` (tests run TypeScript directly) and `dist/`.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * One received message. `errorType` is -1 for an ordinary one (raw IPv4: with its IP header).
 * Otherwise it came from a datagram socket's error queue: `from` (the offender) sent an ICMP
 * error of this type and code about one of our requests, and `data` is that request's ICMP part.
 */
export type IcmpMessageCallback = (
  data: Uint8Array,
  from: string,
  errorType: number,
  errorCode: number,
) => void;

export interface IcmpSocket {
  readonly closed: boolean;
  /** One ICMP message to `destination` with this TTL / hop limit; throws the errno (`code`). */
  send(data: Uint8Array, destination: string, ttl: number): void;
  /** Stops reading and closes the fd; idempotent. */
  close(): void;
}

export interface IcmpAddon {
  /**
   * Raw (CAP_NET_RAW) or datagram (the kernel's unprivileged ping sockets, which queue the
   * routers' errors about our requests in the error queue). Throws the errno (`code`, `syscall`).
   */
  open(family: 4 | 6, raw: boolean, onMessage: IcmpMessageCallback): IcmpSocket;
}

/** A system error from the addon. */
export interface IcmpError extends Error {
  code?: string;
  syscall?: string;
}

export const ICMP_ADDON_RELATIVE_PATH = "native/build/Release/icmpfwd_icmp.node";

/** What `icmpfwd-policy relay` says when the addon was not built at install. */
export class IcmpAddonMissing extends Error {
  constructor(cause: unknown) {
    super(
      `the ICMP socket addon is not built (${cause instanceof Error ? cause.message.split("\n")[0] : String(cause)}): apt-get install -y build-essential python3, then npm rebuild @icmpfwd/client`,
    );
    this.name = "IcmpAddonMissing";
  }
}

/** The package root: the nearest folder above this file that holds a package.json. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error("no package.json above the client library");
    dir = parent;
  }
  return dir;
}

let cached: IcmpAddon | null = null;

/** Loads the addon once; throws IcmpAddonMissing when it is not there. */
export function loadIcmpAddon(): IcmpAddon {
  if (cached === null) {
    try {
      cached = createRequire(import.meta.url)(
        join(packageRoot(), ICMP_ADDON_RELATIVE_PATH),
      ) as IcmpAddon;
    } catch (e) {
      throw new IcmpAddonMissing(e);
    }
  }
  return cached;
}
