/**
 * The service's own encoder and decoder agree with the generated code: every event EventBatch
 * writes decodes (ts-proto) to the fields it was given, and every verdict batch reads the same
 * through the fast path as through the generated decoder; no byte string makes either throw.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ClientMessage,
  Family,
  ServerMessage,
  type Verdict,
} from "../../../src/gen/icmpfwd/v1/forwarder.js";
import type { PendingRequest } from "../../../src/service/dispatcher.js";
import {
  decodeClientMessage,
  EventBatch,
  UndecodableMessage,
  Verdicts,
} from "../../../src/service/wire.js";
import { traceparentWriter } from "../../helpers/traceparent-writer.js";

const u16 = fc.integer({ min: 0, max: 0xffff });
const u8 = fc.integer({ min: 0, max: 0xff });

const eventArb = fc.record({
  id: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  v4: fc.boolean(),
  nic: fc.integer({ min: 0, max: 0xffffffff }),
  ident: u16,
  sequence: u16,
  ttl: u8,
  tos: u8,
  temporary: fc.boolean(),
  payload: fc.uint8Array({ maxLength: 300 }),
  payloadBytes: fc.integer({ min: 0, max: 400 }),
  receivedAtMs: fc.double({ min: 0, max: 1e7, noNaN: true }),
  deadline: fc.integer({ min: 1, max: 10_000 }),
  elapsed: fc.double({ min: 0, max: 20_000, noNaN: true }),
  traceparent: fc.option(fc.stringMatching(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/), {
    nil: null,
  }),
});

type EventCase = typeof eventArb extends fc.Arbitrary<infer T> ? T : never;

function pending(e: EventCase): PendingRequest {
  const len = e.v4 ? 4 : 16;
  return {
    id: e.id,
    fields: {
      family: e.v4 ? "ipv4" : "ipv6",
      source: Uint8Array.from({ length: len }, (_, i) => i + 1),
      destination: Uint8Array.from({ length: len }, (_, i) => 200 - i),
      ident: e.ident,
      sequence: e.sequence,
      ttl: e.ttl,
      tos: e.tos,
      payload: e.payload,
      payloadLength: e.payload.length,
    },
    request: { nicId: () => e.nic },
    temporary: e.temporary,
    receivedAtMs: e.receivedAtMs,
    deadlineMs: e.receivedAtMs + e.deadline,
    trace:
      e.traceparent === null
        ? null
        : {
            sampled: e.traceparent.endsWith("1"),
            writeTraceparent: traceparentWriter(e.traceparent),
          },
  } as unknown as PendingRequest;
}

const ms = (t: { seconds: bigint; nanos: number } | undefined) =>
  t === undefined ? 0 : Number(t.seconds) * 1000 + t.nanos / 1e6;

describe("EventBatch", () => {
  it("writes events the generated decoder reads back field for field", () => {
    fc.assert(
      fc.property(
        fc.array(eventArb, { minLength: 1, maxLength: 20 }),
        fc.double({ min: 0, max: 1e12, noNaN: true }),
        (events, wall) => {
          const batch = new EventBatch(64);
          for (const e of events)
            batch.add(pending(e), e.payloadBytes, e.receivedAtMs + e.elapsed, wall);
          expect(batch.count).toBe(events.length);
          const m = ServerMessage.decode(batch.take());
          expect(batch.count).toBe(0);
          if (m.message?.$case !== "requests") throw new Error("not a batch");
          const got = m.message.value.requests;
          expect(got).toHaveLength(events.length);
          got.forEach((r, i) => {
            const e = events[i];
            const p = pending(e);
            expect(r.requestId).toBe(BigInt(e.id));
            expect(r.family).toBe(e.v4 ? Family.FAMILY_IPV4 : Family.FAMILY_IPV6);
            expect([r.nic, r.ident, r.sequence, r.ttl, r.tos]).toEqual([
              e.nic,
              e.ident,
              e.sequence,
              e.ttl,
              e.tos,
            ]);
            expect([...r.source]).toEqual([...p.fields.source]);
            expect([...r.destination]).toEqual([...p.fields.destination]);
            expect(r.localAddressTemporary).toBe(e.temporary);
            expect([...r.payload]).toEqual([...e.payload.subarray(0, e.payloadBytes)]);
            expect(r.payloadLength).toBe(e.payload.length);
            expect(ms(r.receivedAt)).toBeCloseTo(wall + e.receivedAtMs, 3);
            expect(ms(r.deadline)).toBeCloseTo(wall + e.receivedAtMs + e.deadline, 3);
            expect(ms(r.budget)).toBeCloseTo(Math.max(0, e.deadline - e.elapsed), 3);
            expect(r.traceparent).toBe(e.traceparent ?? "");
          });
        },
      ),
      { numRuns: 300 },
    );
  });
});

const verdictArb: fc.Arbitrary<Verdict> = fc.record({
  requestId: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  action: fc.integer({ min: 0, max: 5 }),
  applyToFlowMs: fc.integer({ min: 0, max: 0xffffffff }),
});

function same(a: Verdicts, b: Verdicts): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) {
    expect(a.requestId(i)).toBe(b.requestId(i));
    expect(a.ids[i]).toEqual(b.ids[i]);
    expect(a.actions[i]).toBe(b.actions[i]);
    expect(a.flowMs[i]).toBe(b.flowMs[i]);
  }
}

describe("Verdicts", () => {
  it("reads a verdict batch as the generated decoder does", () => {
    fc.assert(
      fc.property(fc.array(verdictArb, { maxLength: 50 }), (vs) => {
        const bytes = ClientMessage.encode({
          message: { $case: "verdicts", value: { verdicts: vs } },
        }).finish();
        const slow = Verdicts.of(vs);
        const got = decodeClientMessage(bytes);
        if (!(got instanceof Verdicts)) throw new Error("not read as verdicts");
        same(got, slow);
        // Ids below 2^53 take the fast path.
        if (vs.every((v) => v.requestId <= BigInt(Number.MAX_SAFE_INTEGER)))
          expect(Verdicts.read(bytes)).not.toBeNull();
      }),
      { numRuns: 300 },
    );
  });

  it("never throws on arbitrary bytes, and agrees with the generated decoder when it reads them", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          fc.uint8Array({ maxLength: 64 }).map((b) => Uint8Array.from([0x12, b.length, ...b])),
        ),
        (bytes) => {
          const got = decodeClientMessage(bytes);
          const fast = Verdicts.read(bytes);
          if (fast === null) return;
          let slow: ClientMessage;
          try {
            slow = ClientMessage.decode(bytes);
          } catch {
            throw new Error(`fast path read bytes the generated decoder refuses: ${[...bytes]}`);
          }
          if (slow.message?.$case !== "verdicts") throw new Error("fast path misread");
          same(fast, Verdicts.of(slow.message.value.verdicts));
          expect(got).toBeInstanceOf(Verdicts);
        },
      ),
      { numRuns: 2000 },
    );
    expect(decodeClientMessage(Uint8Array.from([0xff, 0xff, 0xff]))).toBeInstanceOf(
      UndecodableMessage,
    );
  });
});
