/**
 * Echo Requests decided by a handler, through the TUN, under the shared bounded flood:
 *  - (b) an in-process Forwarder whose handler calls `req.reply()` synchronously, or
 *    asynchronously (a resolved Promise, or a Decision settled in a microtask);
 *  - (d) the decision service: `icmpfwd serve`'s stack and EchoService on the TUN, with 1 or 4
 *    grpc-js policy clients in a worker thread answering every request REPLY, at batch sizes
 *    (max_batch) 1, 16 and 128.
 * The stack and service run in this thread on the built code in dist/ (`npm run bench` builds
 * first); the TUN and the flooders live in a private namespace; gRPC listens on 127.0.0.1:0 of
 * this process's namespace and carries no packets.
 */
import { readFileSync, writeFileSync } from "node:fs";
import type { TunEndpoint } from "../../src/link/tun.js";
import type { ForwarderRequest } from "../../src/netstack/icmp/forwarder.js";
import {
  type BenchMeasurement,
  type BenchModule,
  BenchNetns,
  type FloodOptions,
  flood,
  withThreadCpu,
} from "./flood.js";
import { loadBuilt, startClients } from "./service.js";

async function dist<T>(path: string): Promise<T> {
  return (await import(new URL(`../../dist/${path}`, import.meta.url).href)) as T;
}

interface Lib {
  config: typeof import("../../src/config.js");
  tun: typeof import("../../src/link/tun.js");
  serve: typeof import("../../src/serve.js");
  netstack: typeof import("../../src/netstack/index.js");
}

async function lib(): Promise<Lib> {
  return {
    config: await dist("config.js"),
    tun: await dist("link/tun.js"),
    serve: await dist("serve.js"),
    netstack: await dist("netstack/index.js"),
  };
}

/** A TUN in a fresh namespace with icmpfwd's stack on it; `body` installs handlers and floods. */
async function onTunStack<T>(
  l: Lib,
  purpose: string,
  body: (stack: ReturnType<Lib["serve"]["buildStack"]>, ns: BenchNetns) => Promise<T>,
): Promise<T> {
  const ns = await BenchNetns.create(purpose);
  let tun: TunEndpoint | null = null;
  try {
    tun = l.tun.TunEndpoint.open({ name: "icmpfwd0", mtu: 1500, netns: ns.path });
    await ns.sh("ip addr add 198.18.0.1/24 dev icmpfwd0");
    const stack = l.serve.buildStack(l.config.resolveConfig({}), tun);
    try {
      return await body(stack, ns);
    } finally {
      stack.close();
    }
  } finally {
    tun?.close();
    await ns.destroy();
  }
}

type Mode = "sync" | "promise" | "decision";

async function forwarderRow(l: Lib, o: FloodOptions, mode: Mode): Promise<BenchMeasurement> {
  return onTunStack(l, `fwd${mode[0]}`, async (stack, ns) => {
    const { Forwarder, Decision, ICMPV4_PROTOCOL_NUMBER } = l.netstack;
    const handler =
      mode === "sync"
        ? (req: ForwarderRequest) => req.reply()
        : mode === "promise"
          ? async (req: ForwarderRequest) => {
              await null;
              req.reply();
              return true;
            }
          : (req: ForwarderRequest) => {
              const d = new Decision();
              queueMicrotask(() => {
                req.reply();
                d.settle(true);
              });
              return d;
            };
    const f = new Forwarder(handler);
    stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, f.handlePacket);
    const { value: r, cpuSeconds } = await withThreadCpu(() => flood(ns, "198.18.0.2", o));
    const s = stack.stats.icmp.v4;
    return {
      ...r,
      cpuSeconds,
      cpuWhat: "main thread",
      mechanism:
        mode === "sync"
          ? "in-process Forwarder, handler returns req.reply() (sync)"
          : mode === "promise"
            ? "in-process Forwarder, async handler (Promise) → req.reply()"
            : "in-process Forwarder, Decision settled in a microtask → req.reply()",
      notes: `netstack: ${s.packetsReceived.echoRequest} requests / ${s.packetsSent.echoReply} replies`,
    };
  });
}

export const forwarderBench: BenchModule = {
  name: "forwarder",
  async run(o: FloodOptions): Promise<BenchMeasurement[]> {
    const l = await lib();
    const rows: BenchMeasurement[] = [];
    for (const mode of ["sync", "promise", "decision"] as const) {
      rows.push(await forwarderRow(l, o, mode));
    }
    return rows;
  },
};

async function remoteRow(
  l: Lib,
  o: FloodOptions,
  clients: number,
  batch: number,
): Promise<BenchMeasurement> {
  const built = await loadBuilt();
  return onTunStack(l, `rem${clients}x${batch}`, async (stack, ns) => {
    // The stack is handed over once the clients are connected (below): no request meets an
    // empty session list.
    const options = {
      ...built.components.serviceOptionsOf(built.config.resolveConfig({})),
      listen: "127.0.0.1:0",
      deadlineMs: 10_000,
      policy: built.service.FAIL_OPEN,
      limits: { maxBatch: batch, maxInFlightCap: 1 << 20 },
    };
    const service = await built.service.EchoService.start({ ...options, stack });
    const worker = startClients({
      address: service.address,
      streams: clients,
      hello: true,
      action: "reply",
    });
    try {
      const deadline = Date.now() + 10_000;
      while (service.dispatcher.sessions.length < clients) {
        if (Date.now() > deadline) throw new Error("the policy clients did not connect");
        await new Promise((r) => setTimeout(r, 10));
      }
      resetPeakRss();
      const rssBeforeMB = process.memoryUsage().rss / 2 ** 20;
      const { value: r, cpuSeconds } = await withThreadCpu(() => flood(ns, "198.18.0.2", o));
      const peakRssMB = peakRss();
      const c = service.counters();
      const s = stack.stats.icmp.v4;
      const decided =
        (c["service.outcomes.reply.verdict"] ?? 0) + (c["service.outcomes.reply.flow"] ?? 0);
      const mechanism = `remote decisions through the TUN, ${clients} client${clients > 1 ? "s" : ""}, batch ${batch}`;
      remotePeaks.push({
        mechanism,
        rssBeforeMB,
        peakRssMB,
        decisionsPerSecond: decided / r.wallSeconds,
      });
      const fallthrough = Object.entries(c)
        .filter(([k, v]) => k.startsWith("service.outcomes.fallthrough.") && v > 0)
        .map(([k, v]) => `${v} ${k.slice("service.outcomes.fallthrough.".length)}`);
      return {
        ...r,
        cpuSeconds,
        cpuWhat: "server thread (clients in a worker, not counted)",
        mechanism,
        notes: `${decided} REPLY verdicts (${Math.round(decided / r.wallSeconds)}/s), fell through: ${fallthrough.join(", ") || "none"}; netstack ${s.packetsSent.echoReply} replies; peak RSS ${peakRssMB.toFixed(0)} MiB (${rssBeforeMB.toFixed(0)} MiB before the flood; the process: service and the clients' worker)`,
      };
    } finally {
      await worker.terminate();
      await service.close();
    }
  });
}

/** Each remote row's peak RSS during its flood, for run.ts's targets. */
export const remotePeaks: {
  mechanism: string;
  rssBeforeMB: number;
  peakRssMB: number;
  decisionsPerSecond: number;
}[] = [];

/** Resets the process's peak RSS (VmHWM) to its current RSS. */
function resetPeakRss(): void {
  writeFileSync("/proc/self/clear_refs", "5");
}

/** VmHWM in MiB: the most RSS since the last reset. */
function peakRss(): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync("/proc/self/status", "utf8"));
  return m === null ? Number.NaN : Number(m[1]) / 1024;
}

export const remoteBench: BenchModule = {
  name: "remote",
  async run(o: FloodOptions): Promise<BenchMeasurement[]> {
    const l = await lib();
    const rows: BenchMeasurement[] = [];
    // BENCH_REMOTE_ROWS=4x128,1x16 runs only those (clients×batch) rows.
    const only = process.env.BENCH_REMOTE_ROWS?.split(",").map((x) => x.trim());
    for (const clients of [1, 4]) {
      for (const batch of [1, 16, 128]) {
        if (only !== undefined && !only.includes(`${clients}x${batch}`)) continue;
        rows.push(await remoteRow(l, o, clients, batch));
      }
    }
    return rows;
  },
};
