/**
 * Secure by default: with no --token, --authz or mTLS, only root and the user the service runs
 * as may call anything but grpc.health.v1. Tried the way a hostile local user would: as uid
 * 65534 in the service's own namespace, over the default 127.0.0.1:50051, with the CLI and a
 * raw Connect stream — then the same commands as root, which work with no flags.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeNetns, Netns, run, tempDir, waitFor } from "../helpers/netns.js";
import { MAIN_JS, type ServeProcess, startServe } from "../helpers/serve.js";

const PROBE = fileURLToPath(new URL("./fixtures/connect-probe.mjs", import.meta.url));
const TARGET = "127.0.0.1:50051";
const NOBODY = ["--reuid", "65534", "--regid", "65534", "--clear-groups"];

/** Every command an unprivileged user could use to steer the service. */
const ADMIN_COMMANDS: readonly string[][] = [
  ["route", "add", "0.0.0.0/1"],
  ["route", "add", "128.0.0.0/1"],
  ["addr", "add", "198.18.9.2/24"],
  ["promiscuous", "on"],
  ["reload"],
  ["addr", "list"],
  ["stats"],
  ["sessions"],
  ["ping", "198.18.0.1", "--count", "1"],
];

/** The service's audit lines with this message, parsed. */
function auditLines(serve: ServeProcess, msg: string): Record<string, unknown>[] {
  return serve.proc
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{") && l.includes(`"msg":"${msg}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.audit === true);
}

describeNetns("default authorization", () => {
  let ns: Netns;
  let serve: ServeProcess;

  const routes = (): Promise<string> => ns.sh("ip route show; ip -6 route show");
  const cli = (args: readonly string[], as: readonly string[] | null) =>
    as === null
      ? ns.exec(process.execPath, [MAIN_JS, ...args, "--target", TARGET])
      : ns.exec("setpriv", [...as, process.execPath, MAIN_JS, ...args, "--target", TARGET]);
  const probe = async (mode: string, as: readonly string[] | null) => {
    const r =
      as === null
        ? await ns.exec(process.execPath, [PROBE, TARGET, mode])
        : await ns.exec("setpriv", [...as, process.execPath, PROBE, TARGET, mode]);
    return JSON.parse(r.stdout) as { welcome?: boolean; code?: number; details?: string };
  };

  beforeAll(async () => {
    ns = await Netns.create("dauth");
    serve = await startServe(ns);
  });

  afterAll(async () => {
    await serve?.stop();
    await ns?.destroy();
  });

  it("uid 65534: every admin RPC and Ping refused with PERMISSION_DENIED, the kernel's routes unchanged", async () => {
    const before = await routes();
    for (const args of ADMIN_COMMANDS) {
      const r = await cli(args, NOBODY);
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.stderr, args.join(" ")).toMatch(
        /: PERMISSION_DENIED: authenticated as uid:65534 but not allowed to run `icmpfwd .*`; see --authz \(uid 65534 may not call icmpfwd: only root and the service's user \(uid 0\) may/,
      );
    }
    expect(await routes()).toBe(before);
    // Each refusal is in the audit log (warn), with the caller's peer, the method and the reason.
    const refused = auditLines(serve, "call refused");
    expect(refused.length).toBeGreaterThanOrEqual(ADMIN_COMMANDS.length);
    expect(refused[0]).toMatchObject({
      level: "warn",
      audit: true,
      status: "PERMISSION_DENIED",
      method: "/icmpfwd.v1.EchoAdmin/AddRoute",
    });
    expect(String(refused[0].reason)).toMatch(/^uid 65534 may not call icmpfwd/);
    expect(String(refused[0].peer)).toMatch(/^127\.0\.0\.1:\d+$/);
    // grpc.health.v1 stays open (container and systemd probes carry no credentials).
    const health = await cli(["health"], NOBODY);
    expect([health.code, health.stdout.trim()]).toEqual([0, "SERVING"]);
  });

  it("uid 65534: Connect refused in both modes, and no session opened", async () => {
    for (const mode of ["decide", "observe"]) {
      expect(await probe(mode, NOBODY)).toEqual({
        code: 7,
        details:
          'uid 65534 may not call icmpfwd: only root and the service\'s user (uid 0) may, unless --authz grants "uid:65534", "user:NAME" or "group:NAME"',
      });
    }
    const s = serve.stats();
    expect(s["service.sessions"]).toBe(0);
  });

  it("root: the same commands work with no flags", async () => {
    const ids: string[] = [];
    for (const mode of ["decide", "observe"]) {
      const r = await probe(mode, null);
      expect(r.welcome).toBe(true);
      ids.push(String((r as { sessionId?: string }).sessionId));
    }
    // Each session's opening and end are in the audit log, with its mode, name and caller.
    await waitFor(() => auditLines(serve, "session closed").length >= 2, {
      what: "two session closed lines",
    });
    for (const msg of ["session opened", "session closed"]) {
      const lines = auditLines(serve, msg);
      expect(lines.map((l) => [l.sessionId, l.mode, l.clientName, l.identity])).toEqual([
        [ids[0], "decide", "probe", "uid:0"],
        [ids[1], "observe", "probe", "uid:0"],
      ]);
      expect(String(lines[0].peer)).toMatch(/^127\.0\.0\.1:\d+$/);
    }
    expect(auditLines(serve, "session closed")[0].reason).toBe("ended");
    const add = await cli(["route", "add", "198.18.64.0/24"], null);
    expect(add.code, add.stderr).toBe(0);
    expect(await ns.sh("ip route show 198.18.64.0/24")).toMatch(/dev icmpfwd0/);
    expect((await cli(["route", "del", "198.18.64.0/24"], null)).code).toBe(0);
    // The audit log says who changed what, with the routes before and after.
    const changes = auditLines(serve, "admin change");
    expect(changes.map((l) => [l.identity, l.what])).toEqual([
      ["uid:0", "route add 198.18.64.0/24"],
      ["uid:0", "route del 198.18.64.0/24"],
    ]);
    const routesOf = (n: unknown): string[] =>
      (n as { routes: { destination: string }[] }).routes.map((r) => r.destination);
    expect(routesOf(changes[0].before)).not.toContain("198.18.64.0/24");
    expect(routesOf(changes[0].after)).toContain("198.18.64.0/24");
    for (const args of [["stats"], ["sessions"], ["addr", "list"], ["reload"]])
      expect((await cli(args, null)).code, args.join(" ")).toBe(0);
    const ping = await cli(["ping", "198.18.0.1", "--count", "1"], null);
    expect(ping.code, ping.stderr).toBe(0);
  });
});

describeNetns("--authz granting a unix group", () => {
  let ns: Netns;
  let serve: ServeProcess;
  // nogroup exists on every Debian system; uid 65534 (nobody) is made a member by setpriv below.
  const MEMBER = ["--reuid", "65534", "--regid", "65534", "--groups", "65534"];
  const OUTSIDER = ["--reuid", "65533", "--regid", "65533", "--clear-groups"];

  beforeAll(async () => {
    ns = await Netns.create("gauth");
    const dir = tempDir("icmpfwd-authz-");
    const file = join(dir, "authz.json");
    writeFileSync(
      file,
      JSON.stringify({
        identities: {
          "group:nogroup": { modes: ["decide"] },
          "uid:0": { modes: ["decide", "observe", "admin"] },
        },
      }),
    );
    await run("chmod", ["644", file]);
    serve = await startServe(ns, ["--authz", file]);
  });

  afterAll(async () => {
    await serve?.stop();
    await ns?.destroy();
  });

  const probeAs = async (as: readonly string[], mode: string) => {
    const r = await ns.exec("setpriv", [...as, process.execPath, PROBE, TARGET, mode]);
    return JSON.parse(r.stdout) as { welcome?: boolean; code?: number; details?: string };
  };

  it("a member of the granted group decides; observe and admin stay refused to it", async () => {
    expect((await probeAs(MEMBER, "decide")).welcome).toBe(true);
    expect(await probeAs(MEMBER, "observe")).toMatchObject({ code: 7 });
  });

  it("a non-member is refused", async () => {
    expect(await probeAs(OUTSIDER, "decide")).toMatchObject({ code: 16 });
  });
});
