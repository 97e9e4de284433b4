/**
 * The one place that knows the native TUN addon (native/tun.cc): its typed interface and how it
 * is found, from `src/` (tests run TypeScript directly) and from `dist/` alike.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface NativeOpenOptions {
  name: string;
  /** 0 in attach mode keeps the device's MTU. */
  mtu: number;
  attach: boolean;
  netns?: string;
  batchSize: number;
}

/** A batch: `lengths[i]` is packet i's size; packets follow the lengths, back to back, in `slab`. */
export type NativeBatchCallback = (slab: ArrayBuffer, lengths: Uint32Array) => void;

/** What `open` and the reader throw or report: a Node-style system error. */
export interface NativeError extends Error {
  code?: string;
  errno?: number;
  syscall?: string;
  path?: string;
}

export interface NativeTun {
  readonly name: string;
  readonly mtu: number;
  readonly batchSize: number;
  readonly closed: boolean;
  readonly readErrors: number;
  /** Reads that filled a whole slot (MTU + headroom): the MTU was raised behind our back. */
  readonly truncated: number;
  /** One packet; bytes written, or a negative errno (never throws for I/O). */
  write(packet: Uint8Array): number;
  /** Stops reading and closes the fd; idempotent. */
  close(): void;
}

export interface TunAddon {
  open(
    options: NativeOpenOptions,
    onBatch: NativeBatchCallback,
    onError?: (error: NativeError) => void,
  ): NativeTun;
  /** Bytes beyond the MTU in each read buffer. */
  readonly headroom: number;
  /** malloc_trim(0): returns the allocator's free memory to the kernel; whether any was. */
  trimMemory(): boolean;
}

export const ADDON_RELATIVE_PATH = "native/build/Release/icmpfwd_tun.node";

/** The package root: the nearest folder above this file that holds a package.json. */
export function packageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from;
  for (;;) {
    if (existsSync(join(dir, "package.json"))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${from}`);
    dir = parent;
  }
}

let cached: TunAddon | null = null;

/** Loads the addon once; throws the loader's error (the caller maps it to `addonMissing`). */
export function loadTunAddon(): TunAddon {
  if (cached === null) {
    const path = join(packageRoot(), ADDON_RELATIVE_PATH);
    cached = createRequire(import.meta.url)(path) as TunAddon;
  }
  return cached;
}
