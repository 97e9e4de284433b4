/**
 * The admin RPCs besides GetStats: WatchStats (a snapshot at once, then one per interval) and
 * Ping (Echo Requests from a netstack ping endpoint, each reply streamed with its RTT). Ping
 * refuses destinations the netstack would answer itself — its own addresses, and temporary
 * addresses a promiscuous NIC answers for routed prefixes, which would come back through the
 * TUN into the service.
 */
import type { ServerWritableStream } from "@grpc/grpc-js";
import type { Duration } from "../gen/google/protobuf/duration.js";
import type {
  GetStatsResponse,
  PingEvent,
  PingRequest,
  WatchStatsRequest,
} from "../gen/icmpfwd/v1/forwarder.js";
import {
  type Address,
  formatAddress,
  isIPv4,
  isUnicastOutsideLoopback,
  parseAddress,
} from "../netstack/address.js";
import { isTcpipError } from "../netstack/errors.js";
import type { Stack } from "../netstack/stack.js";
import { type ServiceError, serviceError, toGrpcError } from "./errors.js";
import { protoTimeOfMs } from "./wire.js";

/** WatchStats: the interval when none is given, the shortest one honoured, the longest taken. */
export const WATCH_DEFAULT_MS = 1000;
export const WATCH_MIN_MS = 100;
export const WATCH_MAX_MS = 3_600_000;

export const PING_LIMITS = {
  defaultCount: 4,
  maxCount: 10_000,
  defaultIntervalMs: 1000,
  minIntervalMs: 10,
  maxIntervalMs: 60_000,
  defaultTimeoutMs: 1000,
  maxTimeoutMs: 60_000,
  /** payload_size 0 means this (ping(8)'s default). */
  defaultPayloadSize: 56,
  /**
   * The largest Echo payload one datagram carries: IPv4, 65,535 − 20 (header) − 8 (Echo
   * header); IPv6, 65,535 (payload length) − 8.
   */
  maxPayloadSize: { ipv4: 65_507, ipv6: 65_527 },
  /** The longest destination text (an IPv6 address is at most 45 characters). */
  maxDestinationText: 64,
} as const;

export function msOfDuration(d: Duration | undefined): number {
  if (d === undefined) return 0;
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}

/** Streams a snapshot now and then every interval (at least 100 ms) until the call ends. */
export function watchStats(
  call: ServerWritableStream<WatchStatsRequest, GetStatsResponse>,
  snapshot: () => GetStatsResponse,
  track: (stop: () => void) => () => void,
): void {
  const asked = msOfDuration(call.request.interval);
  if (asked > WATCH_MAX_MS) {
    // A timer that long would overflow (Node runs it every 1 ms instead).
    const e = serviceError(
      "invalidArgument",
      `interval: at most ${WATCH_MAX_MS} ms, got ${asked} ms`,
    );
    call.emit("error", toGrpcError(e));
    return;
  }
  const every = asked === 0 ? WATCH_DEFAULT_MS : Math.max(WATCH_MIN_MS, asked);
  call.write(snapshot());
  const timer = setInterval(() => {
    if (!call.cancelled && !call.writableEnded) call.write(snapshot());
  }, every);
  const stop = (): void => {
    clearInterval(timer);
    untrack();
    if (!call.cancelled && !call.writableEnded) call.end();
  };
  const untrack = track(stop);
  call.on("cancelled", stop);
  call.on("error", stop);
}

export interface PingPlan {
  destination: Address;
  family: "ipv4" | "ipv6";
  count: number;
  intervalMs: number;
  timeoutMs: number;
  payloadSize: number;
}

/** Validates a PingRequest against the limits and the netstack's own and temporary addresses. */
export function planPing(req: PingRequest, stack: Stack): PingPlan | ServiceError {
  const L = PING_LIMITS;
  if (req.destination.length > L.maxDestinationText)
    return serviceError(
      "invalidArgument",
      `destination: at most ${L.maxDestinationText} characters, got ${req.destination.length}`,
    );
  const text = req.destination.trim();
  const destination = parseAddress(text);
  if (destination === null)
    return serviceError(
      "invalidArgument",
      `destination: "${req.destination}" is not an IP address`,
    );
  const v4 = isIPv4(destination);
  if (!isUnicastOutsideLoopback(destination))
    return serviceError(
      "invalidArgument",
      `destination: ${text} is not a unicast address outside the loopback range`,
    );
  const refusal = ownOrTemporary(stack, destination);
  if (refusal !== null) return serviceError("failedPrecondition", refusal);
  const count = req.count === 0 ? L.defaultCount : req.count;
  if (count > L.maxCount)
    return serviceError("invalidArgument", `count: at most ${L.maxCount}, got ${count}`);
  const interval = msOfDuration(req.interval);
  const intervalMs = interval === 0 ? L.defaultIntervalMs : interval;
  if (intervalMs < L.minIntervalMs || intervalMs > L.maxIntervalMs)
    return serviceError(
      "invalidArgument",
      `interval: between ${L.minIntervalMs} and ${L.maxIntervalMs} ms, got ${intervalMs} ms`,
    );
  const timeout = msOfDuration(req.timeout);
  const timeoutMs = timeout === 0 ? L.defaultTimeoutMs : timeout;
  if (timeoutMs > L.maxTimeoutMs)
    return serviceError(
      "invalidArgument",
      `timeout: at most ${L.maxTimeoutMs} ms, got ${timeoutMs} ms`,
    );
  const family = v4 ? "ipv4" : "ipv6";
  const payloadSize = req.payloadSize === 0 ? L.defaultPayloadSize : req.payloadSize;
  const maxPayload = L.maxPayloadSize[family];
  if (payloadSize > maxPayload)
    return serviceError(
      "invalidArgument",
      `payload_size: at most ${maxPayload} bytes to an ${v4 ? "IPv4" : "IPv6"} destination, got ${payloadSize}`,
    );
  return { destination, family, count, intervalMs, timeoutMs, payloadSize };
}

/**
 * Why the netstack would answer `dst` itself (null when it would not): an address of one of its
 * NICs, or — on a promiscuous NIC — a temporary address in a routed prefix that holds none of
 * the NIC's own addresses (`--route` with `--promiscuous`), which the kernel routes back into
 * the TUN.
 */
export function ownOrTemporary(stack: Stack, dst: Address): string | null {
  const text = formatAddress(dst);
  for (const nic of stack.allNICs()) {
    const m = isIPv4(dst) ? nic.matchIPv4Destination(dst) : nic.matchIPv6Destination(dst);
    if (m.kind === "unicast" || m.kind === "broadcast" || m.kind === "multicast")
      return `${text} is the netstack's own address (NIC ${nic.id}): its Echo Requests would be answered inside the netstack`;
    if (m.kind !== "temporary") continue;
    const own = nic.addresses();
    for (const r of stack.routeTable()) {
      if (r.nic !== nic.id || !r.destination.contains(dst)) continue;
      if (own.some((a) => r.destination.contains(a.address))) continue;
      return `${text} is a temporary address of the netstack (${r.destination} is routed into its promiscuous NIC ${nic.id}): the Echo Requests would come back through the TUN into the service`;
    }
  }
  return null;
}

/** Sends the planned Echo Requests and streams one PingEvent per sequence; then ends the call. */
export function runPing(
  call: ServerWritableStream<PingRequest, PingEvent>,
  stack: Stack,
  plan: PingPlan,
): void {
  const ep = stack.openPingEndpoint({ family: plan.family });
  if (isTcpipError(ep)) {
    call.emit("error", toGrpcError(serviceError("failedPrecondition", ep.message)));
    return;
  }
  const payload = new Uint8Array(plan.payloadSize);
  for (let i = 0; i < payload.length; i++) payload[i] = i & 0xff;
  /** Sequence → [send time, its timeout]. */
  const outstanding = new Map<number, { sentAt: number; timer: ReturnType<typeof setTimeout> }>();
  let sent = 0;
  let done = false;
  let sendTimer: ReturnType<typeof setInterval> | null = null;
  const finish = (error: ServiceError | null): void => {
    if (done) return;
    done = true;
    if (sendTimer !== null) clearInterval(sendTimer);
    for (const o of outstanding.values()) clearTimeout(o.timer);
    outstanding.clear();
    ep.close();
    if (call.cancelled || call.writableEnded) return;
    if (error === null) call.end();
    else call.emit("error", toGrpcError(error));
  };
  const emit = (e: PingEvent): void => {
    if (!done && !call.cancelled) call.write(e);
    if (sent === plan.count && outstanding.size === 0) finish(null);
  };
  ep.onReply = (r) => {
    const o = outstanding.get(r.sequence);
    if (o === undefined || r.ident !== ep.ident) return;
    clearTimeout(o.timer);
    outstanding.delete(r.sequence);
    emit({
      sequence: r.sequence,
      received: true,
      rtt: protoTimeOfMs(performance.now() - o.sentAt),
      ttl: r.ttl,
      source: Buffer.from(r.remoteAddress),
    });
  };
  const sendOne = (): void => {
    if (done) return;
    const seq = ++sent;
    if (sent === plan.count && sendTimer !== null) clearInterval(sendTimer);
    const timer = setTimeout(() => {
      outstanding.delete(seq);
      emit({ sequence: seq, received: false, rtt: undefined, ttl: 0, source: Buffer.alloc(0) });
    }, plan.timeoutMs);
    outstanding.set(seq, { sentAt: performance.now(), timer });
    const err = ep.sendEcho(plan.destination, seq & 0xffff, payload);
    if (err !== null) {
      finish(
        serviceError(
          "failedPrecondition",
          `Echo Request ${seq} to ${formatAddress(plan.destination)} not sent: ${err.message}`,
        ),
      );
    }
  };
  call.on("cancelled", () => finish(null));
  sendOne();
  if (plan.count > 1 && !done) sendTimer = setInterval(sendOne, plan.intervalMs);
}
