/**
 * Real packets from the Linux kernel, used as test vectors.
 *
 * Captured once (Linux 6.18, iputils ping 20221126, tcpdump 4.99.3) in two private network
 * namespaces joined by a veth pair, deleted afterwards: 198.18.0.1/24 + fd00:9::1/64 (nodad) on
 * one side, 198.18.0.2/24 + fd00:9::2/64 (nodad) on the other. On the .1 side:
 *   tcpdump -i <veth> -w v4.pcap icmp          +  ping -c 1 -p a5 -Q 0x28 198.18.0.2
 *   tcpdump -i <veth> -w v6.pcap 'icmp6 and (ip6[40]==128 or ip6[40]==129)'
 *                                              +  ping -6 -c 1 -Q 0x28 fd00:9::2
 * The 14-byte Ethernet header is stripped; what remains is the IP datagram as a TUN sees it.
 * `tcpdump -v` decoded them as:
 *   IP (tos 0x28, ttl 64, id 55633, offset 0, flags [DF], proto ICMP (1), length 84)
 *     198.18.0.1 > 198.18.0.2: ICMP echo request, id 3862, seq 1, length 64
 *   IP (tos 0x28, ttl 64, id 52257, offset 0, flags [none], proto ICMP (1), length 84)
 *     198.18.0.2 > 198.18.0.1: ICMP echo reply, id 3862, seq 1, length 64
 *   IP6 (class 0x28, flowlabel 0x73880, hlim 64, next-header ICMPv6 (58) payload length: 64)
 *     fd00:9::1 > fd00:9::2: [icmp6 sum ok] ICMP6, echo request, id 5114, seq 1
 *   IP6 (class 0x28, flowlabel 0xfc104, hlim 64, next-header ICMPv6 (58) payload length: 64)
 *     fd00:9::2 > fd00:9::1: [icmp6 sum ok] ICMP6, echo reply, id 5114, seq 1
 */

/** Bytes from hex text; whitespace is ignored, and several parts are concatenated. */
export function hex(...parts: string[]): Uint8Array {
  return Uint8Array.from(Buffer.from(parts.join("").replace(/\s+/g, ""), "hex"));
}

// ping's 56 data bytes: a 16-byte struct timeval, then the pattern (-p a5, or ping's default).
const V4_ECHO_DATA = `d93a076b00000000 0795050000000000 ${"a5".repeat(40)}`;
const V6_ECHO_DATA = `d73b076b00000000 23fd060000000000
  101112131415161718191a1b1c1d1e1f 2021222324252627 28292a2b2c2d2e2f 3031323334353637`;

const V4_ECHO_REQUEST: readonly string[] = [
  "4528 0054 d951 4000 4001 d507 c6120001 c6120002", // IPv4: tos 0x28, DF, TTL 64, proto 1
  "0800 0abd 0f16 0001", // ICMP: Echo, ident 3862, seq 1
  V4_ECHO_DATA,
];
const V4_ECHO_REPLY: readonly string[] = [
  "4528 0054 cc21 0000 4001 2238 c6120002 c6120001",
  "0000 12bd 0f16 0001", // ICMP: Echo Reply
  V4_ECHO_DATA,
];
const V6_ECHO_REQUEST: readonly string[] = [
  // IPv6: class 0x28, flow label 0x73880, payload 64, next header 58, hop limit 64
  "6287 3880 0040 3a40 fd000009000000000000000000000001 fd000009000000000000000000000002",
  "8000 a9fc 13fa 0001", // ICMPv6: Echo Request, ident 5114, seq 1
  V6_ECHO_DATA,
];
const V6_ECHO_REPLY: readonly string[] = [
  "628f c104 0040 3a40 fd000009000000000000000000000002 fd000009000000000000000000000001",
  "8100 a8fc 13fa 0001", // ICMPv6: Echo Reply
  V6_ECHO_DATA,
];

/** Fresh copies, so a test may mutate them. */
export const v4EchoRequest = (): Uint8Array => hex(...V4_ECHO_REQUEST);
export const v4EchoReply = (): Uint8Array => hex(...V4_ECHO_REPLY);
export const v6EchoRequest = (): Uint8Array => hex(...V6_ECHO_REQUEST);
export const v6EchoReply = (): Uint8Array => hex(...V6_ECHO_REPLY);

export const V4_ECHO_PAYLOAD: Uint8Array = hex(V4_ECHO_DATA);
export const V6_ECHO_PAYLOAD: Uint8Array = hex(V6_ECHO_DATA);
