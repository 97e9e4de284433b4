/**
 * IPv4 option processing on receive (gVisor's ipv4 processIPOptions with its option usages):
 * validate every option, update Record Route and Timestamp with this host, and build the option
 * set the next stage uses (the Echo Reply's, or the one handed up with the packet).
 */
import type { Address } from "../address.js";
import { IPV4_MAX_OPTIONS_SIZE, IPV4_MIN_SIZE } from "../header/ipv4.js";
import {
  IPV4_OPTION_EOL,
  IPV4_OPTION_EXPERIMENT,
  IPV4_OPTION_EXPERIMENT_LENGTH,
  IPV4_OPTION_LENGTH_OFFSET,
  IPV4_OPTION_NOP,
  IPV4_OPTION_RECORD_ROUTE,
  IPV4_OPTION_ROUTER_ALERT,
  IPV4_OPTION_ROUTER_ALERT_LENGTH,
  IPV4_OPTION_ROUTER_ALERT_VALUE_OFFSET,
  IPV4_OPTION_RR_HEADER_LENGTH,
  IPV4_OPTION_RR_POINTER_OFFSET,
  IPV4_OPTION_TIMESTAMP,
  IPV4_OPTION_TS_HEADER_LENGTH,
  IPV4_OPTION_TS_OFLW_FLG_OFFSET,
  IPV4_OPTION_TS_ONLY,
  IPV4_OPTION_TS_POINTER_OFFSET,
  IPV4_OPTION_TS_PRESPECIFIED,
  IPV4_OPTION_TS_SIZE,
  IPV4_OPTION_TS_WITH_ADDRESS,
  IPV4_OPTION_TS_WITH_ADDRESS_SIZE,
  IPv4OptionRecordRoute,
  IPv4OptionTimestamp,
  ipv4RouterAlertValue,
  ipv4TimestampNow,
} from "../header/ipv4-options.js";
import type { IPStats } from "../stats.js";

/**
 * What to do with one kind of option (gVisor's optionAction): `remove` leaves it out of the
 * output set, `process` checks it and updates it with this host, `verify` checks it and passes
 * it unchanged, `pass` passes it unchecked.
 */
export type OptionAction = "remove" | "process" | "verify" | "pass";

/** The action per kind of option for one use of the options (gVisor's optionsUsage). */
export interface OptionUsage {
  readonly timestamp: OptionAction;
  readonly recordRoute: OptionAction;
  readonly routerAlert: OptionAction;
  readonly unknown: OptionAction;
}

/**
 * An Echo Request: Record Route and Timestamp are updated and sent back in the reply, unknown
 * options are left out (RFC 1122 §3.2.2.6).
 */
export const OPTION_USAGE_ECHO: OptionUsage = {
  timestamp: "process",
  recordRoute: "process",
  routerAlert: "verify",
  unknown: "remove",
};

/** Any other packet handed to the transport layer: unknown options are passed along. */
export const OPTION_USAGE_RECEIVE: OptionUsage = {
  timestamp: "process",
  recordRoute: "process",
  routerAlert: "verify",
  unknown: "pass",
};

/** A fragment before reassembly: check only, change nothing. */
export const OPTION_USAGE_VERIFY: OptionUsage = {
  timestamp: "verify",
  recordRoute: "verify",
  routerAlert: "verify",
  unknown: "remove",
};

/**
 * A bad option (gVisor's IPv4OptParameterProblem). `pointer` is the offset in the IP header
 * of the octet in error, as the ICMP Parameter Problem carries it.
 */
export interface OptionProblem {
  readonly kind: "problem";
  readonly pointer: number;
  /** Whether the sender gets a Parameter Problem (else the packet is dropped silently). */
  readonly needICMP: boolean;
}

export interface ProcessedOptions {
  readonly kind: "ok";
  /** The output option set, padded with zeros to a multiple of 4 (maybe empty). */
  readonly options: Uint8Array;
  readonly routerAlert: boolean;
}

export interface OptionContext {
  /** The address recorded for this host (the NIC's main address, or the destination). */
  readonly localAddress: Address;
  /** Wall-clock milliseconds (for the RFC 791 timestamp: ms since midnight UT). */
  readonly wallClockMs: number;
  readonly stats: IPStats;
}

function problem(pointer: number, needICMP = true): OptionProblem {
  return { kind: "problem", pointer, needICMP };
}

/**
 * Parses and checks `options` (the bytes between the fixed header and IHL; not modified) and
 * builds the output set per `usage`. Every option but NOP may appear once; EOL ends the list;
 * a length that is short for its kind, runs past the header or is below 2 is a problem at the
 * option (as Linux reports it). Never throws.
 */
export function processIPv4Options(
  options: Uint8Array,
  usage: OptionUsage,
  ctx: OptionContext,
): ProcessedOptions | OptionProblem {
  const out = new Uint8Array(IPV4_MAX_OPTIONS_SIZE);
  const seen = new Uint8Array(256);
  const n = Math.min(options.length, IPV4_MAX_OPTIONS_SIZE);
  let w = 0;
  let routerAlert = false;
  let i = 0;
  while (i < n) {
    const at = IPV4_MIN_SIZE + i;
    const type = options[i];
    if (type === IPV4_OPTION_NOP) {
      out[w++] = IPV4_OPTION_NOP;
      i++;
      continue;
    }
    if (type === IPV4_OPTION_EOL) {
      out[w++] = IPV4_OPTION_EOL;
      break;
    }
    // Every other option has a length octet.
    if (i + 1 >= n) return problem(at);
    const length = options[i + IPV4_OPTION_LENGTH_OFFSET];
    if (length <= IPV4_OPTION_LENGTH_OFFSET || length > n - i) return problem(at);
    if (
      (type === IPV4_OPTION_TIMESTAMP && length < IPV4_OPTION_TS_HEADER_LENGTH) ||
      (type === IPV4_OPTION_RECORD_ROUTE && length < IPV4_OPTION_RR_HEADER_LENGTH) ||
      (type === IPV4_OPTION_ROUTER_ALERT && length !== IPV4_OPTION_ROUTER_ALERT_LENGTH) ||
      // gVisor's IPv4OptionIterator.Next (Dec 2024): the experiment option is exactly 4 bytes.
      (type === IPV4_OPTION_EXPERIMENT && length !== IPV4_OPTION_EXPERIMENT_LENGTH)
    ) {
      return problem(at + IPV4_OPTION_LENGTH_OFFSET);
    }
    if (seen[type] !== 0) return problem(at);
    seen[type] = 1;

    let action: OptionAction;
    if (type === IPV4_OPTION_TIMESTAMP) {
      ctx.stats.optionTimestampReceived++;
      action = usage.timestamp;
    } else if (type === IPV4_OPTION_RECORD_ROUTE) {
      ctx.stats.optionRecordRouteReceived++;
      action = usage.recordRoute;
    } else if (type === IPV4_OPTION_ROUTER_ALERT) {
      ctx.stats.optionRouterAlertReceived++;
      routerAlert = true;
      action = usage.routerAlert;
    } else {
      ctx.stats.optionUnknownReceived++;
      action = usage.unknown;
    }
    if (action !== "remove") {
      // Work on the copy in the output set; the request's bytes stay as they came.
      out.set(options.subarray(i, i + length), w);
      const copy = out.subarray(w, w + length);
      let pointer = -1;
      if (action !== "pass") {
        if (type === IPV4_OPTION_TIMESTAMP) pointer = handleTimestamp(copy, action, ctx);
        else if (type === IPV4_OPTION_RECORD_ROUTE) pointer = handleRecordRoute(copy, action, ctx);
        else if (type === IPV4_OPTION_ROUTER_ALERT && ipv4RouterAlertValue(copy) !== 0)
          pointer = IPV4_OPTION_ROUTER_ALERT_VALUE_OFFSET;
      }
      if (pointer >= 0) return problem(at + pointer);
      w += length;
    }
    i += length;
  }
  return { kind: "ok", options: out.subarray(0, (w + 3) & ~3), routerAlert };
}

/** RFC 791 p. 22. Returns the offset in the option of the octet in error, or -1. */
function handleTimestamp(option: Uint8Array, action: OptionAction, ctx: OptionContext): number {
  const ts = new IPv4OptionTimestamp(option);
  const flags = ts.flags;
  let entrySize: number;
  if (flags === IPV4_OPTION_TS_ONLY) entrySize = IPV4_OPTION_TS_SIZE;
  else if (flags === IPV4_OPTION_TS_WITH_ADDRESS || flags === IPV4_OPTION_TS_PRESPECIFIED)
    entrySize = IPV4_OPTION_TS_WITH_ADDRESS_SIZE;
  else return IPV4_OPTION_TS_OFLW_FLG_OFFSET;
  const pointer = ts.pointer;
  // "The smallest legal value is 5."
  if (pointer <= IPV4_OPTION_TS_HEADER_LENGTH) return IPV4_OPTION_TS_POINTER_OFFSET;
  const nextSlot = pointer - (IPV4_OPTION_TS_HEADER_LENGTH + 1);
  const dataLength = ts.length - IPV4_OPTION_TS_HEADER_LENGTH;
  if (pointer > ts.length) {
    // Full: count this host in the overflow counter; a full counter is an error.
    if (flags === IPV4_OPTION_TS_PRESPECIFIED) return -1;
    return ts.incrementOverflow() !== 0 ? -1 : IPV4_OPTION_TS_OFLW_FLG_OFFSET;
  }
  // Some room but not enough for an entry: Linux (and gVisor) point at the pointer.
  if (nextSlot + entrySize > dataLength) return IPV4_OPTION_TS_POINTER_OFFSET;
  if (action === "process") {
    ts.record(ctx.localAddress, ipv4TimestampNow(ctx.wallClockMs));
  }
  return -1;
}

/** RFC 791 p. 20. Returns the offset in the option of the octet in error, or -1. */
function handleRecordRoute(option: Uint8Array, action: OptionAction, ctx: OptionContext): number {
  const rr = new IPv4OptionRecordRoute(option);
  if (rr.length < IPV4_OPTION_RR_HEADER_LENGTH + 4) return IPV4_OPTION_LENGTH_OFFSET;
  const pointer = rr.pointer;
  // "The smallest legal value for the pointer is 4."
  if (pointer <= IPV4_OPTION_RR_HEADER_LENGTH) return IPV4_OPTION_RR_POINTER_OFFSET;
  // Full: passed on without this host, and no error (as most implementations do).
  if (pointer > rr.length) return -1;
  // Some room but not enough for an address: Linux (and gVisor) point at the pointer.
  if (pointer + 4 > rr.length + 1) return IPV4_OPTION_RR_POINTER_OFFSET;
  if (action === "process") rr.storeAddress(ctx.localAddress);
  return -1;
}
