/**
 * The TUN mode: both stacks on real TUN devices in a private network namespace, fed from the
 * kernel side by tun-tap (an AF_PACKET socket bound to each device: what it sends the device
 * transmits, so the stack reads it byte for byte from its fd; what the stack writes arrives on
 * the socket as incoming before any IP processing). icmpfwd runs its real TunEndpoint (the
 * native addon) in this process; gVisor runs fdbased on its own device (gvisor-peer -tun).
 *
 * The kernel must add nothing: IPv6 is disabled on the devices before they exist (no Router
 * Solicitation, MLD or DAD into the stacks) and they have no IPv4 address and no forwarding (a
 * stack's output is dropped by the kernel without an answer). tun-tap ignores what the device
 * transmits, and every input checks that each stack read exactly the packets sent to it.
 *
 * Both stacks are fresh for every input, as in memory: no reassembly state, limiter tokens or
 * clock carry over. A packet longer than the devices' MTU (1500) cannot cross a TUN and an
 * empty one is no packet: such inputs are counted as skipped.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { TunEndpoint } from "../../src/link/tun.js";
import type { Stack } from "../../src/netstack/stack.js";
import { FramedProcess, framePackets, u32 } from "./framed.js";
import { icmpfwdOutput } from "./peer.js";
import type { Outcome, Stacks } from "./run.js";
import { peerShapeArgs, shapedStack } from "./shape.js";

const MTU = 1500;
const OURS = "dfi0";
const THEIRS = "dfg0";

/**
 * A private network namespace with a unique name, deleted by destroy() and, should the process
 * end first, by an exit hook. (Not test/helpers/netns.ts: that module needs vitest, and
 * `npm run conformance` runs outside it.)
 */
class Namespace {
  private static readonly live = new Set<string>();
  private static hooked = false;
  readonly path: string;

  constructor(readonly name: string) {
    this.path = `/var/run/netns/${name}`;
  }

  static create(): Namespace {
    if (!Namespace.hooked) {
      Namespace.hooked = true;
      process.on("exit", () => {
        for (const n of Namespace.live)
          spawnSync("ip", ["netns", "delete", n], { stdio: "ignore" });
      });
    }
    const ns = new Namespace(`icmpfwd-diff-${process.pid}-${randomBytes(3).toString("hex")}`);
    ns.run("ip", "netns", "add", ns.name);
    Namespace.live.add(ns.name);
    return ns;
  }

  run(cmd: string, ...args: string[]): void {
    const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 10_000 });
    if (r.status !== 0)
      throw new Error(`${cmd} ${args.join(" ")}: ${(r.stderr || String(r.error)).trim()}`);
  }

  /** Runs a command inside the namespace. */
  exec(...args: string[]): void {
    this.run("ip", "netns", "exec", this.name, ...args);
  }

  /** Deletes the namespace; what runs inside has been stopped by the caller. */
  destroy(): void {
    if (!Namespace.live.delete(this.name)) return;
    spawnSync("ip", ["netns", "delete", this.name], { stdio: "ignore" });
  }
}

/** Packets of `input` gVisor's fdbased endpoint delivers (version 4 or 6), plus the sentinel. */
function deliveredByFdbased(packets: readonly Uint8Array[]): number {
  return packets.filter((p) => p[0] >> 4 === 4 || p[0] >> 4 === 6).length + 1;
}

export class TunStacks implements Stacks {
  private stack: Stack | null = null;
  private sequence = 0;
  /** What the current gVisor stack must have read, checked when it is replaced. */
  private expectedRx = 0;

  private constructor(
    private readonly ns: Namespace,
    private readonly tun: TunEndpoint,
    private readonly peer: FramedProcess,
    private readonly tap: FramedProcess,
  ) {}

  static async open(peerBinary: string, tapBinary: string): Promise<TunStacks> {
    const ns = Namespace.create();
    let tun: TunEndpoint | null = null;
    const started: FramedProcess[] = [];
    try {
      ns.exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1");
      ns.exec("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1");
      ns.exec("sysctl", "-qw", "net.ipv4.ip_forward=0");
      tun = TunEndpoint.open({ name: OURS, netns: ns.path, mtu: MTU });
      const inNs = (cmd: string, ...args: string[]): string[] => [
        "netns",
        "exec",
        ns.name,
        cmd,
        ...args,
      ];
      const peer = new FramedProcess(
        "gVisor peer (TUN)",
        "ip",
        inNs(peerBinary, "-tun", THEIRS, "-mtu", String(MTU), ...peerShapeArgs()),
      );
      started.push(peer);
      await peer.line("READY");
      ns.exec("ip", "link", "set", THEIRS, "up");
      const tap = new FramedProcess("tun-tap", "ip", inNs(tapBinary, OURS, THEIRS));
      started.push(tap);
      return new TunStacks(ns, tun, peer, tap);
    } catch (e) {
      for (const p of started) await p.close();
      tun?.close();
      ns.destroy();
      throw e;
    }
  }

  async answer(packets: readonly Uint8Array[]): Promise<Outcome> {
    if (packets.some((p) => p.length === 0)) return { skipped: "an empty packet" };
    if (packets.some((p) => p.length > MTU)) return { skipped: `a packet over the MTU (${MTU})` };
    // Fresh stacks: icmpfwd's here, gVisor's in the peer (which reports what the last one read).
    this.stack?.close();
    this.stack = shapedStack(this.tun);
    await this.resetPeer();
    this.expectedRx = deliveredByFdbased(packets);
    const readBefore = this.tun.stats.packetsRead;
    const seq = ++this.sequence;
    this.tap.write(Buffer.concat([u32(seq), framePackets(packets)]));
    const ours = await this.tap.packets();
    const theirs = await this.tap.packets();
    const read = this.tun.stats.packetsRead - readBefore;
    if (read !== packets.length + 1)
      throw new Error(`icmpfwd read ${read} packets from ${OURS}, ${packets.length + 1} were sent`);
    return { ours, theirs, oursInMemory: icmpfwdOutput(packets) };
  }

  private async resetPeer(): Promise<void> {
    this.peer.write(u32(1));
    const rx = await this.peer.u32();
    if (rx !== this.expectedRx)
      throw new Error(`gVisor read ${rx} packets from ${THEIRS}, ${this.expectedRx} were sent`);
  }

  async close(): Promise<void> {
    try {
      if (this.expectedRx > 0) await this.resetPeer();
    } finally {
      await this.tap.close();
      await this.peer.close();
      this.stack?.close();
      this.tun.close();
      this.ns.destroy();
    }
  }
}
