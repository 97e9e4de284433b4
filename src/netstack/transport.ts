import type { Address } from "./address.js";
import type { PacketBuffer } from "./buffer.js";

/**
 * A transport endpoint's identity (gVisor's stack.TransportEndpointID). For ICMP Echo:
 * localAddress = IP destination, localPort = ICMP ident, remoteAddress = IP source,
 * remotePort = 0.
 */
export interface TransportEndpointID {
  readonly localPort: number;
  readonly localAddress: Address;
  readonly remotePort: number;
  readonly remoteAddress: Address;
}

/**
 * An answer that arrives later, by callback: the promise-free form of an async handler's
 * result for hot paths (one object, no microtask chain). Settles once; a callback registered
 * after settling is called at once.
 */
export class Decision {
  private value: boolean | null = null;
  // The usual single waiter needs no array.
  private first: ((consumed: boolean) => void) | null = null;
  private rest: ((consumed: boolean) => void)[] | null = null;

  /** Gives the answer (true = consumed); later calls do nothing. */
  settle(consumed: boolean): void {
    if (this.value !== null) return;
    this.value = consumed;
    const first = this.first;
    const rest = this.rest;
    this.first = null;
    this.rest = null;
    if (first !== null) first(consumed);
    if (rest !== null) for (const cb of rest) cb(consumed);
  }

  /** Registers a callback for the answer, in order; called at once if already settled. */
  onSettled(callback: (consumed: boolean) => void): void {
    if (this.value !== null) callback(this.value);
    else if (this.first === null) this.first = callback;
    else if (this.rest === null) this.rest = [callback];
    else this.rest.push(callback);
  }

  get settled(): boolean {
    return this.value !== null;
  }
}

/** What a handler answers: now, by promise, or by Decision. */
export type HandlerResult = boolean | Promise<boolean> | Decision;

/**
 * A protocol's default handler (gVisor's SetTransportProtocolHandler): true = the handler
 * consumed the packet; false = the protocol's fallback continues. `id` is the handler's own: a
 * fresh object whose addresses are copies (gVisor's TransportEndpointID holds values), so it
 * stays valid after the packet is gone or rewritten into its reply. A promise or a Decision holds
 * the packet until it settles (a TypeScript addition; a rejected promise counts as false).
 */
export type TransportProtocolHandler = (
  id: TransportEndpointID,
  pkt: PacketBuffer,
) => HandlerResult;

/** The outcome of delivering a packet to the transport layer (promises here never reject). */
export type DeliveryResult = HandlerResult;
