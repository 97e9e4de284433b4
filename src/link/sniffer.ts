/**
 * A link endpoint that records traffic to a pcapng file and otherwise passes it through
 * (gVisor's sniffer.Endpoint). Wrap the real link with it: every packet the link delivers up is
 * recorded as inbound before the stack sees it, every packet the link accepts for writing as
 * outbound.
 */
import type { LinkEndpoint, LinkWriteError, NetworkDispatcher } from "../netstack/link-endpoint.js";
import { PcapngWriter, type PcapngWriterOptions } from "./pcapng.js";

/** Wall-clock time in nanoseconds since the Unix epoch, with the monotonic clock's resolution. */
export type NanoClock = () => bigint;

function defaultClock(): NanoClock {
  // Anchored once: Date.now() alone has only millisecond resolution.
  const base = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
  return () => base + process.hrtime.bigint();
}

export class SnifferEndpoint implements LinkEndpoint {
  private closed = false;

  constructor(
    private readonly inner: LinkEndpoint,
    private readonly writer: PcapngWriter,
    private readonly now: NanoClock = defaultClock(),
  ) {}

  /** Wraps `inner`, recording into a new pcapng file at `path`. */
  static open(
    inner: LinkEndpoint,
    path: string,
    options: PcapngWriterOptions = {},
  ): SnifferEndpoint {
    return new SnifferEndpoint(inner, PcapngWriter.open(path, options));
  }

  /** The capture's first I/O error; recording stops there while traffic keeps flowing. */
  get captureError(): Error | null {
    return this.writer.error;
  }

  get mtu(): number {
    return this.inner.mtu;
  }

  attach(dispatcher: NetworkDispatcher | null): void {
    if (dispatcher === null) {
      this.inner.attach(null);
      return;
    }
    this.inner.attach({
      deliverNetworkPackets: (packets: readonly Uint8Array[]): void => {
        // Recorded first: once delivered, the stack owns the bytes and may rewrite them.
        const t = this.now();
        for (const p of packets) this.writer.writePacket(p, "inbound", t);
        dispatcher.deliverNetworkPackets(packets);
      },
    });
  }

  writePacket(packet: Uint8Array): LinkWriteError | null {
    const err = this.inner.writePacket(packet);
    if (err === null) this.writer.writePacket(packet, "outbound", this.now());
    return err;
  }

  /** Closes the wrapped endpoint, then flushes and closes the capture; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.inner.close();
    this.writer.close();
  }
}
