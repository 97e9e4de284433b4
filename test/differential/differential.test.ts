/**
 * The differential test: 200 seeded inputs fed byte for byte to icmpfwd's Stack and to gVisor's
 * netstack (Debian's snapshot, test/differential/gvisor-peer), outputs compared after
 * normalizing only what is fresh by design; every difference must be one of known.ts.
 * `npm run conformance` runs 3 seeds × 3,000 (scripts/differential.ts).
 * Needs Go and golang-gvisor-gvisor-dev: skipped without them, a failure under CI=true.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inCI } from "../helpers/netns.js";
import { generate } from "./generator.js";
import { buildPeer, GvisorPeer, peerPrerequisite } from "./peer.js";
import { differentialRun, formatUnknown, MemoryStacks } from "./run.js";

const prereq = peerPrerequisite();
if (!prereq.ok && inCI)
  throw new Error(`differential test: missing prerequisite in CI: ${prereq.reason}`);
const suite = prereq.ok ? describe : describe.skip;
const title = prereq.ok
  ? "differential: icmpfwd vs gVisor netstack"
  : `differential: icmpfwd vs gVisor netstack (skipped: ${prereq.reason})`;

suite(title, () => {
  let peer: GvisorPeer;
  let stacks: MemoryStacks;
  beforeAll(() => {
    peer = new GvisorPeer(buildPeer());
    stacks = new MemoryStacks(peer);
  }, 120_000);
  afterAll(async () => {
    await peer?.close();
  });

  it("200 inputs of seed 1: every difference is a known one", async () => {
    const r = await differentialRun(stacks, 1, 200);
    expect(r.unknown.size, formatUnknown(r)).toBe(0);
    // Most inputs agree byte for byte; the known differences are the exception.
    expect(r.same).toBeGreaterThan(180);
  }, 60_000);

  it("the same seed gives the same inputs and the same outcome", async () => {
    for (let i = 0; i < 50; i++) expect(generate(7, i)).toEqual(generate(7, i));
    expect(generate(7, 0)).not.toEqual(generate(8, 0));
    const a = await differentialRun(stacks, 7, 50);
    const b = await differentialRun(stacks, 7, 50);
    expect([a.same, [...a.known]]).toEqual([b.same, [...b.known]]);
  }, 60_000);
});
