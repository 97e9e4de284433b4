/**
 * The differential test: 200 seeded inputs fed byte for byte to icmpfwd's Stack and to gVisor's
 * netstack (Debian's snapshot, test/differential/gvisor-peer), outputs compared after
 * normalizing only what is fresh by design; every difference must be one of known.ts.
 * `npm run conformance` runs 3 seeds × 3,000 (scripts/differential.ts), through TUN devices by
 * default; test/e2e/differential-tun.test.ts runs 200 through them. One case per snapshot entry
 * of known.ts checks that it explains its own cause and not a changed answer.
 * Needs Go and golang-gvisor-gvisor-dev: skipped without them, a failure under CI=true.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fragmentV4 } from "../helpers/fragments.js";
import { v4Datagram } from "../helpers/ip-packets.js";
import { inCI } from "../helpers/netns.js";
import { payloadOf, v4Echo, v6Echo } from "../helpers/packets.js";
import { describeAll, hex, normalize } from "./compare.js";
import { generate } from "./generator.js";
import { buildPeer, GvisorPeer, icmpfwdOutput, peerPrerequisite } from "./peer.js";
import { classify, differentialRun, formatUnknown, MemoryStacks } from "./run.js";

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

  /**
   * The outputs of `input` on both stacks, their class, and the class when one byte of gVisor's
   * answer is changed (an entry must explain its cause exactly, not any output).
   */
  async function classes(input: Uint8Array[]): Promise<[string | null, string | null]> {
    const ours = icmpfwdOutput(input);
    const theirs = await peer.feed(input);
    expect(theirs.map(hex)).not.toEqual(ours.map(hex));
    const tampered = theirs.map((p) => p.slice());
    const last = tampered[tampered.length - 1];
    last[last.length - 1] ^= 0x01;
    return [classify(input, ours, theirs), classify(input, ours, tampered)];
  }

  it("subset-fragment: exactly the fragment the snapshot ignores", async () => {
    const d = v4Echo({ payload: payloadOf(40), id: 77 });
    const [a, b, c] = fragmentV4(d, [
      { offset: 0, length: 24 },
      { offset: 8, length: 8, more: true },
      { offset: 24, length: 24 },
    ]);
    expect(await classes([a, b, c])).toEqual(["subset-fragment", null]);
  });

  it("option-30-length: the snapshot's answer is the one to option 29", async () => {
    const input = v4Echo({ options: new Uint8Array([30, 3, 0, 1]) });
    expect(await classes([input])).toEqual(["option-30-length", null]);
  });

  it("v4-mapped-source: the snapshot answers an IPv4-mapped source", async () => {
    const input = v6Echo({ src: "::ffff:198.18.0.1", dst: "fd00:1::2" });
    expect(await classes([input])).toEqual(["v4-mapped-source", null]);
  });

  it("v4-source-first-address: the snapshot answers a multicast Echo from its first address", async () => {
    const input = v4Echo({ src: "198.19.0.1", dst: "224.0.0.1" });
    const [ours] = icmpfwdOutput([input]);
    expect([...ours.subarray(12, 16)].join(".")).toBe("198.19.0.2");
    expect(await classes([input])).toEqual(["v4-source-first-address", null]);
  });

  it("the ICMP rate limiter: 60 UDP datagrams (no UDP transport), 50 Protocol Unreachables from each", async () => {
    const input = Array.from({ length: 60 }, (_, i) =>
      v4Datagram({ protocol: 17, payload: payloadOf(12, i) }),
    );
    const ours = icmpfwdOutput(input);
    const theirs = await peer.feed(input);
    expect(describeAll(ours)).toBe(Array(50).fill("v4 icmp 3/2").join(", "));
    expect(theirs.map((p) => hex(normalize(p)))).toEqual(ours.map((p) => hex(normalize(p))));
  });

  it("control: Echo Requests are not limited — 60 get 60 Echo Replies from each", async () => {
    const input = Array.from({ length: 60 }, (_, i) => v4Echo({ sequence: i }));
    const ours = icmpfwdOutput(input);
    const theirs = await peer.feed(input);
    expect(ours.length).toBe(60);
    expect(theirs.map((p) => hex(normalize(p)))).toEqual(ours.map((p) => hex(normalize(p))));
  });

  it("the same seed gives the same inputs and the same outcome", async () => {
    for (let i = 0; i < 50; i++) expect(generate(7, i)).toEqual(generate(7, i));
    expect(generate(7, 0)).not.toEqual(generate(8, 0));
    const a = await differentialRun(stacks, 7, 50);
    const b = await differentialRun(stacks, 7, 50);
    expect([a.same, [...a.known]]).toEqual([b.same, [...b.known]]);
  }, 60_000);
});
