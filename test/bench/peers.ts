/**
 * The peers an operator would pick instead of icmpfwd, built by the benchmark from Debian
 * packages and measured under the same flood:
 *  - NFQUEUE: `iptables -j NFQUEUE` queues every Echo Request to a small C program
 *    (libnetfilter-queue) that accepts it, per packet or in batches; the kernel then answers.
 *  - gVisor's own netstack (Debian's golang-gvisor-gvisor-dev, GOPATH mode) on a TUN device.
 * Both run inside private namespaces; floods go to 198.19.0.0/16 / 198.18.0.0/15 only.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type BenchMeasurement,
  type BenchModule,
  BenchNetns,
  type FloodOptions,
  flood,
  procCpuSeconds,
} from "./flood.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));

function build(what: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): void {
  const r = spawnSync(cmd, args, { encoding: "utf8", env: { ...process.env, ...env } });
  if (r.status !== 0) {
    throw new Error(
      `cannot build ${what}: ${(r.stderr || r.stdout || String(r.error)).trim()} — install with: apt-get install -y build-essential libnetfilter-queue-dev iptables golang-go golang-gvisor-gvisor-dev`,
    );
  }
}

/** Starts a program in a namespace and waits for its READY line. */
async function startReady(
  ns: BenchNetns,
  cmd: string,
  args: string[],
): Promise<{ child: ChildProcess; out: () => string }> {
  const child = spawn("ip", ["netns", "exec", ns.name, cmd, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const deadline = Date.now() + 10_000;
  while (!out.includes("READY")) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`${cmd} did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { child, out: () => out };
}

/** CPU seconds the program has used so far (`ip netns exec` execs it: same pid). */
function cpuOf(p: { child: ChildProcess }): number | null {
  return p.child.pid === undefined ? null : procCpuSeconds(p.child.pid);
}

async function stopAndRead(p: {
  child: ChildProcess;
  out: () => string;
}): Promise<Record<string, number>> {
  const exited = new Promise((r) => p.child.once("exit", r));
  p.child.kill("SIGTERM");
  await exited;
  const line = p
    .out()
    .split("\n")
    .find((l) => l.startsWith("{"));
  return line ? (JSON.parse(line) as Record<string, number>) : {};
}

async function nfqueueRow(
  o: FloodOptions,
  binary: string,
  batch: number,
): Promise<BenchMeasurement> {
  const a = await BenchNetns.create("nqa");
  let b: BenchNetns | null = null;
  try {
    b = await BenchNetns.create("nqb");
    await a.sh(`ip link add veth0 type veth peer name veth1 netns ${b.name}`);
    await a.sh("ip addr add 198.19.1.1/24 dev veth0 && ip link set veth0 up");
    await b.sh("ip addr add 198.19.1.2/24 dev veth1 && ip link set veth1 up");
    await a.sh(
      "for i in $(seq 50); do ping -n -c 1 -W 1 198.19.1.2 >/dev/null && exit 0; done; exit 1",
    );
    await b.sh("iptables -A INPUT -p icmp --icmp-type echo-request -j NFQUEUE --queue-num 0");
    const p = await startReady(b, binary, [String(batch)]);
    const cpu0 = cpuOf(p);
    const r = await flood(a, "198.19.1.2", o);
    const cpu1 = cpuOf(p);
    const stats = await stopAndRead(p);
    return {
      ...r,
      cpuSeconds: cpu0 === null || cpu1 === null ? null : cpu1 - cpu0,
      cpuWhat: "verdict process (the kernel's reply not included)",
      mechanism:
        batch > 1
          ? `NFQUEUE, C verdicts batched ×${batch} (kernel replies)`
          : "NFQUEUE, C per-packet verdicts (kernel replies)",
      notes: `${stats.verdicts ?? "?"} verdicts`,
    };
  } finally {
    await b?.destroy();
    await a.destroy();
  }
}

export const nfqueueBench: BenchModule = {
  name: "nfqueue",
  async run(o: FloodOptions): Promise<BenchMeasurement[]> {
    const dir = mkdtempSync(join(tmpdir(), "icmpfwd-nfq-"));
    const binary = join(dir, "nfq-verdict");
    build("the NFQUEUE verdict program", "cc", [
      "-O2",
      "-o",
      binary,
      join(HERE, "nfqueue", "verdict.c"),
      "-lnetfilter_queue",
    ]);
    return [await nfqueueRow(o, binary, 1), await nfqueueRow(o, binary, 32)];
  },
};

export const gvisorBench: BenchModule = {
  name: "gvisor",
  async run(o: FloodOptions): Promise<BenchMeasurement[]> {
    const dir = mkdtempSync(join(tmpdir(), "icmpfwd-gvisor-"));
    const binary = join(dir, "gvisor-echo");
    build(
      "the gVisor netstack responder",
      "go",
      ["build", "-o", binary, join(HERE, "gvisor-echo", "main.go")],
      {
        GO111MODULE: "off",
        GOPATH: "/usr/share/gocode",
        GOCACHE: join(dir, "cache"),
        GOFLAGS: "",
      },
    );
    const ns = await BenchNetns.create("gv");
    try {
      const p = await startReady(ns, binary, ["-tun", "gvisor0", "-addr", "198.18.0.2"]);
      await ns.sh("ip addr add 198.18.0.1/24 dev gvisor0 && ip link set gvisor0 up");
      const cpu0 = cpuOf(p);
      const r = await flood(ns, "198.18.0.2", o);
      const cpu1 = cpuOf(p);
      const stats = await stopAndRead(p);
      return [
        {
          ...r,
          cpuSeconds: cpu0 === null || cpu1 === null ? null : cpu1 - cpu0,
          cpuWhat: "gVisor process, all threads",
          mechanism: "gVisor netstack (Go, fdbased TUN)",
          notes: `gVisor counted ${stats.echoReplies ?? "?"} Echo Replies`,
        },
      ];
    } finally {
      await ns.destroy();
    }
  },
};
