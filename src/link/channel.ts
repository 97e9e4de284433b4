import type { LinkEndpoint, LinkWriteError, NetworkDispatcher } from "../netstack/link-endpoint.js";

/**
 * An in-memory link endpoint (gVisor's channel.Endpoint): tests inject packets as if they came
 * off the wire and read what the stack wrote. For unit tests and benchmarks, never a substitute
 * for the TUN in end-to-end tests.
 */
export class ChannelEndpoint implements LinkEndpoint {
  private dispatcher: NetworkDispatcher | null = null;
  private readonly outbound: Uint8Array[] = [];
  private closed = false;
  /** Called for every written packet, after it is queued (for benchmarks and async waits). */
  onWrite: ((packet: Uint8Array) => void) | null = null;

  constructor(
    readonly mtu = 1500,
    private readonly capacity = 1 << 16,
  ) {}

  attach(dispatcher: NetworkDispatcher | null): void {
    this.dispatcher = dispatcher;
  }

  /** Delivers packets to the attached stack as one batch; returns false when detached or closed. */
  inject(...packets: Uint8Array[]): boolean {
    if (this.closed || this.dispatcher === null) return false;
    this.dispatcher.deliverNetworkPackets(packets);
    return true;
  }

  writePacket(packet: Uint8Array): LinkWriteError | null {
    if (this.closed) return { kind: "closed", message: "channel endpoint is closed" };
    if (packet.length > this.mtu) {
      return {
        kind: "tooBig",
        message: `packet of ${packet.length} bytes exceeds MTU ${this.mtu}`,
      };
    }
    if (this.outbound.length >= this.capacity) {
      return { kind: "wouldBlock", message: "channel endpoint queue is full" };
    }
    this.outbound.push(packet);
    this.onWrite?.(packet);
    return null;
  }

  /** Removes and returns the oldest written packet, or undefined. */
  read(): Uint8Array | undefined {
    return this.outbound.shift();
  }

  /** Removes and returns every written packet. */
  drain(): Uint8Array[] {
    return this.outbound.splice(0, this.outbound.length);
  }

  get pending(): number {
    return this.outbound.length;
  }

  close(): void {
    this.closed = true;
    this.dispatcher = null;
  }
}
