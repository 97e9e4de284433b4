/**
 * Shared set-up for the examples (not an example itself): a TUN device, its kernel side, and a
 * netstack on it with the addresses `icmpfwd serve` uses by default.
 *
 *   kernel 198.18.0.1/24, fd00:1::1/64  ── TUN ──  netstack 198.18.0.2/24, fd00:1::2/64
 *
 * Run the examples as root inside a private network namespace (see each file's header).
 */
import { TunEndpoint } from "icmpfwd/link";
import { parseAddressWithPrefix, Stack, Subnet, type TcpipError } from "icmpfwd/netstack";
import { configureKernelSide, kernelCommands } from "../src/kernel-side.js";

export const NIC_ID = 1;

export interface DemoOptions {
  /** TUN device name (default "demo0"). */
  name?: string;
  /** Accept any destination as a temporary address and send from it (tun2socks-style). */
  promiscuous?: boolean;
  /** Extra prefixes the kernel routes into the TUN, e.g. "198.18.128.0/17". */
  routes?: string[];
}

function must(what: string, err: TcpipError | string | null): void {
  if (err !== null) throw new Error(`${what}: ${typeof err === "string" ? err : err.message}`);
}

/** Opens the TUN, configures both sides, and closes the TUN on Ctrl-C. */
export function startDemo(options: DemoOptions = {}): Stack {
  const name = options.name ?? "demo0";
  const promiscuous = options.promiscuous ?? false;
  const tun = TunEndpoint.open({ name, mtu: 1500 });
  const kernel = ["198.18.0.1/24", "fd00:1::1/64"];
  must("kernel side", configureKernelSide(kernelCommands(name, kernel, options.routes ?? [])));

  const stack = new Stack();
  must("NIC", stack.createNIC(NIC_ID, tun, { name, promiscuous, spoofing: promiscuous }));
  for (const text of ["198.18.0.2/24", "fd00:1::2/64"]) {
    const p = parseAddressWithPrefix(text)!;
    must(text, stack.addAddress(NIC_ID, p.address, p.prefixLength));
    must(`route ${text}`, stack.addRoute(new Subnet(p.address, p.prefixLength), NIC_ID));
  }
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      tun.close(); // a non-persistent TUN disappears with its routes
      process.exit(0);
    });
  }
  console.log(`netstack up on ${name}: 198.18.0.2, fd00:1::2 (Ctrl-C to stop)`);
  return stack;
}
