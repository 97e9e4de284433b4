/**
 * The differential test through real TUN devices (test/differential/tun.ts): icmpfwd's
 * TunEndpoint and gVisor's fdbased endpoint each on a device in this file's private namespace,
 * every input injected and every answer captured from the kernel side by AF_PACKET (tun-tap),
 * outputs compared byte for byte after normalization; every difference must be one of
 * test/differential/known.ts, and icmpfwd's answer on the TUN must equal its in-memory answer.
 * Needs root, Go and golang-gvisor-gvisor-dev: skipped without them, a failure under CI=true.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { hex } from "../differential/compare.js";
import { buildGo, peerPrerequisite } from "../differential/peer.js";
import { differentialRun, formatUnknown } from "../differential/run.js";
import { TunStacks } from "../differential/tun.js";
import { describeNetns, inCI } from "../helpers/netns.js";
import { v4Echo } from "../helpers/packets.js";

const go = peerPrerequisite();
if (!go.ok && inCI) throw new Error(`differential-tun: missing prerequisite in CI: ${go.reason}`);

describeNetns(go.ok
  ? "differential through TUN devices"
  : `differential through TUN devices (${go.reason})`, () => {
  let stacks: TunStacks;
  beforeAll(async () => {
    stacks = await TunStacks.open(buildGo("gvisor-peer"), buildGo("tun-tap"));
  }, 180_000);
  afterAll(async () => {
    await stacks?.close();
  });

  it("an input of no packets: neither stack writes anything (the kernel adds nothing)", async () => {
    expect(await stacks.answer([])).toEqual({ ours: [], theirs: [], oursInMemory: [] });
  });

  it("control: an Echo Request gets the same Echo Reply from both, as in memory", async () => {
    const request = v4Echo({ src: "198.18.0.1", dst: "198.18.0.2", ident: 7, sequence: 9 });
    const outcome = await stacks.answer([request]);
    if ("skipped" in outcome) throw new Error(outcome.skipped);
    expect(outcome.ours.length).toBe(1);
    expect(outcome.ours[0][20]).toBe(0);
    expect(outcome.ours.map(hex)).toEqual(outcome.theirs.map(hex));
    expect(outcome.ours.map(hex)).toEqual((outcome.oursInMemory ?? []).map(hex));
  });

  it("a packet over the MTU cannot cross a TUN: the input is skipped", async () => {
    const big = v4Echo({ payload: new Uint8Array(1600) });
    expect(await stacks.answer([big])).toEqual({ skipped: "a packet over the MTU (1500)" });
  });

  it("200 inputs of seed 1: every difference is a known one", async () => {
    const r = await differentialRun(stacks, 1, 200);
    expect(r.unknown.size, formatUnknown(r)).toBe(0);
    expect({
      same: r.same,
      known: Object.fromEntries(r.known),
      skipped: Object.fromEntries(r.skipped),
    }).toEqual(EXPECTED_SEED_1);
  }, 120_000);
}, ["go"]);

/** Seed 1's first 200 inputs through the TUN devices (deterministic: fresh stacks per input). */
const EXPECTED_SEED_1 = {
  same: 182,
  known: {
    "neighbor-solicitation": 1,
    "non-first-fragment-param-problem": 4,
    "option-30-length": 4,
    "subset-fragment": 3,
    "v4-mapped-source": 2,
  },
  skipped: { "a packet over the MTU (1500)": 4 },
};
