/**
 * Pitfall 2 of notes/tun-binding.md: an addon-owned uv_poll handle still open when a worker's
 * environment is torn down aborts the whole process. The addon's cleanup hook must close it.
 * The TUN lives in this file's private namespace; the worker itself runs in the root one.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeNetns, Netns, waitFor } from "../helpers/netns.js";

const workerScript = new URL("./fixtures/tun-worker.mjs", import.meta.url);
const hostScript = fileURLToPath(new URL("./fixtures/tun-worker-host.mjs", import.meta.url));

interface WorkerMessage {
  ready?: boolean;
  name?: string;
  packets?: number;
}

describeNetns("TUN in a worker thread", () => {
  let ns: Netns;

  beforeAll(async () => {
    ns = await Netns.create("tunwk");
  });

  afterAll(async () => {
    await ns?.destroy();
  });

  async function deviceExists(name: string): Promise<boolean> {
    return (await ns.exec("ip", ["link", "show", "dev", name])).code === 0;
  }

  it("a worker thread opens a TUN and is terminated without aborting the process", async () => {
    const name = "icmpfwd-w1";
    const worker = new Worker(workerScript, { workerData: { name, netns: ns.path } });
    let packets = 0;
    const errors: unknown[] = [];
    worker.on("error", (e) => errors.push(e));
    const ready = new Promise<void>((resolve) => {
      worker.on("message", (m: WorkerMessage) => {
        if (m.packets !== undefined) packets = m.packets;
        if (m.ready) resolve();
      });
    });
    await ready;
    expect(await deviceExists(name)).toBe(true);

    // Traffic into the worker's reader, so its poll handle is busy when the worker goes away.
    await ns.sh(`ip addr add 198.18.0.1/24 dev ${name}`);
    await ns.exec("ping", ["-n", "-c", "2", "-i", "0.05", "-W", "2", "198.18.0.2"]);
    await waitFor(() => packets >= 2, { what: "the worker to read the Echo Requests" });

    const exitCode = await worker.terminate();
    expect(exitCode).toBe(1); // what terminate() resolves to for a worker stopped from outside
    expect(errors).toEqual([]);
    expect(await deviceExists(name)).toBe(false);
    expect(process.exitCode ?? 0).toBe(0);
  });

  /**
   * One host process: opens the worker's TUN, floods it with a preloaded burst and terminates
   * the worker mid-burst. Resolves with how the host process ended.
   */
  async function terminateUnderBurst(name: string): Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }> {
    // A fresh process, so an abort during the worker's teardown is visible as its exit status.
    const host = spawn(process.execPath, [hostScript, name, ns.path, "200"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    host.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    host.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      host.on("exit", (code, signal) => resolve({ code, signal })),
    );
    try {
      await waitFor(() => stdout.includes("READY") || host.exitCode !== null, {
        what: "the worker's TUN to open",
      });
      await ns.sh(
        `ip addr add 198.18.0.1/24 dev ${name} && ip link set dev ${name} txqueuelen 5000`,
      );
      // 3,000 requests queued at once: the worker is still reading them when it is terminated
      // after 200, so its poll callback races the teardown. Bounded in count and time.
      const ping = ns.spawn("timeout", [
        ...["-s", "INT", "10", "ping", "-n", "-q", "-f", "-l", "3000", "-c", "3000", "-W", "2"],
        "198.18.0.2",
      ]);
      const { code, signal } = await exited;
      // The rest of the burst has nowhere to go once the device is gone; timeout passes SIGINT on.
      ping.child.kill("SIGINT");
      await ping.exited;
      return { code, signal, stdout, stderr };
    } finally {
      host.kill("SIGKILL");
    }
  }

  it("a worker terminated while reading a burst does not abort its process", async () => {
    // Before the addon used raw Node-API on its poll path, about one run in eight aborted here.
    for (let round = 0; round < 8; round++) {
      const name = "icmpfwd-w2";
      const { code, signal, stdout, stderr } = await terminateUnderBurst(name);
      expect(stderr).not.toMatch(/FATAL|uv_loop_close|Assertion|Aborted/);
      expect({ round, code, signal }).toEqual({ round, code: 0, signal: null });
      const last = JSON.parse(stdout.trim().split("\n").pop() ?? "{}") as {
        exitCode?: number;
        ipv4?: number;
      };
      expect(last.exitCode).toBe(1);
      expect(last.ipv4).toBeGreaterThanOrEqual(200);
      expect(await deviceExists(name)).toBe(false);
    }
  });
});
