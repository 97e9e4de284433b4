/**
 * (g) Memory: RSS and V8 heap (after a full GC) of the service's process
 *  - before and after BENCH_MEMORY_REQUESTS (default 10⁶) Echo Requests decided by one grpc-js
 *    client (CONSUME, in a worker thread) through the in-memory link, closed loop;
 *  - with a client that says Hello (max_in_flight 1024) and then stops reading: requests beyond
 *    its window fall through at once (on-overload), so it holds at most max_in_flight requests.
 * No network namespace is needed: packets only cross the in-memory link; gRPC is on 127.0.0.1:0.
 * Bounded: BENCH_MEMORY_SECONDS (default 120) per part.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { BenchMeasurement, BenchModule } from "./flood.js";
import {
  type Built,
  drive,
  ICMPV4_PROTOCOL_NUMBER,
  loadBuilt,
  packetInjector,
  Recorder,
  startClients,
  timedHandler,
} from "./service.js";

export interface MemoryResult {
  name: string;
  requests: number;
  decided: number;
  seconds: number;
  rssBeforeMB: number;
  rssAfterMB: number;
  heapBeforeMB: number;
  heapAfterMB: number;
  /**
   * V8's young generation (new space): its size and the memory it has committed. It grows
   * with the allocation rate up to twice --max-semi-space-size and stays there — bounded, not
   * a leak — so the RSS growth outside it is what the requests themselves left behind.
   */
  youngBeforeMB: number;
  youngAfterMB: number;
  youngPhysicalBeforeMB: number;
  youngPhysicalAfterMB: number;
  /** Stalled-client part: the most requests the service held for it at once, and its window. */
  maxHeld?: number;
  maxInFlight?: number;
  fellThrough?: number;
}

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const MB = 1024 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Settled {
  rss: number;
  heap: number;
  young: number;
  youngPhysical: number;
}

async function settledMemory(): Promise<Settled> {
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(50);
  }
  const m = process.memoryUsage();
  const young = getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
  return {
    rss: m.rss / MB,
    heap: m.heapUsed / MB,
    young: (young?.space_size ?? 0) / MB,
    youngPhysical: (young?.physical_space_size ?? 0) / MB,
  };
}

/** The before/after columns of a memory row. */
function memoryFields(
  before: Settled,
  after: Settled,
): Omit<
  MemoryResult,
  "name" | "requests" | "decided" | "seconds" | "maxHeld" | "maxInFlight" | "fellThrough"
> {
  return {
    rssBeforeMB: before.rss,
    rssAfterMB: after.rss,
    heapBeforeMB: before.heap,
    heapAfterMB: after.heap,
    youngBeforeMB: before.young,
    youngAfterMB: after.young,
    youngPhysicalBeforeMB: before.youngPhysical,
    youngPhysicalAfterMB: after.youngPhysical,
  };
}

async function withService<T>(
  lib: Built,
  body: (ctx: {
    service: Awaited<ReturnType<Built["service"]["EchoService"]["start"]>>;
    link: InstanceType<Built["channel"]["ChannelEndpoint"]>;
    stack: ReturnType<Built["serve"]["buildStack"]>;
  }) => Promise<T>,
): Promise<T> {
  const link = new lib.channel.ChannelEndpoint();
  const stack = lib.serve.buildStack(lib.config.resolveConfig({}), link);
  const service = await lib.service.EchoService.start({
    ...lib.components.serviceOptionsOf(lib.config.resolveConfig({})),
    listen: "127.0.0.1:0",
    deadlineMs: 10_000,
    policy: lib.service.FAIL_OPEN,
    limits: { maxBatch: 16, maxInFlightCap: 1 << 20 },
  });
  try {
    return await body({ service, link, stack });
  } finally {
    await service.close();
    stack.close();
  }
}

async function steadyState(lib: Built, requests: number, seconds: number): Promise<MemoryResult> {
  return withService(lib, async ({ service, link, stack }) => {
    // Latency samples are not the point here: a small recorder, allocated before the baseline.
    const rec = new Recorder(1024);
    stack.setTransportProtocolHandler(
      ICMPV4_PROTOCOL_NUMBER,
      timedHandler(lib, service.forwarder.handlePacket, rec),
    );
    const clients = startClients({ address: service.address, streams: 1, hello: true });
    try {
      while (service.dispatcher.sessions.length < 1) await sleep(5);
      const offer = packetInjector(link);
      const ready = () => service.dispatcher.sessions.some((x) => x.canTake());
      const o = { batch: 16, window: 256, rate: null };
      // Warm up (JIT, connection, pools, the synthetic store's 65,536 slots) before the
      // baseline, and until V8's young generation has reached its full size: it grows with the
      // allocation rate up to two semi-spaces (--max-semi-space-size, which the launchers set)
      // and stays there — a bounded one-time cost, not growth per request. Bounded by
      // 400,000 requests / 30 s; what it still grows after that is reported apart (young gen).
      const semi = /--max-semi-space-size=(\d+)/.exec(
        [...process.execArgv, process.env.NODE_OPTIONS ?? ""].join(" "),
      );
      const youngMaxMB = semi === null ? Number.POSITIVE_INFINITY : 2 * Number(semi[1]);
      const warmUntil = Date.now() + 30_000;
      let warmed = 0;
      do {
        warmed += (await drive(offer, ready, rec, { ...o, count: 50_000, seconds: 10 })).offered;
      } while (
        warmed < 400_000 &&
        Date.now() < warmUntil &&
        (await settledMemory()).young < youngMaxMB
      );
      rec.reset();
      const before = await settledMemory();
      const r = await drive(offer, ready, rec, { ...o, count: requests, seconds });
      const after = await settledMemory();
      return {
        name: `service, ${requests.toLocaleString("en")} requests, 1 client`,
        requests: r.offered,
        decided: rec.decided,
        seconds: r.seconds,
        ...memoryFields(before, after),
      };
    } finally {
      await clients.terminate();
    }
  });
}

async function stalledClient(lib: Built, requests: number, seconds: number): Promise<MemoryResult> {
  const maxInFlight = 1024;
  return withService(lib, async ({ service, link, stack }) => {
    stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, service.forwarder.handlePacket);
    const clients = startClients({
      address: service.address,
      streams: 1,
      hello: true,
      stall: true,
      maxInFlight,
    });
    try {
      while (service.dispatcher.sessions.length < 1) await sleep(5);
      const before = await settledMemory();
      const start = process.hrtime.bigint();
      const until = start + BigInt(seconds * 1e9);
      const offer = packetInjector(link);
      let next = 0;
      let maxHeld = 0;
      while (next < requests && process.hrtime.bigint() < until) {
        offer(64);
        next += 64;
        // The built-in replies of the requests that fell through: drain the link's queue.
        while (link.read() !== undefined);
        maxHeld = Math.max(maxHeld, service.dispatcher.pendingCount);
        if (next % 4096 === 0) await new Promise((r) => setImmediate(r));
      }
      const secs = Number(process.hrtime.bigint() - start) / 1e9;
      const after = await settledMemory();
      maxHeld = Math.max(maxHeld, service.dispatcher.pendingCount);
      const c = service.counters();
      const fellThrough = Object.entries(c)
        .filter(([k]) => k.startsWith("service.outcomes.fallthrough."))
        .reduce((n, [, v]) => n + v, 0);
      return {
        name: `service, a client that stops reading (max_in_flight ${maxInFlight}), ${next.toLocaleString("en")} requests`,
        requests: next,
        decided: 0,
        seconds: secs,
        ...memoryFields(before, after),
        maxHeld,
        maxInFlight,
        fellThrough,
      };
    } finally {
      await clients.terminate();
    }
  });
}

export function memoryBoundsFromEnv(): { requests: number; seconds: number } {
  return {
    requests: Number(process.env.BENCH_MEMORY_REQUESTS ?? 1_000_000),
    seconds: Number(process.env.BENCH_MEMORY_SECONDS ?? 120),
  };
}

export async function runMemoryBench(): Promise<MemoryResult[]> {
  const lib = await loadBuilt();
  const b = memoryBoundsFromEnv();
  return [
    await steadyState(lib, b.requests, b.seconds),
    await stalledClient(lib, Math.min(b.requests, 200_000), Math.min(b.seconds, 30)),
  ];
}

/** The last run's results, for run.ts's memory table and targets. */
export const memoryResults: MemoryResult[] = [];

export const memoryBench: BenchModule = {
  name: "memory",
  async run(): Promise<BenchMeasurement[]> {
    const rows = await runMemoryBench();
    memoryResults.push(...rows);
    return rows.map((r) => ({
      mechanism: `memory: ${r.name}`,
      transmitted: r.requests,
      received: r.decided,
      rttAvgMs: null,
      wallSeconds: r.seconds,
      repliesPerSecond: r.decided / r.seconds,
      cpuSeconds: null,
      notes:
        `RSS ${r.rssBeforeMB.toFixed(1)} → ${r.rssAfterMB.toFixed(1)} MB, heap ${r.heapBeforeMB.toFixed(1)} → ${r.heapAfterMB.toFixed(1)} MB` +
        (r.maxHeld === undefined
          ? ""
          : `; held at most ${r.maxHeld}; ${r.fellThrough} fell through`),
    }));
  },
};
