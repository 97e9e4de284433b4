/**
 * The bare TUN responder: the addon's batches answered in plain JS (IPv4 Echo Request → swap
 * addresses, type 8 → 0, patch the ICMP checksum, write back), no netstack. It is the ceiling
 * for anything built on the addon, measured under the same bounded flood as the kernel.
 *
 * Runs in this process or, as `tun-responder.ts --child NAME NETNS`, in a child Node process
 * (BENCH_RESPONDER=inprocess|child|both; default inprocess, the faster one on a 2-vCPU box).
 * Either way the device exists only in a private namespace (the addon's netns option).
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { loadTunAddon, type NativeTun } from "../../src/link/tun-addon.js";
import { answerIPv4EchoInPlace } from "../helpers/packets.js";
import {
  type BenchMeasurement,
  type BenchModule,
  BenchNetns,
  type FloodOptions,
  flood,
  procCpuSeconds,
  withThreadCpu,
} from "./flood.js";

const TUN_NAME = "icmpfwd-bench";
const KERNEL_SIDE = "198.18.0.1";
const RESPONDER = "198.18.0.2";

export interface ResponderStats {
  batches: number;
  packets: number;
  replies: number;
  writeErrors: number;
  /** CPU (user + system) this process spent while the responder was open, in microseconds. */
  cpuMicros: number;
}

export interface Responder {
  stats(): ResponderStats;
  close(): void;
}

/** Answers every IPv4 Echo Request in place, in the slab the addon handed over. */
export function startResponder(name: string, netns: string, batchSize = 64): Responder {
  const s: ResponderStats = { batches: 0, packets: 0, replies: 0, writeErrors: 0, cpuMicros: 0 };
  const cpuStart = process.cpuUsage();
  let tun: NativeTun | null = null;
  const onBatch = (slab: ArrayBuffer, lengths: Uint32Array): void => {
    s.batches++;
    const b = new Uint8Array(slab);
    let p = lengths.byteLength;
    for (let i = 0; i < lengths.length; i++) {
      const length = lengths[i];
      const at = p;
      p += length;
      s.packets++;
      const packet = b.subarray(at, at + length);
      if (!answerIPv4EchoInPlace(packet)) continue;
      if (tun!.write(packet) < 0) s.writeErrors++;
      else s.replies++;
    }
  };
  tun = loadTunAddon().open({ name, mtu: 1500, attach: false, netns, batchSize }, onBatch);
  return {
    stats: () => {
      const cpu = process.cpuUsage(cpuStart);
      return { ...s, cpuMicros: cpu.user + cpu.system };
    },
    close: () => tun?.close(),
  };
}

function describeStats(s: ResponderStats, where: string): string {
  const perBatch = s.batches > 0 ? (s.packets / s.batches).toFixed(1) : "–";
  const cpu = s.packets > 0 ? (s.cpuMicros / s.packets).toFixed(2) : "–";
  return `${where}; ${perBatch} pkts/batch; ${cpu} µs CPU/pkt; ${s.writeErrors} write errors`;
}

async function benchInProcess(o: FloodOptions): Promise<BenchMeasurement> {
  const ns = await BenchNetns.create("tun");
  let responder: Responder | null = null;
  try {
    responder = startResponder(TUN_NAME, ns.path);
    await ns.sh(`ip addr add ${KERNEL_SIDE}/24 dev ${TUN_NAME}`);
    const { value: r, cpuSeconds } = await withThreadCpu(() => flood(ns, RESPONDER, o));
    return {
      ...r,
      cpuSeconds,
      cpuWhat: "main thread",
      mechanism: "N-API addon, uv_poll, ≤64/batch, bare JS responder (in-process)",
      notes: describeStats(responder.stats(), "in-process"),
    };
  } finally {
    responder?.close();
    await ns.destroy();
  }
}

async function benchChild(o: FloodOptions): Promise<BenchMeasurement> {
  const ns = await BenchNetns.create("tunc");
  const script = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, ["--import", "tsx", script, "--child", TUN_NAME, ns.path], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  try {
    const deadline = Date.now() + 15_000;
    while (!out.includes("READY")) {
      if (child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`the responder child did not start: ${out}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await ns.sh(`ip addr add ${KERNEL_SIDE}/24 dev ${TUN_NAME}`);
    const r = await flood(ns, RESPONDER, o);
    const cpuSeconds = child.pid === undefined ? null : procCpuSeconds(child.pid);
    child.kill("SIGTERM");
    await exited;
    const line = out.split("\n").find((l) => l.startsWith("{"));
    const stats = line ? (JSON.parse(line) as ResponderStats) : null;
    return {
      ...r,
      cpuSeconds,
      cpuWhat: "responder process (incl. start-up)",
      mechanism: "N-API addon, uv_poll, ≤64/batch, bare JS responder (child process)",
      notes: stats ? describeStats(stats, "child process") : "child process",
    };
  } finally {
    child.kill("SIGKILL");
    await ns.destroy();
  }
}

export const tunResponderBench: BenchModule = {
  name: "tun-responder",
  async run(o: FloodOptions): Promise<BenchMeasurement[]> {
    const mode = process.env.BENCH_RESPONDER ?? "inprocess";
    if (!["inprocess", "child", "both"].includes(mode)) {
      throw new Error("BENCH_RESPONDER must be inprocess, child or both");
    }
    const rows: BenchMeasurement[] = [];
    if (mode !== "child") rows.push(await benchInProcess(o));
    if (mode !== "inprocess") rows.push(await benchChild(o));
    return rows;
  },
};

// Child mode: answer until SIGTERM, then print the counters as one JSON line.
if (process.argv[2] === "--child" && process.argv[1] === fileURLToPath(import.meta.url)) {
  const [name, netns] = process.argv.slice(3);
  const responder = startResponder(name, netns);
  process.stdout.write("READY\n");
  const stop = (): void => {
    responder.close();
    process.stdout.write(`${JSON.stringify(responder.stats())}\n`);
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}
