/**
 * The differences with gVisor the differential test knows. Anything else fails it.
 *
 * The peer is Debian's golang-gvisor-gvisor-dev (snapshot 0.0~20221219), older than gVisor
 * master, whose behaviour icmpfwd follows. test/conformance/gvisor-master.test.ts pins nine
 * rules of master; for each, whether the snapshot differs:
 *  1. Echo Reply IP ID copied, 0 included (ipv4/icmp.go sendICMPEchoReply): same in the snapshot.
 *  2. ICMPv4 errors quote the header as rewritten, checksum as received (ipv4.go
 *     deliverPacketLocally, icmp.go returnError): same.
 *  3. ICMPv6 errors after reassembly quote the first fragment's headers (fragmentation/
 *     reassembler.go process): same.
 *  4. No ICMPv4 error about a fragment of an ICMP datagram (icmp.go returnError): same for the
 *     generated inputs (reassembly timeouts are not generated).
 *  5. IGMP, IPv4 protocol 58 and IPv6 next header 1 silent (handleIGMP, the registered ICMP
 *     transports): same.
 *  6. A fragment that is a strict subset of one received abandons the datagram
 *     (fragmentation/reassembler.go process, June 2026): the snapshot ignores the subset and
 *     completes the datagram — entry "subset-fragment" below.
 *  7. IPv6 with an IPv4-mapped address dropped (ipv6.go checkV4Mapped): not reached by the
 *     generated inputs (no route back to a mapped source; a mapped destination is not ours).
 *  8. IPv4 option 30 must be 4 bytes (header/ipv4.go IPv4OptionIterator.Next, Dec 2024): the
 *     snapshot takes any length as an unknown option — entry "option-30-length" below.
 *  9. IPv4 source selection, longest prefix (stack/addressable_endpoint_state.go
 *     acquirePrimaryAddressRLocked): same with one address per family.
 * Then the deviations README "Deviations from gVisor" accepts, which master shares with the
 * snapshot. (Its bad-ICMPv4-checksum row needs no entry: neither stack writes anything, gVisor
 * has no raw socket open here.)
 */
import { describe } from "./compare.js";

export interface KnownDifference {
  id: string;
  /** "snapshot": the snapshot has master's old behaviour; "deviation": icmpfwd differs on purpose. */
  kind: "snapshot" | "deviation";
  /** The master function (and the date of the change for snapshot differences). */
  where: string;
  /** True when this difference explains the outputs of `input`. */
  explains(
    input: readonly Uint8Array[],
    ours: readonly Uint8Array[],
    theirs: readonly Uint8Array[],
  ): boolean;
}

/** The IPv4 options of `p` as (type, length, offset) until the first malformed one. */
function v4Options(p: Uint8Array): Array<{ type: number; len: number }> {
  const out: Array<{ type: number; len: number }> = [];
  if (p.length < 20 || p[0] >> 4 !== 4) return out;
  const end = Math.min((p[0] & 0x0f) * 4, p.length);
  for (let i = 20; i < end; ) {
    const type = p[i];
    if (type === 0) break;
    if (type === 1) {
      i++;
      continue;
    }
    const len = i + 1 < end ? p[i + 1] : 0;
    out.push({ type, len });
    if (len < 2 || i + len > end) break;
    i += len;
  }
  return out;
}

/** Fragment ranges (in bytes of the fragmentable part) of IPv4 or IPv6 fragments. */
function ranges(input: readonly Uint8Array[]): Array<{ first: number; last: number }> {
  return input.flatMap((p) => {
    if (p[0] >> 4 === 4 && p.length >= 20) {
      const off = (((p[6] & 0x1f) << 8) | p[7]) * 8;
      const len = ((p[2] << 8) | p[3]) - (p[0] & 0x0f) * 4;
      return [{ first: off, last: off + len - 1 }];
    }
    if (p[0] >> 4 === 6 && p.length >= 48 && p[6] === 44) {
      const off = ((p[42] << 8) | p[43]) & ~7;
      return [{ first: off, last: off + p.length - 48 - 1 }];
    }
    return [];
  });
}

/**
 * The ICMPv6 type of the packet IPv6 fragments make up (data merged by offset, the chain of
 * Hop-by-Hop / Destination Options / Routing headers walked), or null.
 */
function reassembledICMPv6Type(input: readonly Uint8Array[]): number | null {
  const data = new Uint8Array(70_000);
  let next = -1;
  for (const p of input) {
    if (p.length < 48 || p[0] >> 4 !== 6 || p[6] !== 44) return null;
    const off = ((p[42] << 8) | p[43]) & ~7;
    if (off === 0) next = p[40];
    data.set(p.subarray(48), off);
  }
  let i = 0;
  while (next === 0 || next === 60 || next === 43) {
    next = data[i];
    i += (data[i + 1] + 1) * 8;
  }
  return next === 58 ? data[i] : null;
}

const isV4ParamProblem = (p: Uint8Array): boolean => describe(p) === "v4 icmp 12/0";

export const KNOWN: readonly KnownDifference[] = [
  {
    id: "option-30-length",
    kind: "snapshot",
    where: "header/ipv4.go IPv4OptionIterator.Next (master, Dec 2024)",
    // Master: option 30 of a length other than 4 is a bad option (Parameter Problem, or silence
    // where no error may be sent); the snapshot skips it as an unknown option.
    explains: (input, ours) =>
      input.length === 1 &&
      v4Options(input[0]).some((o) => o.type === 30 && o.len !== 4) &&
      ours.every(isV4ParamProblem),
  },
  {
    id: "subset-fragment",
    kind: "snapshot",
    where: "network/internal/fragmentation/reassembler.go process (master, June 2026)",
    // Master abandons the datagram when a fragment is a strict subset of one received; the
    // snapshot ignores the subset and may complete it.
    explains: (input, ours) => {
      const r = ranges(input);
      const subset = r.some((b, j) =>
        r
          .slice(0, j)
          .some(
            (a) =>
              a.first <= b.first && b.last <= a.last && (a.first !== b.first || a.last !== b.last),
          ),
      );
      return subset && ours.length === 0;
    },
  },
  {
    id: "df-reply-too-big",
    kind: "deviation",
    where:
      "ipv4/icmp.go sendICMPEchoReply → ipv4.go writePacket: fragments (TODO gvisor.dev/issue/5919)",
    // README "Deviations": an unfragmented Echo Request with DF whose reply exceeds the MTU is
    // not answered (outgoingPacketTooBig); gVisor fragments the reply.
    explains: (input, ours, theirs) =>
      input.length === 1 &&
      input[0][0] >> 4 === 4 &&
      (input[0][6] & 0x40) !== 0 &&
      input[0].length > 1500 &&
      ours.length === 0 &&
      theirs.length > 1,
  },
  {
    id: "non-first-fragment-param-problem",
    kind: "deviation",
    where: "ipv4/ipv4.go deliverPacketLocally → returnError (TODO gvisor.dev/issue/4058)",
    // README "Deviations": no Parameter Problem about a non-first fragment (RFC 1122 §3.2.2);
    // gVisor sends one per fragment with the bad option.
    explains: (input, ours, theirs) =>
      input.some((p) => p[0] >> 4 === 4 && p.length >= 20 && (((p[6] & 0x1f) << 8) | p[7]) > 0) &&
      theirs.filter(isV4ParamProblem).length > ours.filter(isV4ParamProblem).length &&
      ours.every(isV4ParamProblem),
  },
  {
    id: "icmpv6-error-about-fragmented-error",
    kind: "deviation",
    where: "ipv6/ipv6.go returnError: a fragment has no parsed transport header (ipv6.go Parse)",
    // README "Deviations": no ICMPv6 error about a fragmented ICMPv6 error message or Redirect
    // (RFC 4443 §2.4 e); gVisor sends one (here: Parameter Problem for an option after
    // reassembly).
    explains: (input, ours, theirs) => {
      const type = reassembledICMPv6Type(input);
      return (
        type !== null &&
        (type < 128 || type === 137) &&
        ours.length === 0 &&
        theirs.length > 0 &&
        theirs.every((p) => /^v6 icmp [0-4]\//.test(describe(p)))
      );
    },
  },
  {
    id: "neighbor-solicitation",
    kind: "deviation",
    where: "ipv6/icmp.go handleICMP (Neighbor Advertisement)",
    // README "Deviations": a TUN has no link-layer addresses; icmpfwd answers no NDP.
    explains: (input, ours, theirs) =>
      input.length === 1 &&
      describe(input[0]).startsWith("v6 icmp 135/") &&
      ours.length === 0 &&
      theirs.every((p) => describe(p).startsWith("v6 icmp 136/")),
  },
];
