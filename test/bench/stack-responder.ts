/**
 * The full netstack answering a bounded ping flood through the TUN: the stack's built-in Echo
 * Reply path (validation, counters, route lookup, rate-limit check, checksums) on the same TUN
 * addon as the bare responder. Runs in this process; the flooders run in a private namespace.
 */
import type { TunEndpoint } from "../../src/link/tun.js";
import {
  type BenchMeasurement,
  type BenchModule,
  BenchNetns,
  type FloodOptions,
  type FloodResult,
  flood,
  withThreadCpu,
} from "./flood.js";

export interface StackBenchResult extends FloodResult {
  /** Echo Requests the netstack counted (proves it, not the kernel, answered). */
  netstackRequests: number;
  netstackReplies: number;
  cpuSeconds: number | null;
}

/** The built program (`npm run bench` builds first): what `icmpfwd serve` runs, not tsx's transform. */
async function dist<T>(path: string): Promise<T> {
  return (await import(new URL(`../../dist/${path}`, import.meta.url).href)) as T;
}

export async function benchStackResponder(o: FloodOptions): Promise<StackBenchResult> {
  const { resolveConfig } = await dist<typeof import("../../src/config.js")>("config.js");
  const { TunEndpoint } = await dist<typeof import("../../src/link/tun.js")>("link/tun.js");
  const { buildStack } = await dist<typeof import("../../src/serve.js")>("serve.js");
  const ns = await BenchNetns.create("stack");
  let tun: TunEndpoint | null = null;
  try {
    tun = TunEndpoint.open({ name: "icmpfwd0", mtu: 1500, netns: ns.path });
    await ns.sh("ip addr add 198.18.0.1/24 dev icmpfwd0");
    const stack = buildStack(resolveConfig({}), tun);
    const { value: r, cpuSeconds } = await withThreadCpu(() => flood(ns, "198.18.0.2", o));
    const s = stack.stats.icmp.v4;
    stack.close();
    return {
      ...r,
      cpuSeconds,
      netstackRequests: s.packetsReceived.echoRequest,
      netstackReplies: s.packetsSent.echoReply,
    };
  } finally {
    tun?.close();
    await ns.destroy();
  }
}

export const stackResponderBench: BenchModule = {
  name: "stack-responder",
  async run(o: FloodOptions): Promise<BenchMeasurement[]> {
    const r = await benchStackResponder(o);
    return [
      {
        ...r,
        cpuWhat: "main thread",
        mechanism: "icmpfwd netstack, built-in Echo Reply (in-process)",
        notes: `netstack counted ${r.netstackRequests} requests / ${r.netstackReplies} replies`,
      },
    ];
  },
};
