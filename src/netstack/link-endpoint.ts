/**
 * The boundary between the netstack and a link (as gVisor's stack.LinkEndpoint /
 * stack.NetworkDispatcher). Links are layer-3 here: every packet is a whole IPv4 or IPv6
 * datagram, no link-layer header (a TUN device with IFF_NO_PI).
 */

/** What a link calls to hand received packets up; implemented by the NIC. */
export interface NetworkDispatcher {
  /**
   * A batch of received packets, in arrival order. The link gives up the bytes: the receiver
   * may keep or mutate them (each is a view into memory nobody else writes).
   */
  deliverNetworkPackets(packets: readonly Uint8Array[]): void;
}

/** Why a write did not reach the link. */
export type LinkWriteError =
  | { kind: "closed"; message: string }
  | { kind: "wouldBlock"; message: string }
  | { kind: "tooBig"; message: string }
  | { kind: "io"; message: string };

export interface LinkEndpoint {
  /** Largest IP datagram the link carries, in bytes. */
  readonly mtu: number;
  /** Attaches the receiver (null detaches); packets arriving while detached are dropped. */
  attach(dispatcher: NetworkDispatcher | null): void;
  /** Writes one IP datagram; returns null on success. */
  writePacket(packet: Uint8Array): LinkWriteError | null;
  /** Stops reading and releases the link; idempotent. */
  close(): void;
}
