/**
 * The routed chain of namespaces of "icmpfwd at the tunnel's entrance, the relay at its exit":
 *
 *   svc ──veth── exit ──veth── r1 ──veth── r2 ──veth── dst
 *   icmpfwd0      relay         router      router      destination
 *
 * svc runs `icmpfwd serve` (the destination prefixes routed into icmpfwd0) and traceroute; the
 * relay in exit reaches the service over the svc–exit link; r1 and r2 forward; r2 has no route
 * for the "unroutable" prefix, so it answers Destination Net Unreachable. Every address is in
 * 198.18.0.0/15 or fd00::/8; every namespace is the test's own (Netns deletes them).
 */
import { Netns } from "./netns.js";

export interface ChainAddresses {
  /** The service's end of the svc–exit link (where it listens). */
  serviceLink: string;
  /** The routers' addresses the chain's traffic meets them on (what traceroute prints). */
  r1: string;
  r2: string;
  destination: string;
  /** A destination r2 has no route for. */
  unroutable: string;
  /** Routed into icmpfwd0 but outside the relay's --allow. */
  notAllowed: string;
  /** What the relay's --allow covers. */
  allow: string[];
  /** What svc routes into icmpfwd0. */
  routed: string[];
}

export const CHAIN: { ipv4: ChainAddresses; ipv6: ChainAddresses } = {
  ipv4: {
    serviceLink: "198.18.20.1",
    r1: "198.18.21.2",
    r2: "198.18.22.2",
    destination: "198.18.30.9",
    unroutable: "198.18.31.9",
    notAllowed: "198.18.32.9",
    allow: ["198.18.30.0/24", "198.18.31.0/24"],
    routed: ["198.18.30.0/23", "198.18.32.0/24"],
  },
  ipv6: {
    serviceLink: "fd00:20::1",
    r1: "fd00:21::2",
    r2: "fd00:22::2",
    destination: "fd00:30::9",
    unroutable: "fd00:30:0:1::9",
    notAllowed: "fd00:32::9",
    allow: ["fd00:30::/64", "fd00:30:0:1::/64"],
    routed: ["fd00:30::/63", "fd00:32::/64"],
  },
};

export interface Chain {
  svc: Netns;
  exit: Netns;
  r1: Netns;
  r2: Netns;
  dst: Netns;
  all: Netns[];
  destroy(): Promise<void>;
}

/** Two namespaces joined by a veth pair with an IPv4 /30 and an IPv6 /64 on it. */
async function link(
  a: Netns,
  b: Netns,
  name: string,
  v4: [string, string, number],
  v6: [string, string, number],
): Promise<void> {
  await a.sh(`ip link add ${name}a type veth peer name ${name}b netns ${b.name}`);
  await a.sh(
    `ip addr add ${v4[0]}/${v4[2]} dev ${name}a && ip -6 addr add ${v6[0]}/${v6[2]} dev ${name}a nodad && ip link set ${name}a up`,
  );
  await b.sh(
    `ip addr add ${v4[1]}/${v4[2]} dev ${name}b && ip -6 addr add ${v6[1]}/${v6[2]} dev ${name}b nodad && ip link set ${name}b up`,
  );
}

/** Builds the chain (svc gets only its link to exit: the service adds icmpfwd0 itself). */
export async function buildChain(): Promise<Chain> {
  const all: Netns[] = [];
  const ns = async (purpose: string): Promise<Netns> => {
    const n = await Netns.create(purpose);
    all.push(n);
    // No duplicate address detection: link-local addresses are usable at once, so the first
    // packets find their neighbours (a tentative one makes Neighbor Discovery wait ~1 s).
    await n.sh("sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0");
    return n;
  };
  const destroy = async (): Promise<void> => {
    for (const n of all) await n.destroy();
  };
  try {
    const svc = await ns("rsvc");
    const exit = await ns("rexit");
    const r1 = await ns("rr1");
    const r2 = await ns("rr2");
    const dst = await ns("rdst");
    await link(
      svc,
      exit,
      "se",
      ["198.18.20.1", "198.18.20.2", 30],
      ["fd00:20::1", "fd00:20::2", 64],
    );
    await link(
      exit,
      r1,
      "er",
      ["198.18.21.1", "198.18.21.2", 30],
      ["fd00:21::1", "fd00:21::2", 64],
    );
    await link(r1, r2, "rr", ["198.18.22.1", "198.18.22.2", 30], ["fd00:22::1", "fd00:22::2", 64]);
    await link(r2, dst, "rd", ["198.18.30.1", "198.18.30.9", 24], ["fd00:30::1", "fd00:30::9", 64]);
    for (const r of [r1, r2])
      await r.sh("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1");
    // Towards the destinations: exit → r1 → r2; r2 knows 198.18.30.0/24 only (on-link).
    await exit.sh(
      "ip route add 198.18.30.0/23 via 198.18.21.2 && ip -6 route add fd00:30::/63 via fd00:21::2",
    );
    await r1.sh(
      "ip route add 198.18.30.0/23 via 198.18.22.2 && ip -6 route add fd00:30::/63 via fd00:22::2",
    );
    // Back towards exit.
    await r2.sh(
      "ip route add 198.18.21.0/30 via 198.18.22.1 && ip -6 route add fd00:21::/64 via fd00:22::1",
    );
    await dst.sh("ip route add default via 198.18.30.1 && ip -6 route add default via fd00:30::1");
    return { svc, exit, r1, r2, dst, all, destroy };
  } catch (e) {
    await destroy();
    throw e;
  }
}
