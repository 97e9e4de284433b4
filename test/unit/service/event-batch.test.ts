/** EventBatch (service/wire.ts): no buffer until its first event; batches decode one after another. */
import { describe, expect, it } from "vitest";
import { ServerMessage } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { EventBatch, type EventSource } from "../../../src/service/wire.js";

function event(id: number, payload: number): EventSource {
  return {
    id,
    request: { nicId: () => 1 },
    fields: {
      family: "ipv4",
      source: Uint8Array.of(198, 18, 0, 1),
      destination: Uint8Array.of(198, 18, 0, 2),
      ident: 7,
      sequence: id,
      ttl: 64,
      tos: 0,
      payload: new Uint8Array(payload).fill(id & 0xff),
      payloadLength: payload,
    },
    temporary: false,
    receivedAtMs: 1000,
    deadlineMs: 1100,
    trace: null,
  } as unknown as EventSource;
}

const bufferOf = (b: EventBatch): Buffer => (b as unknown as { buf: Buffer }).buf;

describe("EventBatch", () => {
  it("holds no buffer before its first event nor after take()", () => {
    const b = new EventBatch();
    expect(bufferOf(b).length).toBe(0);
    b.add(event(1, 56), 65535, 1000, 0);
    expect(bufferOf(b).length).toBe(512);
    b.take();
    expect(bufferOf(b).length).toBe(0);
  });

  it("batches taken one after another each decode to their own events", () => {
    const b = new EventBatch(64);
    const ids: number[][] = [];
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 3 + round * 20; i++) b.add(event(round * 100 + i, 200), 65535, 1000, 0);
      const m = ServerMessage.decode(b.take());
      if (m.message?.$case !== "requests") throw new Error("not a batch");
      ids.push(m.message.value.requests.map((r) => Number(r.requestId)));
      expect(m.message.value.requests.every((r) => r.payload.length === 200)).toBe(true);
    }
    expect(ids.map((x) => x.length)).toEqual([3, 23, 43, 63]);
    expect(ids[3][62]).toBe(362);
  });

  it("observer drops alone still make a batch", () => {
    const b = new EventBatch();
    b.drops = 5;
    const m = ServerMessage.decode(b.take());
    if (m.message?.$case !== "requests") throw new Error("not a batch");
    expect(m.message.value.requests).toEqual([]);
    expect(m.message.value.observerDrops).toBe(5n);
  });
});
