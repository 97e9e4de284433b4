#!/usr/bin/env node
/** `icmpfwd-policy <name> [options]`: runs one example policy against an icmpfwd service. */
import { Command, InvalidArgumentError, Option } from "commander";
import { connect, DEFAULT_TARGET, stderrLogger } from "./index.js";
import { POLICY_NAMES, type PolicyName, policy } from "./policies.js";

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError("not a non-negative number");
  return n;
};

const program = new Command()
  .name("icmpfwd-policy")
  .description("Runs an example policy client against the icmpfwd decision service")
  .addOption(new Option("--target <target>", "host:port or unix:/path").default(DEFAULT_TARGET))
  .option("--token <token>", "bearer token for the service's --token")
  .option("--name <name>", "client name in Hello")
  .option("--max-in-flight <n>", "Hello.max_in_flight (0: the service's default)", int, 0)
  .addOption(
    new Option("--family <family>", "only requests of this family (Hello filter)").choices([
      "ipv4",
      "ipv6",
    ]),
  )
  .option("--n <n>", "every-nth: reply to every nth request", int, 2)
  .option("--rate <perSecond>", "per-source-rate-limit: tokens per second", int, 1)
  .option("--burst <n>", "per-source-rate-limit: bucket size", int, 5)
  .option(
    "--delay-ms <ms>",
    "proxy-latency: delay before the synthetic reply (with --measure: the fallback)",
    int,
    100,
  )
  .option(
    "--measure",
    "proxy-latency: delay by the RTT this host's ping measures to the destination",
    false,
  )
  .option(
    "--rtt-cache-ms <ms>",
    "proxy-latency --measure: reuse a measurement this long",
    int,
    5000,
  )
  .option("--max-pings <n>", "proxy-latency --measure: pings running at once", int, 4)
  .argument("<policy>", `one of ${POLICY_NAMES.join(", ")}`)
  .action(async (name: string, opts) => {
    if (!(POLICY_NAMES as readonly string[]).includes(name)) {
      program.error(`unknown policy ${name}: one of ${POLICY_NAMES.join(", ")}`);
    }
    const p = policy(name as PolicyName, {
      n: opts.n,
      rate: opts.rate,
      burst: opts.burst,
      delayMs: opts.delayMs,
      measure: opts.measure
        ? { cacheMs: opts.rttCacheMs, maxConcurrent: opts.maxPings, onLog: stderrLogger }
        : false,
    });
    const ac = new AbortController();
    let signals = 0;
    const stop = (): void => {
      if (++signals > 1) process.exit(130);
      ac.abort();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    const client = connect({
      target: opts.target,
      token: opts.token,
      name: opts.name ?? `icmpfwd-policy/${name}`,
      mode: p.mode,
      maxInFlight: opts.maxInFlight,
      filter: opts.family === undefined ? undefined : { family: opts.family },
      payloadBytes: p.payloadBytes,
      signal: ac.signal,
      handler: p.handler,
      onLog: stderrLogger,
    });
    let code = 0;
    try {
      await client.done;
    } catch (e) {
      process.stderr.write(`icmpfwd-policy: ${e instanceof Error ? e.message : String(e)}\n`);
      code = 1;
    }
    const s = client.stats;
    const decided = s.decided.reply + s.decided.consume + s.decided.fallthrough;
    const m = p.meter?.stats;
    const pings =
      m === undefined
        ? ""
        : ` pings=${m.pings} shared=${m.shared} ping_failures=${m.failures} loops=${m.loops}`;
    process.stdout.write(
      `summary policy=${name} decided=${decided} reply=${s.decided.reply} consume=${s.decided.consume} fallthrough=${s.decided.fallthrough} errors=${s.errors} observed=${s.observed} sessions=${s.sessions}${pings}\n`,
    );
    process.exitCode = code;
  });

await program.parseAsync(process.argv);
