/**
 * `icmpfwd top` as a person runs it: in a real terminal (tmux, 160×50) against a live service
 * in a private namespace, after a bounded ping run has stopped, so the counters are still. The
 * pane's numbers must equal what `icmpfwd stats --json` and `icmpfwd sessions --json` print.
 * Keys: s changes the sort, p pauses, q quits. Without a terminal it prints plain lines.
 */
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { DROP_COUNTERS } from "../../src/cli/top.js";
import { Action } from "../../src/gen/icmpfwd/v1/forwarder.js";
import { describeNetns, Netns, parsePing, tempDir, waitFor } from "../helpers/netns.js";
import { MAIN_JS, type ServeProcess, startServe } from "../helpers/serve.js";
import { TestClient } from "../integration/service/harness.js";

const PINGS = 30;

describeNetns("icmpfwd top in a terminal", () => {
  let ns: Netns;
  let serve: ServeProcess;
  let client: TestClient;
  let target: string;
  let tmuxSocket: string;

  const tmux = (...args: string[]) => ns.exec("tmux", ["-S", tmuxSocket, ...args]);
  const pane = async (): Promise<string> => (await tmux("capture-pane", "-p")).stdout;
  const cli = async (...args: string[]): Promise<string> => {
    const r = await ns.exec(process.execPath, [MAIN_JS, ...args, "--target", target]);
    if (r.code !== 0) throw new Error(`icmpfwd ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };

  beforeAll(async () => {
    ns = await Netns.create("top");
    const dir = tempDir("icmpfwd-top-");
    target = `unix:${join(dir, "icmpfwd.sock")}`;
    tmuxSocket = join(dir, "tmux.sock");
    serve = await startServe(ns, ["--listen", target, "--metrics-listen", "off"]);
    // A policy client that answers even sequences REPLY and odd ones CONSUME.
    client = await TestClient.connect(target, { clientName: "even-reply" });
    let seen = 0;
    client.call.on("data", () => {
      const fresh = client.events.slice(seen);
      seen = client.events.length;
      for (const e of fresh)
        client.decide([e], e.sequence % 2 === 0 ? Action.ACTION_REPLY : Action.ACTION_CONSUME);
    });
    // Bounded load, finished before anything is compared.
    const r = await ns.exec("ping", [
      "-n",
      "-q",
      "-c",
      String(PINGS),
      "-i",
      "0.01",
      "-W",
      "1",
      "198.18.0.2",
    ]);
    expect(parsePing(r.stdout).transmitted).toBe(PINGS);
    await serve.waitStats(
      (s) => s["service.outcomes.reply.verdict"] + s["service.outcomes.consume.verdict"] === PINGS,
      `${PINGS} verdicts`,
    );
  });

  afterAll(async () => {
    client?.close();
    await serve?.stop();
    await ns?.destroy();
  });

  it("shows the same totals as `icmpfwd stats --json` and `icmpfwd sessions --json`", async () => {
    const started = await tmux(
      "new-session",
      "-d",
      "-x",
      "160",
      "-y",
      "50",
      `${process.execPath} ${MAIN_JS} top --target ${target} --interval 200`,
    );
    expect(started.code, started.stderr).toBe(0);
    const screen = await waitFor(
      async () => {
        const p = await pane();
        return /requests\s+\d+ total/.test(p) && /even-reply/.test(p) ? p : null;
      },
      { what: "top to draw its first screen", timeoutMs: 10_000 },
    );
    const stats = JSON.parse(await cli("stats", "--json")) as {
      counters: Record<string, number>;
      gauges: Record<string, number>;
    };
    // One object per line.
    const sessions = (await cli("sessions", "--json"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l)) as {
      sessionId: string;
      clientName: string;
      decided: number;
      rejections: number;
      inFlight: number;
      maxInFlight: number;
    }[];
    const c = stats.counters;
    const lines = screen.split("\n");

    // Requests and in-flight.
    expect(screen).toMatch(new RegExp(`requests\\s+${c["service.requests"]} total`));
    expect(c["service.requests"]).toBe(PINGS);
    expect(screen).toMatch(new RegExp(`in-flight ${stats.gauges["service.inFlight"]}\\b`));
    expect(screen).toContain("sessions  1 decide, 0 observe");

    // Every outcome row equals its counter, and every non-zero counter has a row.
    const outcomeRows = new Map<string, number>();
    for (const l of lines) {
      const m = /^(reply|consume|fallthrough)\s+(\w+)\s+(\d+)\s+[\d.]+$/.exec(l.trimEnd());
      if (m !== null) outcomeRows.set(`${m[1]}.${m[2]}`, Number(m[3]));
    }
    const nonZero = Object.entries(c)
      .filter(([k, v]) => k.startsWith("service.outcomes.") && v > 0)
      .map(([k, v]) => [k.slice("service.outcomes.".length), v] as const);
    expect(new Map(nonZero)).toEqual(outcomeRows);
    expect(outcomeRows.get("reply.verdict")).toBe(PINGS / 2);
    expect(outcomeRows.get("consume.verdict")).toBe(PINGS / 2);

    // The session row.
    expect(sessions).toHaveLength(1);
    const s = sessions[0];
    const row = lines.find((l) => l.startsWith(s.sessionId.slice(0, 8)));
    expect(row, screen).toBeDefined();
    const cells = (row as string).trim().split(/\s{2,}/);
    // SESSION NAME MODE IN-FLIGHT DECIDED/S DECIDED REJECTIONS AFFINITY FLOW-VERDICTS P50 P99
    expect(cells[1]).toBe(s.clientName);
    expect(cells[2]).toBe("decide");
    expect(cells[3]).toBe(`${s.inFlight}/${s.maxInFlight}`);
    expect(Number(cells[5])).toBe(s.decided);
    expect(s.decided).toBe(PINGS);
    expect(Number(cells[6])).toBe(s.rejections);
    // One flow (one ping process: one ident) pinned to the session.
    expect(Number(cells[7])).toBe(1);

    // Netstack drops: each row equals its counters' sum; none missing.
    const dropRows = new Map<string, number>();
    for (const l of lines) {
      const m = /^([a-z0-9_]+)\s+(\d+)\s+[\d.]+$/.exec(l.trimEnd());
      if (m !== null && m[1] in DROP_COUNTERS) dropRows.set(m[1], Number(m[2]));
    }
    const expected = new Map<string, number>();
    for (const [reason, names] of Object.entries(DROP_COUNTERS)) {
      const n = names.reduce((a, k) => a + (c[k] ?? 0), 0);
      if (n > 0) expected.set(reason, n);
    }
    expect(dropRows).toEqual(expected);
  });

  it("s changes the session sort, p pauses the display, q quits and restores the terminal", async () => {
    expect(await pane()).toContain("s sort (decided/s)");
    await tmux("send-keys", "s");
    await waitFor(async () => (await pane()).includes("s sort (in-flight)"), {
      what: "the sort to change",
      timeoutMs: 5000,
    });
    await tmux("send-keys", "p");
    await waitFor(async () => (await pane()).includes("[PAUSED]"), {
      what: "the pause marker",
      timeoutMs: 5000,
    });
    await tmux("send-keys", "p");
    await waitFor(async () => !(await pane()).includes("[PAUSED]"), {
      what: "the display to resume",
      timeoutMs: 5000,
    });
    await tmux("send-keys", "q");
    // top exits: its session (the only window) ends, and the tmux server with it.
    await waitFor(async () => (await tmux("has-session")).code !== 0, {
      what: "top to exit on q",
      timeoutMs: 5000,
    });
  });

  it("prints one plain line per refresh when stdout is not a terminal", async () => {
    const out = await cli("top", "--iterations", "2", "--interval", "100");
    const lines = out.trim().split("\n");
    expect(lines).toHaveLength(2);
    for (const l of lines) {
      expect(l).not.toContain("\x1b[");
      expect(l).toContain(`requests=${PINGS} `);
      expect(l).toContain(`reply.verdict=${PINGS / 2}`);
      expect(l).toContain(`consume.verdict=${PINGS / 2}`);
    }
  });
}, ["tmux"]);
