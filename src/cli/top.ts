/**
 * `icmpfwd top`: a live view of a running service. Each WatchStats snapshot (counters and
 * gauges) is joined with ListSessions and EchoAdmin.GetDecisionStats (latency percentiles,
 * flow counts) into one sample; rates are deltas between samples; the last minute of samples
 * feeds the sparklines. On a terminal it is a full-screen view drawn with plain ANSI escapes
 * (q quits, s changes the session sort, p pauses the display); otherwise one plain line per
 * sample (or one JSON object with --json).
 */
import type { GetDecisionStatsResponse } from "../gen/icmpfwd/v1/admin.js";
import type { GetStatsResponse, Session } from "../gen/icmpfwd/v1/forwarder.js";
import { modeName, type ServiceClient } from "./client.js";

/** Netstack drop reasons (as icmpfwd_netstack_drops_total's `reason`) → the counters summed. */
export const DROP_COUNTERS: Readonly<Record<string, readonly string[]>> = {
  unknown_l3_protocol: ["nic.unknownL3ProtocolRcvdPackets"],
  link_write_error: ["nic.txErrors"],
  malformed: ["ipv4.malformedPacketsReceived", "ipv6.malformedPacketsReceived"],
  invalid_destination: [
    "ipv4.invalidDestinationAddressesReceived",
    "ipv6.invalidDestinationAddressesReceived",
  ],
  invalid_source: ["ipv4.invalidSourceAddressesReceived", "ipv6.invalidSourceAddressesReceived"],
  unknown_protocol: ["ipv4.unknownProtocolRcvdPackets", "ipv6.unknownProtocolRcvdPackets"],
  unsupported_header: ["ipv4.unsupportedHeadersReceived", "ipv6.unsupportedHeadersReceived"],
  no_next_header: ["ipv4.noNextHeaderReceived", "ipv6.noNextHeaderReceived"],
  other_transport: ["ipv4.otherTransportPacketsReceived", "ipv6.otherTransportPacketsReceived"],
  reassembly_timeout: ["ipv4.reassemblyTimeouts", "ipv6.reassemblyTimeouts"],
  reassembly_eviction: ["ipv4.reassemblyEvictions", "ipv6.reassemblyEvictions"],
  reassembly_overlap: ["ipv4.reassemblyOverlaps", "ipv6.reassemblyOverlaps"],
  prerouting_hook: ["ipv4.preroutingDropped", "ipv6.preroutingDropped"],
  input_hook: ["ipv4.inputDropped", "ipv6.inputDropped"],
  output_hook: ["ipv4.outputDropped", "ipv6.outputDropped"],
  postrouting_hook: ["ipv4.postroutingDropped", "ipv6.postroutingDropped"],
  too_big: ["ipv4.outgoingPacketTooBig", "ipv6.outgoingPacketTooBig"],
  icmp_invalid: ["icmp.v4.packetsReceived.invalid", "icmp.v6.packetsReceived.invalid"],
  icmp_unrecognized: ["icmp.v6.packetsReceived.unrecognized"],
  icmp_rate_limited: ["icmp.v4.packetsSent.rateLimited", "icmp.v6.packetsSent.rateLimited"],
  icmp_no_route: ["icmp.v4.packetsSent.noRoute", "icmp.v6.packetsSent.noRoute"],
  icmp_send_dropped: ["icmp.v4.packetsSent.dropped", "icmp.v6.packetsSent.dropped"],
};

const OUTCOME_PREFIX = "service.outcomes.";

/** One refresh: a WatchStats snapshot with the sessions and decision stats fetched for it. */
export interface TopSample {
  /** When the snapshot was taken (ms since the epoch). */
  atMs: number;
  counters: Record<string, number>;
  gauges: Record<string, number>;
  sessions: Session[];
  decisions: GetDecisionStatsResponse | null;
}

export function sampleOf(
  r: GetStatsResponse,
  sessions: Session[],
  decisions: GetDecisionStatsResponse | null,
): TopSample {
  const num = (m: Record<string, bigint>): Record<string, number> =>
    Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Number(v)]));
  const t = r.takenAt;
  return {
    atMs: t === undefined ? Date.now() : Number(t.seconds) * 1000 + t.nanos / 1e6,
    counters: num(r.counters),
    gauges: num(r.gauges),
    sessions,
    decisions,
  };
}

export interface Rated {
  total: number;
  /** Per second since the previous sample (0 for the first). */
  rate: number;
}

export interface SessionRow {
  sessionId: string;
  name: string;
  mode: string;
  inFlight: number;
  maxInFlight: number;
  decided: Rated;
  rejections: number;
  affinityFlows: number;
  flowVerdicts: number;
  p50Ms: number;
  p99Ms: number;
}

/** Everything the screen and the plain lines show, computed from the samples. */
export interface TopView {
  atMs: number;
  requests: Rated;
  /** "action.cause" → total and rate; every pair with a non-zero total. */
  outcomes: { action: string; cause: string; value: Rated }[];
  inFlight: number;
  decideSessions: number;
  observeSessions: number;
  latency: { windowMs: number; decisions: number; p50Ms: number; p99Ms: number; maxMs: number };
  sessions: SessionRow[];
  drops: { reason: string; value: Rated }[];
  history: { requestRate: number[]; inFlight: number[]; p99Ms: number[] };
}

const ms = (d: { seconds: bigint; nanos: number } | undefined): number =>
  d === undefined ? 0 : Number(d.seconds) * 1000 + d.nanos / 1e6;

/** Keeps the samples of the last minute and derives the view. */
export class TopModel {
  private prev: TopSample | null = null;
  private readonly history: { atMs: number; requestRate: number; inFlight: number; p99: number }[] =
    [];
  view: TopView | null = null;

  constructor(private readonly historyMs = 60_000) {}

  push(s: TopSample): TopView {
    const prev = this.prev;
    const dt = prev === null ? 0 : (s.atMs - prev.atMs) / 1000;
    const rated = (now: number, before: number | undefined): Rated => ({
      total: now,
      rate: prev === null || dt <= 0 ? 0 : Math.max(0, now - (before ?? 0)) / dt,
    });
    const c = s.counters;
    const outcomes: TopView["outcomes"] = [];
    for (const [k, v] of Object.entries(c)) {
      if (!k.startsWith(OUTCOME_PREFIX) || v === 0) continue;
      const [action, cause] = k.slice(OUTCOME_PREFIX.length).split(".");
      outcomes.push({ action, cause, value: rated(v, prev?.counters[k]) });
    }
    outcomes.sort((a, b) => b.value.total - a.value.total || a.action.localeCompare(b.action));
    const sum = (from: Record<string, number> | undefined, names: readonly string[]): number =>
      from === undefined ? 0 : names.reduce((n, k) => n + (from[k] ?? 0), 0);
    const drops: TopView["drops"] = [];
    for (const [reason, names] of Object.entries(DROP_COUNTERS)) {
      const total = sum(c, names);
      if (total > 0)
        drops.push({
          reason,
          value: rated(total, prev === null ? undefined : sum(prev.counters, names)),
        });
    }
    drops.sort((a, b) => b.value.total - a.value.total);
    const bySession = new Map((s.decisions?.sessions ?? []).map((d) => [d.sessionId, d]));
    const prevDecided = new Map(
      (prev?.sessions ?? []).map((x) => [x.sessionId, Number(x.decided)]),
    );
    const sessions: SessionRow[] = s.sessions.map((x) => {
      const d = bySession.get(x.sessionId);
      return {
        sessionId: x.sessionId,
        name: x.clientName,
        mode: modeName(x.mode) + (x.draining ? " (draining)" : ""),
        inFlight: x.inFlight,
        maxInFlight: x.maxInFlight,
        decided: rated(Number(x.decided), prevDecided.get(x.sessionId)),
        rejections: Number(x.rejections),
        affinityFlows: d?.affinityFlows ?? 0,
        flowVerdicts: d?.flowVerdicts ?? 0,
        p50Ms: ms(d?.latency?.p50),
        p99Ms: ms(d?.latency?.p99),
      };
    });
    const l = s.decisions?.latency;
    const view: TopView = {
      atMs: s.atMs,
      requests: rated(c["service.requests"] ?? 0, prev?.counters["service.requests"]),
      outcomes,
      inFlight: s.gauges["service.inFlight"] ?? 0,
      decideSessions: s.gauges["service.sessions"] ?? 0,
      observeSessions: s.gauges["service.observers"] ?? 0,
      latency: {
        windowMs: ms(s.decisions?.window),
        decisions: Number(l?.decisions ?? 0n),
        p50Ms: ms(l?.p50),
        p99Ms: ms(l?.p99),
        maxMs: ms(l?.max),
      },
      sessions,
      drops,
      history: { requestRate: [], inFlight: [], p99Ms: [] },
    };
    if (prev !== null)
      this.history.push({
        atMs: s.atMs,
        requestRate: view.requests.rate,
        inFlight: view.inFlight,
        p99: view.latency.p99Ms,
      });
    while (this.history.length > 0 && this.history[0].atMs <= s.atMs - this.historyMs)
      this.history.shift();
    view.history = {
      requestRate: this.history.map((h) => h.requestRate),
      inFlight: this.history.map((h) => h.inFlight),
      p99Ms: this.history.map((h) => h.p99),
    };
    this.prev = s;
    this.view = view;
    return view;
  }
}

const BARS = "▁▂▃▄▅▆▇█";

/** One character per value, scaled to the largest; the last `width` values. */
export function sparkline(values: readonly number[], width: number): string {
  const v = values.slice(-width);
  const max = Math.max(0, ...v);
  return v
    .map((x) => (max <= 0 ? BARS[0] : BARS[Math.min(7, Math.floor((x / max) * 7.999))]))
    .join("");
}

export const SORT_KEYS = ["decided/s", "in-flight", "rejections", "name"] as const;
export type SortKey = (typeof SORT_KEYS)[number];

function sortSessions(rows: SessionRow[], key: SortKey): SessionRow[] {
  const by: Record<SortKey, (a: SessionRow, b: SessionRow) => number> = {
    "decided/s": (a, b) => b.decided.rate - a.decided.rate || b.decided.total - a.decided.total,
    "in-flight": (a, b) => b.inFlight - a.inFlight,
    rejections: (a, b) => b.rejections - a.rejections,
    name: (a, b) => a.name.localeCompare(b.name),
  };
  return [...rows].sort((a, b) => by[key](a, b) || a.sessionId.localeCompare(b.sessionId));
}

const rate = (r: number): string => r.toFixed(1);
const msText = (v: number): string => `${v.toFixed(2)} ms`;

function columns(header: string[], rows: string[][], right: ReadonlySet<number>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]): string =>
    r
      .map((c, i) => (right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

export interface ScreenState {
  target: string;
  intervalMs: number;
  sort: SortKey;
  paused: boolean;
}

/** The full-screen view as lines (no escapes); the caller cuts them to the terminal. */
export function renderScreen(v: TopView, st: ScreenState, width: number): string[] {
  const spark = Math.max(10, Math.min(60, width - 60));
  const when = new Date(v.atMs).toISOString().replace("T", " ").slice(0, 19);
  const out: string[] = [];
  out.push(
    `icmpfwd top  ${st.target}  ${when}Z  every ${st.intervalMs} ms${st.paused ? "  [PAUSED]" : ""}   q quit  s sort (${st.sort})  p pause`,
  );
  out.push("");
  out.push(
    `requests  ${v.requests.total} total  ${rate(v.requests.rate)}/s`.padEnd(44) +
      sparkline(v.history.requestRate, spark),
  );
  out.push(`in-flight ${v.inFlight}`.padEnd(44) + sparkline(v.history.inFlight, spark));
  out.push(
    `decision  p50 ${msText(v.latency.p50Ms)}  p99 ${msText(v.latency.p99Ms)}`.padEnd(44) +
      sparkline(v.history.p99Ms, spark) +
      `  (p99; last ${Math.round(v.latency.windowMs / 1000)} s: ${v.latency.decisions} verdicts, max ${msText(v.latency.maxMs)})`,
  );
  out.push(`sessions  ${v.decideSessions} decide, ${v.observeSessions} observe`);
  out.push("");
  out.push(
    ...columns(
      ["OUTCOME", "CAUSE", "TOTAL", "PER-S"],
      v.outcomes.map((o) => [o.action, o.cause, String(o.value.total), rate(o.value.rate)]),
      new Set([2, 3]),
    ),
  );
  if (v.outcomes.length === 0) out.push("(no requests yet)");
  out.push("");
  out.push(
    ...columns(
      [
        "SESSION",
        "NAME",
        "MODE",
        "IN-FLIGHT",
        "DECIDED/S",
        "DECIDED",
        "REJECTIONS",
        "AFFINITY",
        "FLOW-VERDICTS",
        "P50",
        "P99",
      ],
      sortSessions(v.sessions, st.sort).map((s) => [
        s.sessionId.slice(0, 8),
        s.name,
        s.mode,
        `${s.inFlight}/${s.maxInFlight}`,
        rate(s.decided.rate),
        String(s.decided.total),
        String(s.rejections),
        String(s.affinityFlows),
        String(s.flowVerdicts),
        msText(s.p50Ms),
        msText(s.p99Ms),
      ]),
      new Set([3, 4, 5, 6, 7, 8, 9, 10]),
    ),
  );
  if (v.sessions.length === 0) out.push("(no sessions)");
  out.push("");
  out.push(
    ...columns(
      ["NETSTACK DROP", "TOTAL", "PER-S"],
      v.drops.map((d) => [d.reason, String(d.value.total), rate(d.value.rate)]),
      new Set([1, 2]),
    ),
  );
  if (v.drops.length === 0) out.push("(no drops)");
  return out;
}

/** The non-terminal form: one line per sample. */
export function renderLine(v: TopView): string {
  const parts = [
    new Date(v.atMs).toISOString(),
    `requests=${v.requests.total}`,
    `rate=${rate(v.requests.rate)}/s`,
    `inFlight=${v.inFlight}`,
    `p50=${v.latency.p50Ms.toFixed(2)}ms`,
    `p99=${v.latency.p99Ms.toFixed(2)}ms`,
    `sessions=${v.decideSessions}+${v.observeSessions}`,
    ...v.outcomes.map((o) => `${o.action}.${o.cause}=${o.value.total}`),
    ...v.drops.map((d) => `drop.${d.reason}=${d.value.total}`),
  ];
  return parts.join(" ");
}

/** The --json form: the view without the history. */
export function viewJson(v: TopView): Record<string, unknown> {
  const { history: _history, ...rest } = v;
  return { ...rest, at: new Date(v.atMs).toISOString() };
}

// ---- the terminal ----

const ESC = "\x1b[";

/** Draws frames on a terminal; restores it on stop(). */
export class Screen {
  private active = false;

  constructor(private readonly out: NodeJS.WriteStream) {}

  start(): void {
    this.active = true;
    // Alternate screen, cursor hidden.
    this.out.write(`${ESC}?1049h${ESC}?25l`);
  }

  draw(lines: readonly string[]): void {
    const width = this.out.columns ?? 80;
    const height = this.out.rows ?? 24;
    const shown = lines.slice(0, height).map((l) => `${cut(l, width)}${ESC}K`);
    this.out.write(`${ESC}H${shown.join("\r\n")}${ESC}J`);
  }

  stop(): void {
    if (!this.active) return;
    this.active = false;
    this.out.write(`${ESC}?25h${ESC}?1049l`);
  }
}

/** Cuts a line to `width` characters (the bars are one column each). */
function cut(line: string, width: number): string {
  const chars = [...line];
  return chars.length <= width ? line : chars.slice(0, width).join("");
}

export interface TopOptions {
  target: string;
  intervalMs: number;
  windowMs: number;
  /** Exit after this many samples (0: until q or a signal). */
  iterations: number;
  json: boolean;
  /** Full screen (stdout is a terminal) or plain lines. */
  tty: boolean;
}

/** Runs the view until q, a signal, `iterations` samples, or the stream ends; the exit code. */
export async function runTop(
  c: ServiceClient,
  o: TopOptions,
  out: NodeJS.WriteStream = process.stdout,
  input: NodeJS.ReadStream = process.stdin,
): Promise<number> {
  const { protoTimeOfMs } = await import("../service/wire.js");
  const model = new TopModel();
  const st: ScreenState = {
    target: o.target,
    intervalMs: o.intervalMs,
    sort: SORT_KEYS[0],
    paused: false,
  };
  const screen = o.tty ? new Screen(out) : null;
  const redraw = (): void => {
    if (screen !== null && model.view !== null && !st.paused)
      screen.draw(renderScreen(model.view, st, out.columns ?? 80));
  };
  const call = c.client.watchStats({ interval: protoTimeOfMs(o.intervalMs) }, c.metadata());
  let samples = 0;
  let queue: Promise<void> = Promise.resolve();
  let stopped = false;

  return new Promise<number>((resolve, reject) => {
    const cleanup = (): void => {
      if (stopped) return;
      stopped = true;
      screen?.stop();
      if (o.tty && input.isTTY) {
        input.setRawMode(false);
        input.pause();
      }
      input.off("data", onKey);
      out.off("resize", redraw);
      process.off("SIGINT", quit);
      process.off("SIGTERM", quit);
    };
    const quit = (): void => {
      cleanup();
      call.cancel();
      resolve(0);
    };
    const onKey = (b: Buffer): void => {
      for (const ch of b.toString("utf8")) {
        if (ch === "q" || ch === "Q" || ch === "\x03") {
          quit();
          return;
        }
        if (ch === "s" || ch === "S") {
          st.sort = SORT_KEYS[(SORT_KEYS.indexOf(st.sort) + 1) % SORT_KEYS.length];
        } else if (ch === "p" || ch === "P" || ch === " ") {
          st.paused = !st.paused;
          if (st.paused && screen !== null && model.view !== null)
            screen.draw(renderScreen(model.view, st, out.columns ?? 80));
        }
        redraw();
      }
    };
    const sample = async (r: GetStatsResponse): Promise<void> => {
      const sessions = await c.listSessions();
      // A service without EchoAdmin (or one that refuses it) still shows everything else.
      const decisions = await c
        .call(c.admin.getDecisionStats, { window: protoTimeOfMs(o.windowMs) })
        .catch(() => null);
      if (stopped) return;
      const view = model.push(sampleOf(r, sessions, decisions));
      if (screen !== null) redraw();
      else out.write(`${o.json ? JSON.stringify(viewJson(view)) : renderLine(view)}\n`);
      samples++;
      if (o.iterations > 0 && samples >= o.iterations) quit();
    };
    call.on("data", (r: GetStatsResponse) => {
      queue = queue
        .then(() => (stopped ? undefined : sample(r)))
        .catch((e: unknown) => {
          cleanup();
          call.cancel();
          reject(e);
        });
    });
    call.on("error", (e: { code?: number }) => {
      if (stopped) return;
      cleanup();
      // CANCELLED is our own quit.
      if (e.code === 1) resolve(0);
      else reject(e);
    });
    call.on("end", () => {
      if (stopped) return;
      cleanup();
      resolve(0);
    });
    process.once("SIGINT", quit);
    process.once("SIGTERM", quit);
    if (screen !== null) {
      screen.start();
      out.on("resize", redraw);
      if (input.isTTY) {
        input.setRawMode(true);
        input.resume();
        input.on("data", onKey);
      }
    }
  });
}
