/**
 * Synthetic ICMP errors end to end: `icmpfwd serve` in a private namespace, the kernel's ping,
 * a policy client that consumes every request and answers it with an ICMP error from a router's
 * address. The kernel takes the error as the answer to its own Echo Request (ping prints the
 * router and the reason) and counts it; the service's count by type equals the kernel's.
 * Positive control: the same service and client answer with an Echo Reply when told to. The
 * service traces to stderr (`--tracing console`): each answer is one `icmpfwd.synthetic_reply`
 * span in its request's trace, naming the error and the router.
 */
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { Action, SyntheticErrorType } from "../../src/gen/icmpfwd/v1/forwarder.js";
import { describeNetns, Netns, tempDir, waitFor } from "../helpers/netns.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";
import { TestClient } from "../integration/service/harness.js";

const CASES = [
  {
    family: "IPv4",
    target: "198.18.0.2",
    router: "198.18.5.1",
    type: SyntheticErrorType.SYNTHETIC_ERROR_TYPE_TIME_EXCEEDED,
    printed: /From 198\.18\.5\.1 icmp_seq=1 Time to live exceeded/,
    kernelCounter: "IcmpInTimeExcds",
    serviceCounter: "service.synthetic.errors.timeExceeded",
  },
  {
    family: "IPv4",
    target: "198.18.0.2",
    router: "198.18.5.1",
    type: SyntheticErrorType.SYNTHETIC_ERROR_TYPE_NET_UNREACHABLE,
    printed: /From 198\.18\.5\.1 icmp_seq=1 Destination Net Unreachable/,
    kernelCounter: "IcmpInDestUnreachs",
    serviceCounter: "service.synthetic.errors.netUnreachable",
  },
  {
    family: "IPv6",
    target: "fd00:1::2",
    router: "fd00:5::1",
    type: SyntheticErrorType.SYNTHETIC_ERROR_TYPE_TIME_EXCEEDED,
    printed: /From fd00:5::1 icmp_seq=1 Time exceeded: Hop limit/,
    kernelCounter: "Icmp6InTimeExcds",
    serviceCounter: "service.synthetic.errors.timeExceeded",
  },
  {
    family: "IPv6",
    target: "fd00:1::2",
    router: "fd00:5::1",
    type: SyntheticErrorType.SYNTHETIC_ERROR_TYPE_NET_UNREACHABLE,
    printed: /From fd00:5::1 icmp_seq=1 Destination unreachable: No route/,
    kernelCounter: "Icmp6InDestUnreachs",
    serviceCounter: "service.synthetic.errors.netUnreachable",
  },
] as const;

describeNetns("synthetic ICMP errors, end to end", () => {
  let ns: Netns;
  let serve: ServeProcess;
  let socket: string;
  let client: TestClient | null = null;

  beforeAll(async () => {
    ns = await Netns.create("synerr");
    socket = join(tempDir("icmpfwd-sock-"), "icmpfwd.sock");
    serve = await startServe(
      ns,
      ["--listen", `unix:${socket}`, "--deadline", "2000", "--tracing", "console"],
      { OTEL_BSP_SCHEDULE_DELAY: "50" },
    );
  });

  afterEach(() => {
    client?.close();
    client = null;
  });

  afterAll(async () => {
    if (serve !== undefined) expect((await serve.stop()).code).toBe(0);
    await ns?.destroy();
  });

  /** The span lines `--tracing console` wrote so far, by name. */
  const spans = (
    name: string,
  ): {
    trace_id: string;
    span_id: string;
    parent_span_id: string | null;
    attributes: Record<string, unknown>;
  }[] =>
    serve.proc
      .output()
      .split("\n")
      .filter((l) => l.startsWith('{"span":'))
      .map((l) => JSON.parse(l))
      .filter((s) => s.span === name);

  for (const c of CASES) {
    const name = SyntheticErrorType[c.type].replace("SYNTHETIC_ERROR_TYPE_", "");
    it(`${c.family} ${name}: ping shows the router and the reason; the service's count equals the kernel's; an Echo Reply still gets through`, async () => {
      const before = serve.stats();
      const delta = (x: Record<string, number>, k: string): number =>
        (x[k] ?? 0) - (before[k] ?? 0);
      const tc = await TestClient.connect(`unix:${socket}`, { payloadBytes: 56 });
      client = tc;
      // Sequence 1 gets the error; sequence 2 (the positive control) an Echo Reply.
      let seen = 0;
      tc.call.on("data", () => {
        const fresh = tc.events.slice(seen);
        seen = tc.events.length;
        if (fresh.length === 0) return;
        tc.decide(fresh, Action.ACTION_CONSUME);
        for (const e of fresh) {
          if (e.sequence === 1) tc.syntheticError(e.requestId, c.type, c.router);
          else tc.synthetic(e.requestId);
        }
      });
      const kernelBefore = await ns.nstat(c.kernelCounter);
      const args = c.family === "IPv6" ? ["-6"] : [];
      const r = await ns.ping([...args, "-n", "-c", "2", "-i", "0.5", "-W", "3", c.target]);
      expect(r.stdout).toMatch(c.printed);
      expect(r.transmitted).toBe(2);
      expect(r.received).toBe(1);
      expect(r.seqs).toEqual([2]);
      const s = await serve.waitStats(
        (x) => delta(x, c.serviceCounter) === 1 && delta(x, "service.synthetic.sent") === 1,
        "the error and the reply sent",
      );
      expect(delta(s, "service.outcomes.consume.verdict")).toBe(2);
      expect(delta(s, "service.rejections.invalidArgument")).toBe(0);
      // What the service says it sent is what the kernel received: exactly one error.
      expect((await ns.nstat(c.kernelCounter)) - kernelBefore).toBe(1);
      expect(tc.rejections).toHaveLength(0);
      // Traced: the error and the control's Echo Reply, each a child of its request's span.
      const kind =
        c.serviceCounter === "service.synthetic.errors.timeExceeded"
          ? "time_exceeded"
          : "net_unreachable";
      const answered = await waitFor(
        () => {
          const all = spans("icmpfwd.synthetic_reply");
          const error = all.filter(
            (x) =>
              x.attributes["icmpfwd.synthetic.source"] === c.router &&
              x.attributes["icmpfwd.synthetic.kind"] === kind,
          );
          return error.length === 1 ? error[0] : null;
        },
        { what: "the synthetic error's span", timeoutMs: 5_000 },
      );
      const request = spans("icmpfwd.echo_request").find((x) => x.trace_id === answered.trace_id);
      expect(request?.attributes["icmp.sequence"]).toBe(1);
      expect(answered.parent_span_id).toBe(request?.span_id);
    });
  }
});
