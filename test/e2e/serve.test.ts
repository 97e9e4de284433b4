/**
 * `icmpfwd serve` on its defaults inside a private namespace, answering the kernel's ping.
 * Every test proves the netstack answered, not the kernel: the netstack's counters equal the
 * pings, and the namespace kernel's own Echo counters did not move.
 */

import { spawn } from "node:child_process";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  Capture,
  describeNetns,
  exec,
  Netns,
  parsePing,
  run,
  tempDir,
  tsharkFields,
  waitFor,
} from "../helpers/netns.js";
import { MAIN_JS, type ServeProcess, startServe } from "../helpers/serve.js";

describeNetns("icmpfwd serve answers the kernel's ping", () => {
  let ns: Netns;
  let serve: ServeProcess;

  beforeAll(async () => {
    ns = await Netns.create("serve");
    serve = await startServe(ns);
  });

  afterAll(async () => {
    await serve?.stop();
    await ns?.destroy();
  });

  const v4 = (s: Record<string, number>) => s["icmp.v4.packetsReceived.echoRequest"] ?? 0;
  const v6 = (s: Record<string, number>) => s["icmp.v6.packetsReceived.echoRequest"] ?? 0;

  async function pingAndCount(args: string[], count: number, family: 4 | 6) {
    const kernelCounter = family === 4 ? "IcmpInEchos" : "Icmp6InEchos";
    const before = serve.stats();
    const kernelBefore = await ns.nstat(kernelCounter);
    const r = await ns.ping(["-n", "-W", "2", ...args]);
    const ping = { ...parsePing(r.stdout), received: r.received };
    const reqKey =
      family === 4 ? "icmp.v4.packetsReceived.echoRequest" : "icmp.v6.packetsReceived.echoRequest";
    const repKey = family === 4 ? "icmp.v4.packetsSent.echoReply" : "icmp.v6.packetsSent.echoReply";
    const get = family === 4 ? v4 : v6;
    const after = await serve.waitStats(
      (s) => get(s) >= get(before) + count,
      `${count} more echo requests`,
    );
    return {
      ping,
      output: r.stdout,
      requests: after[reqKey] - (before[reqKey] ?? 0),
      replies: after[repKey] - (before[repKey] ?? 0),
      kernelEchos: (await ns.nstat(kernelCounter)) - kernelBefore,
    };
  }

  it("answers 50 IPv4 pings from the netstack, not the kernel", async () => {
    const r = await pingAndCount(["-c", "50", "-i", "0.01", "198.18.0.2"], 50, 4);
    expect(r.ping.transmitted).toBe(50);
    expect(r.ping.received).toBe(50);
    expect(r.requests).toBe(50);
    expect(r.replies).toBe(50);
    expect(r.kernelEchos).toBe(0);
    expect(new Set(r.ping.ttls)).toEqual(new Set([64]));
  });

  it("answers 50 IPv6 pings from the netstack, not the kernel", async () => {
    const r = await pingAndCount(["-6", "-c", "50", "-i", "0.01", "fd00:1::2"], 50, 6);
    expect(r.ping.received).toBe(50);
    expect(r.requests).toBe(50);
    expect(r.replies).toBe(50);
    expect(r.kernelEchos).toBe(0);
    expect(new Set(r.ping.ttls)).toEqual(new Set([64]));
  });

  it("answers 1400-byte payloads in both families", async () => {
    const a = await pingAndCount(["-c", "5", "-i", "0.01", "-s", "1400", "198.18.0.2"], 5, 4);
    expect(a.ping.received).toBe(5);
    expect(a.output).toContain("1408 bytes from 198.18.0.2");
    const b = await pingAndCount(["-6", "-c", "5", "-i", "0.01", "-s", "1400", "fd00:1::2"], 5, 6);
    expect(b.ping.received).toBe(5);
    expect(b.kernelEchos).toBe(0);
  });

  it("echoes a pattern payload unchanged (ping -p a5 checks every byte)", async () => {
    const r = await pingAndCount(["-c", "5", "-i", "0.01", "-p", "a5", "198.18.0.2"], 5, 4);
    expect(r.ping.received).toBe(5);
    expect(r.output).not.toMatch(/wrong data/);
    const r6 = await pingAndCount(["-6", "-c", "5", "-i", "0.01", "-p", "a5", "fd00:1::2"], 5, 6);
    expect(r6.ping.received).toBe(5);
    expect(r6.output).not.toMatch(/wrong data/);
  });

  it("answers the link-local fe80::2 through the TUN", async () => {
    const r = await pingAndCount(["-6", "-c", "3", "-i", "0.01", "fe80::2%icmpfwd0"], 3, 6);
    expect(r.ping.received).toBe(3);
    expect(r.kernelEchos).toBe(0);
  });

  it("copies TOS, IP ID and DF into exactly one reply per request (tshark)", async () => {
    const cap = await Capture.start(ns, "icmpfwd0", { filter: "icmp" });
    const r = await ns.ping(["-n", "-c", "5", "-i", "0.05", "-Q", "0x28", "198.18.0.2"]);
    expect(r.received).toBe(5);
    const file = await cap.stop();
    const rows = await tsharkFields(file, [
      "icmp.type",
      "icmp.seq",
      "ip.dsfield",
      "ip.id",
      "ip.flags.df",
      "ip.ttl",
      "ip.src",
    ]);
    const requests = rows.filter((x) => x[0] === "8");
    const replies = rows.filter((x) => x[0] === "0");
    expect(requests).toHaveLength(5);
    expect(replies).toHaveLength(5);
    for (const req of requests) {
      const matching = replies.filter((rep) => rep[1] === req[1]);
      expect(matching).toHaveLength(1);
      const [rep] = matching;
      expect(req[2]).toBe("0x28");
      expect(rep[2]).toBe(req[2]); // TOS
      expect(rep[3]).toBe(req[3]); // IP ID
      expect(rep[4]).toBe(req[4]); // DF
      expect(rep[5]).toBe("64");
      expect(rep[6]).toBe("198.18.0.2");
    }
  });

  it("dumps every counter as one JSON log line on SIGUSR1", async () => {
    const mark = serve.proc.output().length;
    serve.proc.child.kill("SIGUSR1");
    const { waitFor } = await import("../helpers/netns.js");
    const line = await waitFor(
      () =>
        serve.proc
          .output()
          .slice(mark)
          .split("\n")
          .find((l) => l.includes('"msg":"stats"')),
      { what: "stats log line" },
    );
    const parsed = JSON.parse(line) as { stats: Record<string, number> };
    expect(parsed.stats["icmp.v4.packetsReceived.echoRequest"]).toBe(v4(serve.stats()));
    expect(parsed.stats["link.packetsRead"]).toBeGreaterThan(0);
  });

  it("exits 0 on SIGTERM and the device is gone", async () => {
    const exit = await serve.stop("SIGTERM");
    expect(exit.code).toBe(0);
    const link = await ns.exec("ip", ["link", "show", "icmpfwd0"]);
    expect(link.code).not.toBe(0);
    expect(serve.proc.output()).toContain('"msg":"stopped"');
  });
}, ["tcpdump", "tshark"]);

describeNetns("icmpfwd serve options", () => {
  let ns: Netns;

  beforeAll(async () => {
    ns = await Netns.create("opts");
  });

  afterAll(async () => {
    await ns?.destroy();
  });

  it("answers with the TTL given by --default-ttl 61", async () => {
    const serve = await startServe(ns, ["--default-ttl", "61"]);
    try {
      // -i 0.1: the TTLs are read from ping's reply lines, and ping stops listening one
      // interval after its last probe.
      const r = await ns.ping(["-n", "-c", "3", "-i", "0.1", "-W", "2", "198.18.0.2"]);
      expect(r.received).toBe(3);
      expect(parsePing(r.stdout).ttls).toEqual([61, 61, 61]);
      const r6 = await ns.ping(["-6", "-n", "-c", "2", "-i", "0.1", "-W", "2", "fd00:1::2"]);
      expect(parsePing(r6.stdout).ttls).toEqual([61, 61]);
    } finally {
      expect((await serve.stop("SIGINT")).code).toBe(0);
    }
  });

  it("writes a pcapng with --pcap in which tshark sees each packet once with its direction", async () => {
    const { join } = await import("node:path");
    const file = join(tempDir(), "tun.pcapng");
    const serve = await startServe(ns, ["--pcap", file]);
    const r = await ns.ping(["-n", "-c", "3", "-i", "0.05", "-W", "2", "198.18.0.2"]);
    expect(r.received).toBe(3);
    expect((await serve.stop()).code).toBe(0);
    const rows = await tsharkFields(
      file,
      ["frame.packet_flags_direction", "icmp.type", "icmp.seq"],
      "icmp",
    );
    expect(rows).toHaveLength(6);
    for (let seq = 1; seq <= 3; seq++) {
      const these = rows.filter((x) => x[2] === String(seq));
      // pcapng epb_flags direction: 1 = inbound (kernel → netstack), 2 = outbound.
      expect(these.map((x) => [Number(x[0]), x[1]]).sort()).toEqual([
        [1, "8"],
        [2, "0"],
      ]);
    }
  });

  it("--promiscuous --route leaves IPv4 temporary addresses unanswered and answers IPv6 ones", async () => {
    const serve = await startServe(ns, [
      "--promiscuous",
      "--route",
      "198.18.128.0/17",
      "--route",
      "fd00:2::/64",
    ]);
    try {
      const ping = async (args: string[]) =>
        (await ns.ping(["-n", "-W", "2", "-i", "0.02", ...args])).received;
      expect(await ping(["-c", "3", "198.18.200.7"])).toBe(0);
      // Positive control in the same run: the NIC's own address is answered.
      expect(await ping(["-c", "3", "198.18.0.2"])).toBe(3);
      expect(await ping(["-6", "-c", "3", "fd00:2::7"])).toBe(3);
      const s = await serve.waitStats(
        (x) => x["icmp.v6.packetsSent.echoReply"] === 3,
        "3 IPv6 replies",
      );
      expect(s["icmp.v4.packetsReceived.echoRequest"]).toBe(6);
      expect(s["icmp.v4.packetsSent.echoReply"]).toBe(3);
    } finally {
      expect((await serve.stop()).code).toBe(0);
    }
  });

  it("--temporary-reply answers IPv4 temporary addresses from the original destination", async () => {
    const serve = await startServe(ns, [
      "--promiscuous",
      "--route",
      "198.18.128.0/17",
      "--temporary-reply",
    ]);
    try {
      const r = await ns.ping(["-n", "-c", "3", "-i", "0.02", "-W", "2", "198.18.200.7"]);
      expect(r.received).toBe(3);
      expect(r.stdout).toContain("bytes from 198.18.200.7");
      const s = await serve.waitStats((x) => x["icmp.v4.packetsSent.echoReply"] === 3, "3 replies");
      expect(s["icmp.v4.packetsReceived.echoRequest"]).toBe(3);
    } finally {
      expect((await serve.stop()).code).toBe(0);
    }
  });

  it("rejects a bad option at start-up naming the field", async () => {
    const r = await ns.exec(process.execPath, [MAIN_JS, "serve", "--default-ttl", "300"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/defaultTtl \(--default-ttl, ICMPFWD_DEFAULT_TTL\)/);
  });

  it("explains in one line that creating the device needs root", async () => {
    const r = await exec("ip", [
      "netns",
      "exec",
      ns.name,
      "setpriv",
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      process.execPath,
      MAIN_JS,
      "serve",
    ]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^icmpfwd: .*(root|CAP_NET_ADMIN)/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("attaches to a persistent device an administrator made for an unprivileged user", async () => {
    await ns.sh(
      "ip tuntap add dev ifwdp0 mode tun user 65534 && ip addr add 198.18.2.1/24 dev ifwdp0 && ip link set ifwdp0 up",
    );
    // This machine's /dev/net/tun may be root-only (mode 0600); give the unprivileged process a
    // usable node in a private mount namespace instead of changing the host's device.
    const dir = tempDir();
    await run("sh", [
      "-c",
      `mknod ${dir}/tun c 10 200 && chmod 666 ${dir}/tun && chmod 755 ${dir}`,
    ]);
    const script = [
      `mount --bind ${dir}/tun /dev/net/tun`,
      `exec ip netns exec ${ns.name} setpriv --reuid=65534 --regid=65534 --clear-groups ${process.execPath} ${MAIN_JS} serve --tun-attach ifwdp0 --address 198.18.2.2/24`,
    ].join(" && ");
    const child = spawn("unshare", ["--mount", "sh", "-c", script], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((resolve) =>
      child.on("exit", (code) => resolve(code)),
    );
    try {
      await waitFor(() => out.includes('"msg":"serving"') || child.exitCode !== null, {
        what: "unprivileged serve",
      });
      expect(out).toContain('"msg":"serving"');
      const r = await ns.ping(["-n", "-c", "3", "-i", "0.01", "-W", "2", "198.18.2.2"]);
      expect(r.received).toBe(3);
    } finally {
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    }
    // The persistent device outlives the process.
    expect((await ns.exec("ip", ["link", "show", "ifwdp0"])).code).toBe(0);
  });
});
