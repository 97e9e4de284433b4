/**
 * A minimal pcapng writer (draft-ietf-opsawg-pcapng): one Section Header Block, one Interface
 * Description Block for raw IP packets with nanosecond timestamps, then one Enhanced Packet
 * Block per packet carrying its direction. Little-endian throughout; readers detect the byte
 * order from the SHB magic.
 *
 * Writes are coalesced in a 64 KiB buffer and go out with synchronous `fs.writeSync` calls:
 * ordering stays trivial, `close()` leaves a complete file, and an unref'd timer flushes a
 * partly filled buffer shortly after the last packet so a crash loses at most that moment.
 */
import { closeSync, openSync, writeSync } from "node:fs";

/** LINKTYPE_RAW: each packet begins with an IPv4 or IPv6 header. */
export const LINKTYPE_RAW = 101;

const BLOCK_SHB = 0x0a0d0d0a;
const BLOCK_IDB = 0x00000001;
const BLOCK_EPB = 0x00000006;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

const OPT_END = 0;
const OPT_SHB_USERAPPL = 4;
const OPT_IF_NAME = 2;
const OPT_IF_TSRESOL = 9;
const OPT_EPB_FLAGS = 2;

/** epb_flags bits 0-1: the packet's direction. */
const EPB_FLAG_INBOUND = 1;
const EPB_FLAG_OUTBOUND = 2;

/** if_tsresol 9 = 10^-9 s: timestamps are in nanoseconds. */
const TSRESOL_NANOSECONDS = 9;

const BUFFER_SIZE = 64 * 1024;
const FLUSH_DELAY_MS = 200;

// EPB without packet data: header (28) + epb_flags option (8) + end of options (4) + trailer (4).
const EPB_OVERHEAD = 28 + 8 + 4 + 4;

export type PacketDirection = "inbound" | "outbound";

export interface PcapngWriterOptions {
  /** Recorded as the interface's `if_name`. */
  interfaceName?: string;
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

export class PcapngWriter {
  private readonly buf = Buffer.allocUnsafe(BUFFER_SIZE);
  private used = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private failure: Error | null = null;

  private constructor(
    private readonly fd: number,
    options: PcapngWriterOptions,
  ) {
    this.writeHeaderBlocks(options.interfaceName ?? "icmpfwd");
    this.flush();
    if (this.failure !== null) {
      // Unlike later writes, a capture that cannot even start is the caller's to handle.
      closeSync(fd);
      throw this.failure;
    }
  }

  /** Creates (or truncates) `path` and writes the section and interface headers to it. */
  static open(path: string, options: PcapngWriterOptions = {}): PcapngWriter {
    return new PcapngWriter(openSync(path, "w"), options);
  }

  /**
   * The first I/O error, after which the writer records nothing more. A capture is a
   * diagnostic: a full disk must not take the data path down, so writes never throw.
   */
  get error(): Error | null {
    return this.failure;
  }

  /**
   * Appends one packet. The bytes are copied before this returns, so the caller may reuse or
   * hand on `data` at once. A no-op after `close()` or an I/O error.
   */
  writePacket(data: Uint8Array, direction: PacketDirection, timestampNs: bigint): void {
    if (this.closed || this.failure !== null) return;
    const padded = pad4(data.length);
    const total = EPB_OVERHEAD + padded;
    if (total > BUFFER_SIZE - this.used) this.flush();
    // A block larger than the buffer (a 64 KiB datagram) goes out through its own buffer.
    const out = total > BUFFER_SIZE ? Buffer.alloc(total) : this.buf;
    let o = out === this.buf ? this.used : 0;
    const ts = BigInt.asUintN(64, timestampNs);
    o = out.writeUInt32LE(BLOCK_EPB, o);
    o = out.writeUInt32LE(total, o);
    o = out.writeUInt32LE(0, o); // interface id: the only IDB
    o = out.writeUInt32LE(Number(ts >> 32n), o);
    o = out.writeUInt32LE(Number(ts & 0xffffffffn), o);
    o = out.writeUInt32LE(data.length, o); // captured length: never truncated
    o = out.writeUInt32LE(data.length, o); // original length
    out.set(data, o);
    out.fill(0, o + data.length, o + padded);
    o += padded;
    o = out.writeUInt16LE(OPT_EPB_FLAGS, o);
    o = out.writeUInt16LE(4, o);
    o = out.writeUInt32LE(direction === "inbound" ? EPB_FLAG_INBOUND : EPB_FLAG_OUTBOUND, o);
    o = out.writeUInt32LE(OPT_END, o); // opt_endofopt: code 0, length 0
    o = out.writeUInt32LE(total, o);
    if (out !== this.buf) {
      this.write(out, total);
      return;
    }
    this.used = o;
    if (this.used === BUFFER_SIZE) this.flush();
    else this.armTimer();
  }

  /** Writes out everything buffered so far. */
  flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.used === 0 || this.closed) return;
    this.write(this.buf, this.used);
    this.used = 0;
  }

  /** Flushes and closes the file; idempotent. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    try {
      closeSync(this.fd);
    } catch (err: unknown) {
      this.failure ??= toError(err);
    }
  }

  private write(b: Buffer, length: number): void {
    if (this.failure !== null) return;
    try {
      let done = 0;
      while (done < length) done += writeSync(this.fd, b, done, length - done);
    } catch (err: unknown) {
      this.failure = toError(err);
    }
  }

  private armTimer(): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, FLUSH_DELAY_MS);
    this.timer.unref();
  }

  private writeHeaderBlocks(interfaceName: string): void {
    const b = this.buf;
    // Section Header Block.
    const appl = Buffer.from("icmpfwd", "utf8");
    const shbLength = 24 + 4 + pad4(appl.length) + 4 + 4;
    let o = 0;
    o = b.writeUInt32LE(BLOCK_SHB, o);
    o = b.writeUInt32LE(shbLength, o);
    o = b.writeUInt32LE(BYTE_ORDER_MAGIC, o);
    o = b.writeUInt16LE(1, o); // major version
    o = b.writeUInt16LE(0, o); // minor version
    o = b.writeBigInt64LE(-1n, o); // section length: not specified
    o = writeOption(b, o, OPT_SHB_USERAPPL, appl);
    o = b.writeUInt32LE(OPT_END, o);
    o = b.writeUInt32LE(shbLength, o);
    // Interface Description Block.
    const name = Buffer.from(interfaceName, "utf8");
    const idbLength = 16 + 4 + pad4(name.length) + 4 + 4 + 4 + 4;
    o = b.writeUInt32LE(BLOCK_IDB, o);
    o = b.writeUInt32LE(idbLength, o);
    o = b.writeUInt16LE(LINKTYPE_RAW, o);
    o = b.writeUInt16LE(0, o); // reserved
    o = b.writeUInt32LE(0, o); // snaplen 0: no limit, packets are never truncated
    o = writeOption(b, o, OPT_IF_NAME, name);
    o = writeOption(b, o, OPT_IF_TSRESOL, Uint8Array.of(TSRESOL_NANOSECONDS));
    o = b.writeUInt32LE(OPT_END, o);
    o = b.writeUInt32LE(idbLength, o);
    this.used = o;
  }
}

/** Writes one option (code, length, value padded to 32 bits) and returns the next offset. */
function writeOption(b: Buffer, at: number, code: number, value: Uint8Array): number {
  let o = b.writeUInt16LE(code, at);
  o = b.writeUInt16LE(value.length, o);
  b.set(value, o);
  b.fill(0, o + value.length, o + pad4(value.length));
  return o + pad4(value.length);
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
