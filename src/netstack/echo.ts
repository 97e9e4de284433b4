import { type PacketBuffer, type ReplyHook, replyHookSlot } from "./buffer.js";
import type { ProtocolStack } from "./protocol.js";
import { Decision, type TransportEndpointID } from "./transport.js";

/**
 * The built-in Echo Reply of one request, lent to the transport layer while the request is
 * being delivered. It runs at most once, whoever asks: the handler through reply(), or the
 * network endpoint's fallback afterwards.
 */
export class BuiltInEchoReply implements ReplyHook {
  private state: "pending" | "ran" | "expired" = "pending";

  constructor(private readonly send: () => void) {}

  /** Idempotent; true once the built-in path ran for this request, false after it ended. */
  reply(): boolean {
    if (this.state === "pending") {
      this.state = "ran";
      this.send();
    }
    return this.state === "ran";
  }

  get ran(): boolean {
    return this.state === "ran";
  }

  /** Ends the request; returns whether the built-in path already ran. */
  expire(): boolean {
    if (this.state === "pending") this.state = "expired";
    return this.state === "ran";
  }

  /** The network endpoint's fallback: sends unless reply() already did. */
  sendFallback(): void {
    if (this.state !== "ran") {
      this.state = "ran";
      this.send();
    }
  }
}

/**
 * Delivers an Echo Request to the transport layer with the reply hook attached, then applies
 * the decision table: the fallback reply is sent unless reply() already ran, the
 * handler consumed the request, or `suppressFallback` (IPv4 temporary address) holds.
 */
export function deliverEchoRequest(
  stack: ProtocolStack,
  pkt: PacketBuffer,
  id: TransportEndpointID,
  reply: BuiltInEchoReply,
  suppressFallback: boolean,
): void {
  pkt[replyHookSlot] = reply;
  const finish = (consumed: boolean): void => {
    pkt[replyHookSlot] = null;
    const ran = reply.expire();
    if (!ran && !consumed && !suppressFallback) reply.sendFallback();
  };
  const result = stack.deliverTransportPacket(pkt, id);
  if (typeof result === "boolean") finish(result);
  else if (result instanceof Decision) result.onSettled(finish);
  else void result.then(finish);
}
