/**
 * The fault-injection run (issue #14, item 3): Echo Requests at a fixed rate into the service —
 * injected on the in-memory channel link, or sent by the kernel's ping through a real TUN in a
 * private namespace — while policy clients are killed (TCP RST), reset (RST_STREAM), restarted,
 * half-closed and drained every `chaosEveryMs`, one client stalls, and the clients send late,
 * duplicate and delayed verdicts and synthetic replies. A warm-up without faults comes first (the
 * RSS baseline is taken at its end), a quiet tail last (every client decides at once, so ping's
 * final replies arrive while it still waits). At the end every client drains and the
 * run checks, per request: exactly one outcome, and exactly the Echo Replies that outcome
 * promises; then that no pending entry or deadline timer remains and RSS is back near its
 * start. The short runs are tests (test/integration/faults.test.ts, test/e2e/faults.test.ts);
 * `scripts/faults.ts` runs the long ones.
 */
import { type ChildProcess, fork } from "node:child_process";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { resolveConfig } from "../../src/config.js";
import { serviceOptionsOf } from "../../src/daemon/components.js";
import { ChannelEndpoint } from "../../src/link/channel.js";
import { TunEndpoint } from "../../src/link/tun.js";
import { sendSyntheticEchoReply } from "../../src/netstack/icmp/synthetic.js";
import type {
  LinkEndpoint,
  LinkWriteError,
  NetworkDispatcher,
} from "../../src/netstack/link-endpoint.js";
import { buildStack } from "../../src/serve.js";
import { EchoService, type FailurePolicy } from "../../src/service/index.js";
import { stackSynthesizer } from "../../src/service/synthetic-replies.js";
import { payloadOf, v4Echo, v6Echo } from "../helpers/packets.js";
import type { ChildMessage, ParentMessage } from "./client-process.js";
import { type ClientTally, emptyTally } from "./clients.js";
import { type Family, Ledger } from "./ledger.js";

/**
 * A private network namespace (test/helpers/netns.ts in tests, test/bench/flood.ts in scripts,
 * which cannot import vitest): its file, and a shell command line run inside it.
 */
export interface FaultNetns {
  readonly path: string;
  run(cmdline: string, timeoutMs: number): Promise<{ code: number | null; stdout: string }>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(ok: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function sh(ns: FaultNetns, cmdline: string): Promise<string> {
  const r = await ns.run(cmdline, 10_000);
  if (r.code !== 0) throw new Error(`${cmdline} failed (${r.code}): ${r.stdout}`);
  return r.stdout;
}

async function nstat(ns: FaultNetns, ...counters: string[]): Promise<number> {
  const out = await sh(ns, `nstat -asz ${counters.join(" ")}`);
  let n = 0;
  for (const c of counters) {
    const line = out.split("\n").find((l) => l.startsWith(`${c} `));
    if (line === undefined) throw new Error(`nstat has no counter ${c}`);
    n += Number(line.trim().split(/\s+/)[1]);
  }
  return n;
}

export interface FaultRunOptions {
  link: "channel" | "tun";
  /** Echo Requests per second (tun: the kernel's ping, half IPv4, half IPv6). */
  rate: number;
  seconds: number;
  /** A fault every this many ms (default 100). */
  chaosEveryMs?: number;
  /** Deciding clients besides the stalled one (default 4). */
  clients?: number;
  /** The service's deadline (default 50 ms). */
  deadlineMs?: number;
  seed?: number;
  /** tun: the namespace the TUN goes into (the caller creates and deletes it). */
  netns?: FaultNetns;
  /** RSS may end at most this far above its start (default 10 MiB). */
  rssSlackBytes?: number;
  log?: (line: string) => void;
}

export interface PingSummary {
  family: Family;
  transmitted: number;
  received: number;
  duplicates: number;
}

export interface FaultReport {
  link: "channel" | "tun";
  seconds: number;
  rate: number;
  /** Echo Requests sent (injected, or ping's transmitted). */
  sent: number;
  /** Requests the per-id check covered. */
  requests: number;
  /** tun: requests the kernel dropped before the service saw them (= the TUN's tx drops). */
  missing: number;
  /** Outcomes by "action.cause", counted per request id. */
  outcomes: Record<string, number>;
  /** The service's counters at the end. */
  counters: Record<string, number>;
  /** Echo Replies written to the link, and synthetic replies among them. */
  answered: number;
  synthetic: number;
  pings: PingSummary[];
  /** The namespace kernel's counters over the run (tun). */
  kernel: { echoRepliesIn: number; echosIn: number; tunTxDropped: number } | null;
  tally: ClientTally;
  /** After the run: requests pending, deadline entries and whether a timer is armed. */
  pending: number;
  deadlineEntries: number;
  timerArmed: boolean;
  sessions: number;
  syntheticHeld: number;
  rss: { startBytes: number; endBytes: number; maxBytes: number };
  /** V8 heap in use after a full collection, at the baseline and at the end. */
  heapUsed: { startBytes: number; endBytes: number };
  maxLagMs: number;
  /** Every broken rule; empty when the run passed. */
  problems: string[];
}

/** The rejections a correct run may see: late verdicts, duplicates, synthetic after a timeout. */
export const EXPECTED_REJECTIONS = new Set([
  "REJECTION_REASON_EXPIRED",
  "REJECTION_REASON_ALREADY_DECIDED",
  "REJECTION_REASON_SYNTHETIC_NOT_ALLOWED",
]);

/** Passes packets through and shows each written one to `onWrite`. */
class TappedLink implements LinkEndpoint {
  constructor(
    private readonly inner: LinkEndpoint,
    private readonly onWrite: (p: Uint8Array) => void,
  ) {}
  get mtu(): number {
    return this.inner.mtu;
  }
  attach(d: NetworkDispatcher | null): void {
    this.inner.attach(d);
  }
  writePacket(p: Uint8Array): LinkWriteError | null {
    const e = this.inner.writePacket(p);
    if (e === null) this.onWrite(p);
    return e;
  }
  close(): void {
    this.inner.close();
  }
}

let gcFn: (() => void) | null = null;
/** A full collection (V8's gc(), exposed at run time). */
export function collectGarbage(): void {
  if (gcFn === null) {
    setFlagsFromString("--expose-gc");
    gcFn = runInNewContext("gc") as () => void;
  }
  gcFn();
  gcFn();
}

const CHANNEL_IDENTS = 64;
const MAX_TICK = 1024;

/** One run; whatever it started (client process, service, TUN) is gone when it returns or throws. */
export async function runFaults(o: FaultRunOptions): Promise<FaultReport> {
  const cleanups: (() => unknown)[] = [];
  try {
    return await run(o, cleanups);
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        // Best effort: the rest still goes.
      }
    }
  }
}

async function run(o: FaultRunOptions, cleanups: (() => unknown)[]): Promise<FaultReport> {
  const log = o.log ?? (() => {});
  const deadlineMs = o.deadlineMs ?? 50;
  const chaosEveryMs = o.chaosEveryMs ?? 100;
  const problems: string[] = [];
  const durationMs = o.seconds * 1000;

  // ---- the key space, the link, the stack, the service ----
  const perFamily = Math.min(65_000, Math.ceil((o.rate * o.seconds) / 2));
  const total = Math.round(o.rate * o.seconds);
  const ledger =
    o.link === "channel"
      ? new Ledger(CHANNEL_IDENTS, Math.ceil(total / CHANNEL_IDENTS) + 2)
      : new Ledger(4, perFamily + 2);
  let channel: ChannelEndpoint | null = null;
  let inner: LinkEndpoint;
  if (o.link === "channel") {
    channel = new ChannelEndpoint(1500, 1 << 16);
    inner = channel;
  } else {
    if (o.netns === undefined) throw new Error("the tun run needs a namespace");
    inner = TunEndpoint.open({ name: "icmpfwd0", mtu: 1500, netns: o.netns.path });
    await sh(
      o.netns,
      "ip addr add 198.18.0.1/24 dev icmpfwd0 && ip addr add fd00:1::1/64 dev icmpfwd0 nodad",
    );
  }
  const link = new TappedLink(inner, (p) => ledger.replyWritten(p));
  cleanups.push(() => link.close());
  const stack = buildStack(resolveConfig({}), link);
  cleanups.push(() => stack.close());
  const policy: FailurePolicy = {
    onTimeout: "fallthrough",
    onNoClient: "fallthrough",
    onOverload: "consume",
    onDisconnect: "consume",
  };
  const service = await EchoService.start({
    ...serviceOptionsOf(resolveConfig({})),
    stack,
    listen: "127.0.0.1:0",
    deadlineMs,
    policy,
    syntheticWindowMs: 500,
    drainTimeoutMs: 1000,
    telemetry: ledger,
    // The stack's own synthetic path, with the ledger told of every reply it sent.
    synthesizer: {
      ...stackSynthesizer(stack),
      echoReply: (copy, payload) => {
        const e = sendSyntheticEchoReply(stack, copy, payload === undefined ? {} : { payload });
        if (e === null) ledger.syntheticSent(copy.family, copy.icmp);
        return e;
      },
    },
  });
  cleanups.push(() => service.close());
  const d = service.dispatcher;

  // ---- the clients, in their own process ----
  const n = o.clients ?? 4;
  const warmupMs = Math.min(5000, Math.max(1000, durationMs / 10));
  const quietMs = Math.min(1000, durationMs / 5);
  const clients = forkClients();
  cleanups.push(() => clients.exitCode === null && clients.kill("SIGKILL"));
  const tallyP = new Promise<ClientTally | null>((resolve) => {
    clients.on("message", (m: ChildMessage) => m.type === "tally" && resolve(m.tally));
    clients.on("exit", () => resolve(null));
  });
  const tell = (m: ParentMessage): void => {
    if (clients.connected) clients.send(m);
  };
  tell({
    type: "start",
    address: service.address,
    clients: n,
    deadlineMs,
    chaosEveryMs,
    seed: o.seed ?? 14,
    maxMs: durationMs + 60_000,
  });
  await waitFor(() => d.sessions.length === n + 1, "every client's session", 20_000);

  // ---- warm-up (no faults), then the baseline; faults until the quiet tail ----
  const t0 = performance.now();
  const lag = monitorEventLoopDelay({ resolution: 10 });
  let rssStart = 0;
  let heapStart = 0;
  let rssMax = 0;
  let rssTimer: ReturnType<typeof setInterval> | null = null;
  const phases = [
    setTimeout(() => {
      collectGarbage();
      rssStart = process.memoryUsage().rss;
      heapStart = process.memoryUsage().heapUsed;
      rssMax = rssStart;
      lag.enable();
      rssTimer = setInterval(() => {
        rssMax = Math.max(rssMax, process.memoryUsage().rss);
      }, 100);
      log(`${o.link}: warmed up; RSS ${mb(rssStart)} MiB; faults every ${chaosEveryMs} ms`);
      tell({ type: "faults", on: true });
    }, warmupMs),
    setTimeout(() => tell({ type: "faults", on: false }), durationMs - quietMs),
  ];
  log(
    `${o.link}: ${o.rate}/s for ${o.seconds} s (warm-up ${warmupMs} ms, quiet tail ${quietMs} ms)`,
  );

  // ---- the load ----
  let sent = 0;
  const pings: PingSummary[] = [];
  let kernelBefore = { replies: 0, echos: 0 };
  if (channel !== null) {
    const ch = channel;
    const payload = payloadOf(16);
    const packet = (i: number): Uint8Array => {
      const ident = 1 + (i % CHANNEL_IDENTS);
      const sequence = 1 + Math.floor(i / CHANNEL_IDENTS);
      return i % 4 === 3
        ? v6Echo({ ident, sequence, payload })
        : v4Echo({ ident, sequence, payload });
    };
    await new Promise<void>((resolve) => {
      const tick = (): void => {
        const elapsed = performance.now() - t0;
        const due = Math.min(total, Math.floor((o.rate * elapsed) / 1000));
        const batch: Uint8Array[] = [];
        while (sent < due && batch.length < MAX_TICK) batch.push(packet(sent++));
        if (batch.length > 0) ch.inject(...batch);
        ch.drain();
        // Bounded in count and in time: at most `total`, and never past 1.5 × the duration.
        if (sent >= total || elapsed > durationMs * 1.5) resolve();
        else setTimeout(tick, 2);
      };
      tick();
    });
  } else {
    const ns = o.netns as FaultNetns;
    kernelBefore = {
      replies: await nstat(ns, "IcmpInEchoReps", "Icmp6InEchoReplies"),
      echos: await nstat(ns, "IcmpInEchos", "Icmp6InEchos"),
    };
    const interval = (2 / o.rate).toFixed(4);
    // Bounded in count (-c) and in time (timeout -s INT: ping still prints its summary).
    const limit = Math.ceil(o.seconds * 3 + 10);
    const ping = (family: Family) =>
      ns.run(
        `timeout -s INT ${limit} ping ${family === "ipv6" ? "-6 " : ""}-n -q -l 16 -i ${interval} -c ${perFamily} -W 1 ${family === "ipv6" ? "fd00:1::2" : "198.18.0.2"}`,
        (limit + 15) * 1000,
      );
    const families = ["ipv4", "ipv6"] as const;
    const results = await Promise.all(families.map(ping));
    for (const [i, f] of families.entries()) {
      const out = results[i].stdout;
      const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(out);
      const dup = /\+(\d+) duplicates/.exec(out);
      const p = {
        family: f,
        transmitted: m ? Number(m[1]) : 0,
        received: m ? Number(m[2]) : 0,
        duplicates: dup ? Number(dup[1]) : 0,
      };
      pings.push(p);
      sent += p.transmitted;
      if (p.transmitted === 0) problems.push(`ping ${f} sent nothing: ${out.slice(0, 300)}`);
      if (results[i].code === 124)
        problems.push(`ping ${f} was cut at ${limit} s: this machine did not sustain ${o.rate}/s`);
    }
  }
  for (const t of phases) clearTimeout(t);
  const loadSeconds = (performance.now() - t0) / 1000;
  log(`load done: ${sent} sent in ${loadSeconds.toFixed(1)} s; draining the clients`);

  // ---- the end: every client drains; nothing may stay behind ----
  tell({ type: "finish", timeoutMs: deadlineMs * 4 + 2000 });
  const tally = (await tallyP) ?? emptyTally();
  if (clients.connected) clients.disconnect();
  if (tally.streams === 0) problems.push("the client process reported nothing");
  await waitFor(() => d.pendingCount === 0, "no pending request", 5000).catch(() =>
    problems.push(`${d.pendingCount} requests still pending after the drain`),
  );
  await sleep(20);
  channel?.drain();
  // Synthetic-reply copies leave when their window (500 ms) has passed.
  await sleep(600);
  const held = service.gauges()["service.synthetic.held"];
  if (rssTimer !== null) clearInterval(rssTimer);
  lag.disable();
  // V8 gives heap pages back a few seconds after the load stops (its memory reducer): poll.
  const slack = o.rssSlackBytes ?? 10 << 20;
  let rssEnd = Number.POSITIVE_INFINITY;
  const settleEnd = Date.now() + 10_000;
  for (;;) {
    collectGarbage();
    rssEnd = process.memoryUsage().rss;
    if (rssEnd <= rssStart + slack || Date.now() > settleEnd) break;
    await sleep(500);
  }
  const heapEnd = process.memoryUsage().heapUsed;
  const counters = service.counters();
  const ds = d.deadlineState;

  // ---- the per-id check ----
  const slotIdent = ledger.slotInfo;
  let expected: (key: number) => boolean;
  if (o.link === "channel") {
    expected = (key) => {
      const s = slotIdent[key % ledger.slots];
      if (s === undefined) return false;
      const seq = Math.floor(key / ledger.slots);
      const i = (seq - 1) * CHANNEL_IDENTS + (s.ident - 1);
      return seq >= 1 && i < sent && (i % 4 === 3) === (s.family === "ipv6");
    };
  } else {
    const tx = new Map(pings.map((p) => [p.family, p.transmitted]));
    const perSlot = new Map<Family, number>();
    for (const s of slotIdent) perSlot.set(s.family, (perSlot.get(s.family) ?? 0) + 1);
    for (const [f, k] of perSlot) if (k > 1) problems.push(`${k} ping idents seen for ${f}`);
    expected = (key) => {
      const s = slotIdent[key % ledger.slots];
      const seq = Math.floor(key / ledger.slots);
      return s !== undefined && seq >= 1 && seq <= (tx.get(s.family) ?? 0);
    };
  }
  // On the TUN, a request the kernel dropped at the device queue never reaches the service;
  // those are counted (and must equal the TUN's drops) instead of failing the per-id check.
  const c = ledger.check(expected, o.link === "tun");
  problems.push(...c.problems);
  if (c.requests !== sent) problems.push(`${sent} sent but ${c.requests} covered by the check`);

  // ---- the service's own counters agree with the per-id records ----
  const outcomes = ledger.outcomes();
  for (const [k, v] of Object.entries(outcomes)) {
    const counter = counters[`service.outcomes.${k}`] ?? 0;
    if (counter !== v) problems.push(`service.outcomes.${k} is ${counter}, per id ${v}`);
  }
  const outcomeSum = Object.values(outcomes).reduce((a, b) => a + b, 0);
  if (counters["service.requests"] !== outcomeSum)
    problems.push(`service.requests ${counters["service.requests"]} ≠ ${outcomeSum} outcomes`);
  if (counters["service.synthetic.sent"] !== c.synthetic)
    problems.push(`service.synthetic.sent ${counters["service.synthetic.sent"]} ≠ ${c.synthetic}`);
  const replied =
    Object.entries(outcomes)
      .filter(([k]) => !k.startsWith("consume."))
      .reduce((a, [, v]) => a + v, 0) + c.synthetic;
  if (c.answered !== replied)
    problems.push(
      `${c.answered} replies on the link ≠ ${replied} replied + fallthrough + synthetic`,
    );

  // ---- the kernel's view (tun) ----
  let kernel: FaultReport["kernel"] = null;
  if (o.link === "tun") {
    const ns = o.netns as FaultNetns;
    kernel = {
      echoRepliesIn:
        (await nstat(ns, "IcmpInEchoReps", "Icmp6InEchoReplies")) - kernelBefore.replies,
      echosIn: (await nstat(ns, "IcmpInEchos", "Icmp6InEchos")) - kernelBefore.echos,
      tunTxDropped: Number(
        (await sh(ns, "cat /sys/class/net/icmpfwd0/statistics/tx_dropped")).trim(),
      ),
    };
    const received = pings.reduce((a, p) => a + p.received, 0);
    const dups = pings.reduce((a, p) => a + p.duplicates, 0);
    if (received !== c.answered)
      problems.push(`ping received ${received} ≠ ${c.answered} answered`);
    if (kernel.echoRepliesIn !== c.answered)
      problems.push(`the kernel got ${kernel.echoRepliesIn} Echo Replies ≠ ${c.answered} answered`);
    if (dups !== 0) problems.push(`ping saw ${dups} duplicate replies`);
    if (kernel.echosIn !== 0)
      problems.push(`the kernel answered ${kernel.echosIn} Echo Requests itself`);
    if (c.missing !== kernel.tunTxDropped)
      problems.push(
        `${c.missing} requests never reached the service, but the TUN dropped ${kernel.tunTxDropped}`,
      );
    if (kernel.tunTxDropped !== 0)
      problems.push(
        `the TUN queue dropped ${kernel.tunTxDropped} requests: this machine did not sustain ${o.rate}/s`,
      );
  }

  // ---- nothing left behind ----
  if (d.pendingCount !== 0) problems.push(`${d.pendingCount} pending`);
  if (ds.entries !== 0 || ds.armed)
    problems.push(`deadline heap: ${ds.entries} entries, timer armed ${ds.armed}`);
  if (d.sessions.length !== 0) problems.push(`${d.sessions.length} sessions left`);
  if (held !== 0) problems.push(`${held} synthetic-reply copies held after their window`);
  if (rssEnd > rssStart + slack)
    problems.push(
      `RSS ${mb(rssEnd)} MiB is more than ${mb(slack)} MiB above its start ${mb(rssStart)} MiB`,
    );
  for (const [reason, k] of Object.entries(tally.rejections))
    if (!EXPECTED_REJECTIONS.has(reason)) problems.push(`${k} unexpected rejections ${reason}`);

  return {
    link: o.link,
    seconds: loadSeconds,
    rate: o.rate,
    sent,
    requests: c.requests,
    missing: c.missing,
    outcomes,
    counters,
    answered: c.answered,
    synthetic: c.synthetic,
    pings,
    kernel,
    tally,
    pending: d.pendingCount,
    deadlineEntries: ds.entries,
    timerArmed: ds.armed,
    sessions: d.sessions.length,
    syntheticHeld: held,
    rss: { startBytes: rssStart, endBytes: rssEnd, maxBytes: rssMax },
    heapUsed: { startBytes: heapStart, endBytes: heapEnd },
    maxLagMs: lag.max / 1e6,
    problems,
  };
}

function forkClients(): ChildProcess {
  const file = fileURLToPath(new URL("./client-process.ts", import.meta.url));
  return fork(file, [], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
}

export function mb(bytes: number): string {
  return (bytes / (1 << 20)).toFixed(1);
}

/** The report as a small text table. */
export function formatReport(r: FaultReport): string {
  const lines: string[] = [];
  const row = (k: string, v: string | number): void => {
    lines.push(`| ${k} | ${v} |`);
  };
  lines.push(`| ${r.link} link | |`, "|---|---|");
  row("duration", `${r.seconds.toFixed(1)} s at ${r.rate}/s`);
  row("requests sent / checked per id", `${r.sent} / ${r.requests}`);
  for (const [k, v] of Object.entries(r.outcomes).sort()) row(`outcome ${k}`, v);
  row("Echo Replies (of which synthetic)", `${r.answered} (${r.synthetic})`);
  for (const p of r.pings)
    row(
      `ping ${p.family}`,
      `${p.transmitted} sent, ${p.received} received, ${p.duplicates} duplicates`,
    );
  if (r.kernel !== null)
    row(
      "kernel: Echo Replies in / Echo Requests answered / TUN drops",
      `${r.kernel.echoRepliesIn} / ${r.kernel.echosIn} / ${r.kernel.tunTxDropped}`,
    );
  row(
    "faults",
    Object.entries(r.tally.faults)
      .map(([k, v]) => `${k} ${v}`)
      .join(", "),
  );
  row("client streams opened", r.tally.streams);
  row(
    "verdicts (late / duplicate / delayed / flow), synthetic",
    `${r.tally.verdicts} (${r.tally.lateVerdicts} / ${r.tally.duplicateVerdicts} / ${r.tally.delayedVerdicts} / ${r.tally.flowVerdicts}), ${r.tally.syntheticReplies}`,
  );
  row(
    "rejections",
    Object.entries(r.tally.rejections)
      .map(([k, v]) => `${k.replace("REJECTION_REASON_", "")} ${v}`)
      .join(", "),
  );
  row(
    "stream statuses",
    Object.entries(r.tally.statuses)
      .map(([k, v]) => `${k}: ${v}`)
      .join(", "),
  );
  row(
    "after: pending / deadline entries / timer armed / sessions",
    `${r.pending} / ${r.deadlineEntries} / ${r.timerArmed} / ${r.sessions}`,
  );
  row(
    "RSS start / end / max (MiB)",
    `${mb(r.rss.startBytes)} / ${mb(r.rss.endBytes)} / ${mb(r.rss.maxBytes)}`,
  );
  row(
    "V8 heap used start / end (MiB)",
    `${mb(r.heapUsed.startBytes)} / ${mb(r.heapUsed.endBytes)}`,
  );
  row("max event-loop lag", `${r.maxLagMs.toFixed(1)} ms`);
  row("problems", r.problems.length === 0 ? "none" : r.problems.join("; "));
  return lines.join("\n");
}
