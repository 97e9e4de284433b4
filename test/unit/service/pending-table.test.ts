import { describe, expect, it } from "vitest";
import { PendingTable } from "../../../src/service/pending-table.js";

describe("the pending table", () => {
  it("finds every request, also those whose place in the ring was taken", () => {
    const t = new PendingTable<{ id: number }>(1024);
    const old = { id: 5 };
    t.add(old);
    // 1029 has 5's place: it goes to the overflow.
    const clash = { id: 5 + 1024 };
    t.add(clash);
    expect(t.get(5)).toBe(old);
    expect(t.get(1029)).toBe(clash);
    expect(t.size).toBe(2);
    t.delete(old);
    expect(t.get(5)).toBeUndefined();
    expect(t.get(1029)).toBe(clash);
    t.delete(clash);
    t.delete(clash); // twice: a no-op
    expect(t.size).toBe(0);
    expect(t.get(1029)).toBeUndefined();
    expect(t.get(Number.NaN)).toBeUndefined();
  });

  it("agrees with a Map over random adds and deletes", () => {
    const t = new PendingTable<{ id: number }>(2000);
    const m = new Map<number, { id: number }>();
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    let next = 1;
    for (let step = 0; step < 50_000; step++) {
      if (rand(3) !== 0 || m.size === 0) {
        const p = { id: next++ };
        t.add(p);
        m.set(p.id, p);
      } else {
        // Mostly the old ones, sometimes any: some stay long enough to be overtaken.
        const keys = [...m.keys()];
        const id = rand(4) === 0 ? keys[rand(keys.length)] : keys[0];
        t.delete(m.get(id) as { id: number });
        m.delete(id);
      }
      if (step % 997 === 0) {
        expect(t.size).toBe(m.size);
        for (let id = Math.max(1, next - 3000); id < next; id++) expect(t.get(id)).toBe(m.get(id));
      }
    }
  });
});
