/**
 * Clients that hold a stream without using it: one that never says Hello is ended
 * DEADLINE_EXCEEDED after the Hello timeout; one that never reads (HTTP/2 flow control: no
 * WINDOW_UPDATE) is ended RESOURCE_EXHAUSTED once its stream has stayed full for the write-stall
 * bound, and its in-flight requests get on-disconnect.
 */
import http2 from "node:http2";
import { describe, expect, it } from "vitest";
import { resolveConfig } from "../../../src/config.js";
import { ClientMessage, Mode } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { DEFAULT_LIMITS } from "../../../src/service/index.js";
import { sleep, waitFor } from "../../helpers/netns.js";
import { v4Echo } from "../../helpers/packets.js";
import { grpcFrame, type Harness, outcomes, pausedConnect, serviceTests, tick } from "./harness.js";

const t = serviceTests();
let h: Harness;

describe("the Hello timeout", () => {
  it("is 10 s by default (--hello-timeout, 100 ms to 10 min)", () => {
    expect(resolveConfig({}).helloTimeout).toBe(10_000);
    expect(resolveConfig({ helloTimeout: 100 }).helloTimeout).toBe(100);
    expect(resolveConfig({ helloTimeout: 600_000 }).helloTimeout).toBe(600_000);
    expect(() => resolveConfig({ helloTimeout: 99 })).toThrow(/helloTimeout \(--hello-timeout/);
    expect(() => resolveConfig({ helloTimeout: 600_001 })).toThrow(/helloTimeout/);
  });

  it("a stream without Hello ends DEADLINE_EXCEEDED after it; one with Hello stays", async () => {
    h = await t.start({ helloTimeoutMs: 300 });
    const silent = t.raw();
    const started = performance.now();
    const greeted = await t.connect();
    const s = await silent.until(() => silent.status, "the status", 3000);
    const took = performance.now() - started;
    expect(s.code).toBe(4);
    expect(s.details).toBe("no Hello came within 300 ms");
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(1500);
    await sleep(400);
    expect(greeted.status).toBeNull();
    expect(h.service.dispatcher.sessions).toHaveLength(1);
  });
});

/** A raw HTTP/2 client that says Hello and then never reads (no WINDOW_UPDATE goes back). */
async function neverReading() {
  const raw = pausedConnect(h.service.address, 65_535);
  const { session, st } = raw;
  const hello = ClientMessage.encode({
    message: {
      $case: "hello",
      value: {
        protocolVersion: 1,
        clientName: "never-reads",
        mode: Mode.MODE_DECIDE,
        filter: undefined,
        maxInFlight: 65_536,
        payloadBytes: 1024,
      },
    },
  }).finish();
  st.write(grpcFrame(hello));
  const d = h.service.dispatcher;
  await waitFor(() => d.sessions.length === 1, { what: "the session" });
  const slot = d.sessions[0];
  // Requests with 1 KiB payloads until the stream is full, then 200 more (bounded).
  const payload = new Uint8Array(1024);
  let stalledAt = 0;
  let afterStall = 0;
  for (let i = 0; i < 4000 && afterStall < 200; i++) {
    h.link.inject(v4Echo({ ident: i >> 8, sequence: i & 0xff, payload }));
    if (i % 16 === 15) await tick();
    if (stalledAt === 0 && !slot.writable) stalledAt = performance.now();
    if (stalledAt !== 0) afterStall++;
  }
  expect(stalledAt).toBeGreaterThan(0);
  const heldAtStall = slot.inFlight;
  expect(heldAtStall).toBeGreaterThan(0);
  expect(d.pendingCount).toBe(heldAtStall);
  await waitFor(() => d.sessions.length === 0, { what: "the cut", timeoutMs: STALL_MS + 3000 });
  const cutAt = performance.now();
  return { session, st, got: raw, stalledAt, cutAt, heldAtStall };
}

const STALL_MS = DEFAULT_LIMITS.writeStallMs;

describe("a client that never reads", () => {
  it("stops reading at the HTTP/2 level: within the write-stall bound its stream ends RESOURCE_EXHAUSTED, its in-flight requests get on-disconnect, every request one outcome", async () => {
    expect(STALL_MS).toBe(2000);
    // A deadline longer than the bound: what it holds is still in flight when it is cut.
    h = await t.start({ deadlineMs: 10_000 });
    const before = process.memoryUsage().rss;
    const { session, st, got, stalledAt, cutAt, heldAtStall } = await neverReading();
    const cutAfter = cutAt - stalledAt;
    expect(cutAfter).toBeGreaterThanOrEqual(STALL_MS - 50);
    expect(cutAfter).toBeLessThan(STALL_MS + 1000);
    // Every request held by the session: on-disconnect; the rest: overload; one outcome each.
    expect(h.counter("service.outcomes.fallthrough.disconnect")).toBe(heldAtStall);
    expect(outcomes(h, null, "timeout")).toBe(0);
    expect(outcomes(h, null, "overload")).toBe(h.counter("service.requests") - heldAtStall);
    expect(outcomes(h, null, null)).toBe(h.counter("service.requests"));
    expect(h.service.dispatcher.pendingCount).toBe(0);
    const growth = process.memoryUsage().rss - before;
    // Reading again (before the reset): what was queued, then the status.
    st.resume();
    await waitFor(() => got.trailers !== null, { what: "the trailers", timeoutMs: 5000 });
    session.destroy();
    const tr = got.trailers as unknown as http2.IncomingHttpHeaders;
    expect(tr["grpc-status"]).toBe("8");
    expect(decodeURIComponent(String(tr["grpc-message"]))).toBe(
      `the client does not read its stream: it stayed full for ${STALL_MS} ms`,
    );
    const events = got.messages.reduce(
      (n, m) => n + (m.message?.$case === "requests" ? m.message.value.requests.length : 0),
      0,
    );
    // It was sent no more than it held (the events of requests that got on-disconnect).
    expect(events).toBeLessThanOrEqual(heldAtStall);
    console.log(
      `never-reading client: ${heldAtStall} in flight at the stall, cut ${Math.round(cutAfter)} ms after it, ${events} events queued, RSS +${(growth / 2 ** 20).toFixed(1)} MiB`,
    );
  });

  it("never reading at all: one more bound after the cut, the stream is reset ENHANCE_YOUR_CALM (RESOURCE_EXHAUSTED to gRPC clients), freeing its queue", async () => {
    h = await t.start({ deadlineMs: 10_000 });
    const { session, st, got, cutAt, heldAtStall } = await neverReading();
    expect(h.counter("service.outcomes.fallthrough.disconnect")).toBe(heldAtStall);
    await waitFor(() => got.closedAt !== 0, { what: "the reset", timeoutMs: STALL_MS + 3000 });
    session.destroy();
    expect(st.rstCode).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(got.trailers).toBeNull();
    const resetAfter = got.closedAt - cutAt;
    expect(resetAfter).toBeGreaterThanOrEqual(STALL_MS - 100);
    expect(resetAfter).toBeLessThan(STALL_MS + 1000);
    expect(outcomes(h, null, null)).toBe(h.counter("service.requests"));
  });
});
