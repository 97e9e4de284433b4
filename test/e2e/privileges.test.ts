/**
 * `--user` / `--group` (issue #14 item 5): `icmpfwd serve` starts as root in a private
 * namespace, opens the TUN and configures its kernel side, binds its listeners, then runs as
 * nobody/nogroup — and keeps answering ping and gRPC; at exit the non-persistent device is gone.
 */
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeNetns, Netns, run, waitFor } from "../helpers/netns.js";
import { MAIN_JS, type ServeProcess, startServe } from "../helpers/serve.js";

describeNetns("serve drops root with --user nobody --group nogroup", () => {
  let ns: Netns;
  let serve: ServeProcess;

  beforeAll(async () => {
    ns = await Netns.create("priv");
    serve = await startServe(ns, ["--user", "nobody", "--group", "nogroup"]);
    // The stats file's directory belongs to the user the service runs as now.
    await run("chown", ["-R", "nobody:nogroup", dirname(serve.statsFile)]);
  });

  afterAll(async () => {
    await serve?.stop();
    await ns?.destroy();
  });

  it("runs as nobody:nogroup (real, effective and saved ids; no other groups) once serving", () => {
    const pid = serve.proc.child.pid;
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const field = (k: string) =>
      new RegExp(`^${k}:\\s*(.*)$`, "m").exec(status)?.[1].trim().split(/\s+/);
    expect(field("Uid")).toEqual(["65534", "65534", "65534", "65534"]);
    expect(field("Gid")).toEqual(["65534", "65534", "65534", "65534"]);
    expect(field("Groups")).toEqual(["65534"]);
    expect(serve.proc.output()).toMatch(/"uid":65534,"gid":65534,"droppedPrivileges":true/);
  });

  it("the netstack still answers ping through the TUN opened as root", async () => {
    const kernelBefore = await ns.nstat("IcmpInEchos");
    const r = await ns.ping(["-n", "-c", "5", "-i", "0.05", "-W", "2", "198.18.0.2"]);
    expect(r).toMatchObject({ transmitted: 5, received: 5 });
    const s = await serve.waitStats(
      (x) => (x["icmp.v4.packetsSent.echoReply"] ?? 0) >= 5,
      "5 replies written by the unprivileged service",
    );
    expect(s["icmp.v4.packetsReceived.echoRequest"]).toBe(5);
    expect(await ns.nstat("IcmpInEchos")).toBe(kernelBefore);
  });

  it("the gRPC service still answers", async () => {
    const r = await ns.exec(process.execPath, [MAIN_JS, "health", "--target", "127.0.0.1:50051"]);
    expect([r.code, r.stdout.trim()]).toEqual([0, "SERVING"]);
  });

  it("at exit the non-persistent TUN disappears, though the process was no longer root", async () => {
    expect((await ns.exec("ip", ["link", "show", "icmpfwd0"])).code).toBe(0);
    expect((await serve.stop("SIGTERM")).code).toBe(0);
    await waitFor(async () => (await ns.exec("ip", ["link", "show", "icmpfwd0"])).code !== 0, {
      what: "the device to go",
    });
  });
});
