import { describe, expect, it } from "vitest";
import type { EchoRequestCopy } from "../../../src/netstack/icmp/synthetic.js";
import type { RequestTrace } from "../../../src/service/request-telemetry.js";
import { SyntheticRecords } from "../../../src/service/synthetic-records.js";
import { traceparentWriter } from "../../helpers/traceparent-writer.js";

function copy(bytes = 64): EchoRequestCopy {
  return {
    nicId: 1,
    family: "ipv4",
    source: Uint8Array.of(198, 18, 0, 1),
    destination: Uint8Array.of(198, 18, 0, 2),
    tos: 0,
    networkHeader: new Uint8Array(0),
    icmp: new Uint8Array(bytes),
    localAddressBroadcast: false,
  };
}

describe("the synthetic-reply store", () => {
  it("evicts the oldest copy still held when full, skipping ones already taken", () => {
    const s = new SyntheticRecords({ windowMs: 10_000, maxRecords: 3, maxBytes: 1 << 20 });
    for (const id of [1, 2, 3]) expect(s.add(id, 0, copy(), 0)).toBe(0);
    s.delete(1); // taken by a synthetic reply
    expect(s.add(4, 0, copy(), 0)).toBe(0);
    expect(s.add(5, 0, copy(), 0)).toBe(1);
    expect(s.get(2, 0)).toBeNull();
    expect([3, 4, 5].map((id) => s.get(id, 0) !== null)).toEqual([true, true, true]);
  });

  it("expires copies at the end of the window, oldest first", () => {
    const s = new SyntheticRecords({ windowMs: 100, maxRecords: 10, maxBytes: 1 << 20 });
    s.add(1, 0, copy(), 0);
    s.add(2, 0, copy(), 50);
    expect(s.get(1, 99)).not.toBeNull();
    expect(s.get(1, 100)).toBeNull();
    expect(s.get(2, 100)).not.toBeNull();
    expect(s.size).toBe(1);
  });

  it("stays bounded by bytes and keeps its accounting exact over many evictions", () => {
    const s = new SyntheticRecords({ windowMs: 1e9, maxRecords: 1000, maxBytes: 64 * 100 });
    let evicted = 0;
    for (let id = 1; id <= 20_000; id++) evicted += s.add(id, 0, copy(64), id);
    expect(s.size).toBe(100);
    expect(s.bytes).toBe(6400);
    expect(evicted).toBe(19_900);
    expect(s.get(20_000, 20_000)).not.toBeNull();
    expect(s.get(19_900, 20_000)).toBeNull();
  });

  it("keeps a sampled request's trace with its copy, and lets it go with the copy", () => {
    const s = new SyntheticRecords({ windowMs: 100, maxRecords: 2, maxBytes: 1 << 20 });
    const traced: RequestTrace = {
      sampled: true,
      writeTraceparent: traceparentWriter(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      ),
    };
    s.add(1, 0, copy(), 10, traced);
    s.add(2, 0, copy(), 20);
    expect(s.trace(1, 20)).toEqual({ trace: traced, consumedAtMs: 10 });
    expect(s.trace(2, 20)).toBeNull(); // unsampled: nothing kept
    s.add(3, 0, copy(), 30); // evicts 1, the oldest
    expect(s.trace(1, 30)).toBeNull();
    // A slot freed by an eviction carries no trace to the request that takes it next.
    expect(s.trace(3, 30)).toBeNull();
    s.add(4, 0, copy(), 40, traced);
    expect(s.trace(4, 139)).not.toBeNull();
    expect(s.trace(4, 140)).toBeNull(); // its window ended
  });
});

describe("the synthetic-reply store's slots", () => {
  it("gives back exact copies (IPv4 and IPv6, IP header and message, inline and long), not views", () => {
    const s = new SyntheticRecords({ windowMs: 1e9, maxRecords: 10, maxBytes: 1 << 20 });
    const v6: EchoRequestCopy = {
      nicId: 7,
      family: "ipv6",
      source: Uint8Array.from({ length: 16 }, (_, i) => i),
      destination: Uint8Array.from({ length: 16 }, (_, i) => 100 + i),
      tos: 0xb8,
      networkHeader: Uint8Array.from({ length: 48 }, (_, i) => 50 + i),
      icmp: Uint8Array.from({ length: 1400 }, (_, i) => i & 0xff),
      localAddressBroadcast: false,
    };
    const v4: EchoRequestCopy = {
      ...copy(40),
      tos: 3,
      networkHeader: Uint8Array.from({ length: 24 }, (_, i) => 0x46 + i),
      icmp: Uint8Array.from({ length: 40 }, (_, i) => 200 - i),
      localAddressBroadcast: true,
    };
    s.add(1, 4, v6, 0);
    s.add(2, 5, v4, 0);
    // The store copied: changing the originals changes nothing held.
    v6.icmp.fill(0);
    v6.networkHeader.fill(0);
    v4.source[0] = 0;
    const r6 = s.get(1, 0);
    const r4 = s.get(2, 0);
    expect(r6?.session).toBe(4);
    expect(r6?.copy).toEqual({
      ...v6,
      networkHeader: Uint8Array.from({ length: 48 }, (_, i) => 50 + i),
      icmp: Uint8Array.from({ length: 1400 }, (_, i) => i & 0xff),
    });
    expect(r4?.session).toBe(5);
    expect(r4?.copy).toEqual({ ...v4, source: Uint8Array.of(198, 18, 0, 1) });
    expect(s.bytes).toBe(1448 + 64);
    s.delete(1);
    expect(s.get(1, 0)).toBeNull();
    expect(s.bytes).toBe(64);
  });

  it("agrees with a plain model over random adds, deletes, expiries and evictions", () => {
    // A deterministic generator, so a failure repeats.
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const limits = { windowMs: 500, maxRecords: 600, maxBytes: 50_000 };
    const s = new SyntheticRecords(limits);
    // The model: records in insertion order.
    let model: { id: number; size: number; at: number }[] = [];
    const bytes = () => model.reduce((a, r) => a + r.size, 0);
    const expireModel = (now: number) => {
      model = model.filter((r) => r.at + limits.windowMs > now);
    };
    let evictions = 0;
    let nextId = 1;
    let now = 0;
    for (let step = 0; step < 20_000; step++) {
      now += rand(3) === 0 ? 1 : 0;
      const op = rand(10);
      if (op < 6) {
        // Ids go out of order a little, as verdicts do.
        const id = nextId + rand(5);
        nextId += 5;
        const size = rand(20) === 0 ? 200 + rand(2000) : 8 + rand(100);
        expireModel(now);
        let evicted = 0;
        let held = bytes();
        while (
          model.length > 0 &&
          (model.length >= limits.maxRecords || held + size > limits.maxBytes)
        ) {
          held -= (model.shift() as { size: number }).size;
          evicted++;
        }
        evictions += evicted;
        model.push({ id, size, at: now });
        const c = copy(size);
        c.icmp[0] = id & 0xff;
        expect(s.add(id, id % 7, c, now)).toBe(evicted);
      } else if (op < 8 && model.length > 0) {
        const r = model[rand(model.length)];
        s.delete(r.id);
        model = model.filter((m) => m !== r);
      } else {
        const id = rand(nextId + 10);
        expireModel(now);
        const m = model.find((r) => r.id === id);
        const got = s.get(id, now);
        expect(got === null).toBe(m === undefined);
        if (m !== undefined && got !== null) {
          expect(got.copy.icmp.length).toBe(m.size);
          expect(got.copy.icmp[0]).toBe(id & 0xff);
          expect(got.session).toBe(id % 7);
        }
      }
      if (step % 1000 === 0) {
        expireModel(now);
        s.expire(now);
        expect(s.size).toBe(model.length);
        expect(s.bytes).toBe(bytes());
      }
    }
    // The bounds were reached often enough to matter.
    expect(evictions).toBeGreaterThan(1000);
  });
});
