import { describe, expect, it } from "vitest";
import type { EchoRequestCopy } from "../../src/netstack/icmp/synthetic.js";
import { SyntheticRecords } from "../../src/service/synthetic-records.js";

function copy(bytes = 64): EchoRequestCopy {
  return {
    nicId: 1,
    family: "ipv4",
    source: Uint8Array.of(198, 18, 0, 1),
    destination: Uint8Array.of(198, 18, 0, 2),
    tos: 0,
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
});
