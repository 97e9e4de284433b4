/**
 * A fixed traceparent as the service's traces write theirs into events (for fakes of
 * RequestTelemetry): `text` must be a W3C version-00 traceparent, 55 ASCII characters.
 */
import { TRACEPARENT_LENGTH } from "../../src/service/request-telemetry.js";

export function traceparentWriter(text: string): (into: Uint8Array, at: number) => number {
  if (text.length !== TRACEPARENT_LENGTH) throw new Error(`not a traceparent: ${text}`);
  const bytes = Buffer.from(text, "latin1");
  return (into, at) => {
    into.set(bytes, at);
    return at + bytes.length;
  };
}

/**
 * The traceparent a trace writes into an event, written at an offset into a larger buffer:
 * it must return the offset after the 55 characters and leave the bytes around them alone.
 */
export function traceparentText(t: {
  writeTraceparent(into: Uint8Array, at: number): number;
}): string {
  const b = Buffer.alloc(TRACEPARENT_LENGTH + 10, 0x2a);
  const end = t.writeTraceparent(b, 5);
  if (end !== 5 + TRACEPARENT_LENGTH) throw new Error(`wrote up to ${end}`);
  if ([...b.subarray(0, 5), ...b.subarray(end)].some((x) => x !== 0x2a))
    throw new Error("wrote outside its 55 bytes");
  return b.toString("latin1", 5, end);
}
