import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkOne, dispositions, fuzzStack, packetArbitrary } from "../../fuzz/receive-path.js";

describe("the receive path under random and mutated packets (10⁴ cases)", () => {
  it("never throws and ends every packet in exactly one disposition", () => {
    const t = fuzzStack();
    fc.assert(
      fc.property(packetArbitrary(), (p) => {
        checkOne(t, p);
      }),
      { numRuns: 10_000 },
    );
    expect(dispositions(t.stack.stats)).toBe(t.stack.stats.nic.packetsReceived);
  });
});
