#!/usr/bin/env node
/**
 * `icmpfwd-policy <policy> [flags]`: runs one example policy against icmpfwd services, as
 * docs/cli-contract.md says every policy CLI does (flags, environment, exit codes, log lines).
 */
import { readFileSync } from "node:fs";
import { status as grpcStatus } from "@grpc/grpc-js";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import {
  connect,
  DEFAULT_RESOLVE_INTERVAL_MS,
  DEFAULT_TARGET,
  defaultTarget,
  jsonLogger,
  PolicyClientError,
  parseTargets,
  type TlsOptions,
} from "./index.js";
import { POLICY_NAMES, type PolicyName, policy } from "./policies.js";
import { AllowList } from "./relay/allow-list.js";
import { type RelayPolicy, relayPolicy, relaySummary } from "./relay/policy.js";

/** Every policy the CLI runs: the library's examples and the relay. */
const CLI_POLICIES: readonly string[] = [...POLICY_NAMES, "relay"];

/** Exit codes (docs/cli-contract.md "Exit codes"). */
const EXIT_OK = 0;
const EXIT_ERROR = 1;
const EXIT_USAGE = 2;

const integer =
  (min: number) =>
  (v: string): number => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isInteger(n) || n < min) {
      throw new InvalidArgumentError(`not an integer ≥ ${min}`);
    }
    return n;
  };
const nonNegative = (v: string): number => {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < 0) {
    throw new InvalidArgumentError("not a number ≥ 0");
  }
  return n;
};
/** --allow: comma-separated prefixes, the flag repeatable. */
const prefixes = (v: string, previous: AllowList | undefined): AllowList => {
  let list: AllowList;
  try {
    list = AllowList.parse(v);
  } catch (e) {
    throw new InvalidArgumentError(e instanceof Error ? e.message : String(e));
  }
  return previous === undefined ? list : previous.concat(list);
};
const targetList = (v: string): string => {
  try {
    parseTargets(v);
  } catch (e) {
    throw new InvalidArgumentError(e instanceof Error ? e.message : String(e));
  }
  return v;
};

interface Flags {
  target: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  name?: string;
  family?: "ipv4" | "ipv6";
  maxInFlight: number;
  n: number;
  rate: number;
  burst: number;
  delayMs: number;
  measure: boolean;
  resolveIntervalMs: number;
  rttCacheMs: number;
  maxPings: number;
  allow?: AllowList;
  relayBudgetMs: number;
  unprivileged: boolean;
  verbose: boolean;
}

const program = new Command()
  .name("icmpfwd-policy")
  .description("Runs an example policy client against icmpfwd decision services")
  .argument("<policy>", `one of ${CLI_POLICIES.join(", ")}`)
  .addOption(
    new Option(
      "--target <list>",
      "comma-separated host:port, [v6]:port, unix:/path, dns:///name:port (env ICMPFWD_TARGET)",
    )
      .default(defaultTarget(), process.env.ICMPFWD_TARGET ? "$ICMPFWD_TARGET" : DEFAULT_TARGET)
      .argParser(targetList),
  )
  .addOption(
    new Option("--token <token>", "bearer token (env ICMPFWD_TOKEN)").default(
      process.env.ICMPFWD_TOKEN || undefined,
    ),
  )
  .option("--tls-ca <file>", "use TLS, trusting this CA (PEM)")
  .option("--tls-cert <file>", "mTLS client certificate (PEM, with --tls-key); turns TLS on")
  .option("--tls-key <file>", "the client certificate's key (PEM)")
  .option("--tls-server-name <name>", "the name checked in the server certificate")
  .option("--name <name>", "client name in Hello (default icmpfwd-policy/<policy>)")
  .addOption(
    new Option("--family <family>", "only requests of this family (Hello filter)").choices([
      "ipv4",
      "ipv6",
    ]),
  )
  .option("--max-in-flight <n>", "Hello.max_in_flight (0: the service's default)", integer(0), 0)
  .option("--n <n>", "every-nth: reply to every nth request", integer(1), 2)
  .option("--rate <perSecond>", "per-source-rate-limit: tokens per second", nonNegative, 1)
  .option("--burst <n>", "per-source-rate-limit: bucket size", nonNegative, 5)
  .option(
    "--delay-ms <ms>",
    "proxy-latency: delay before the synthetic reply (with --measure: the fallback)",
    integer(0),
    100,
  )
  .option("--measure", "proxy-latency: delay by the RTT this host's ping measures", false)
  .option(
    "--resolve-interval-ms <ms>",
    "how often a dns:/// target is re-resolved",
    integer(1000),
    DEFAULT_RESOLVE_INTERVAL_MS,
  )
  .option(
    "--rtt-cache-ms <ms>",
    "proxy-latency --measure: reuse a measurement this long",
    integer(0),
    5000,
  )
  .option("--max-pings <n>", "proxy-latency --measure: pings running at once", integer(1), 4)
  .option(
    "--allow <prefixes>",
    "relay: the destination prefixes it may relay to (comma-separated or repeated; required)",
    prefixes,
  )
  .option(
    "--relay-budget-ms <ms>",
    "relay: how long to wait for the destination's answer (keep it inside the service's --synthetic-window)",
    integer(1),
    3000,
  )
  .option(
    "--unprivileged",
    "relay: unprivileged ICMP datagram sockets even with CAP_NET_RAW (routers' errors through the error queue)",
    false,
  )
  .option("-v, --verbose", "log every verdict (debug lines)", false)
  .exitOverride();

/** TLS options from the flags; throws a usage error or a file error. */
function tlsOptions(f: Flags): TlsOptions | undefined {
  if (f.tlsKey !== undefined && f.tlsCert === undefined) {
    program.error("error: --tls-key needs --tls-cert", { exitCode: EXIT_USAGE });
  }
  if (f.tlsCert !== undefined && f.tlsKey === undefined) {
    program.error("error: --tls-cert needs --tls-key", { exitCode: EXIT_USAGE });
  }
  if (f.tlsCa === undefined && f.tlsCert === undefined) return undefined;
  return {
    ca: f.tlsCa === undefined ? undefined : readFileSync(f.tlsCa),
    cert: f.tlsCert === undefined ? undefined : readFileSync(f.tlsCert),
    key: f.tlsKey === undefined ? undefined : readFileSync(f.tlsKey),
    serverName: f.tlsServerName,
  };
}

async function run(name: string, f: Flags): Promise<number> {
  if (!CLI_POLICIES.includes(name)) {
    program.error(`error: unknown policy ${name}: one of ${CLI_POLICIES.join(", ")}`, {
      exitCode: EXIT_USAGE,
    });
  }
  if (name === "relay" && f.allow === undefined) {
    program.error(
      "error: relay needs --allow: the destination prefixes it may relay to (it is never an open relay)",
      { exitCode: EXIT_USAGE },
    );
  }
  const log = jsonLogger({ debug: f.verbose });
  let tls: TlsOptions | undefined;
  try {
    tls = tlsOptions(f);
  } catch (e) {
    if (e instanceof CommanderError) throw e;
    log("error", "cannot read the TLS files", {
      error: e instanceof Error ? e.message : String(e),
    });
    return EXIT_ERROR;
  }
  let relay: RelayPolicy | undefined;
  if (name === "relay") {
    try {
      relay = relayPolicy({
        allow: f.allow!,
        rate: f.rate,
        burst: f.burst,
        budgetMs: f.relayBudgetMs,
        unprivileged: f.unprivileged,
        onLog: log,
      });
    } catch (e) {
      log("error", `relay: ${e instanceof Error ? e.message : String(e)}`);
      return EXIT_ERROR;
    }
  }
  const p =
    relay === undefined
      ? policy(name as PolicyName, {
          n: f.n,
          rate: f.rate,
          burst: f.burst,
          delayMs: f.delayMs,
          measure: f.measure
            ? { cacheMs: f.rttCacheMs, maxConcurrent: f.maxPings, onLog: log }
            : false,
        })
      : { mode: "decide" as const, handler: relay.handler, payloadBytes: relay.payloadBytes };
  const ac = new AbortController();
  let signals = 0;
  const stop = (): void => {
    if (++signals > 1) process.exit(130);
    ac.abort();
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  const client = connect({
    target: f.target,
    resolveIntervalMs: f.resolveIntervalMs,
    token: f.token,
    tls,
    name: f.name ?? `icmpfwd-policy/${name}`,
    mode: p.mode,
    maxInFlight: f.maxInFlight,
    filter: f.family === undefined ? undefined : { family: f.family },
    payloadBytes: p.payloadBytes,
    signal: ac.signal,
    handler: p.handler,
    onLog: log,
  });
  let code = EXIT_OK;
  try {
    await client.done;
  } catch (e) {
    const refused =
      e instanceof PolicyClientError &&
      (e.code === grpcStatus.UNAUTHENTICATED || e.code === grpcStatus.PERMISSION_DENIED);
    code = refused ? EXIT_USAGE : EXIT_ERROR;
  }
  relay?.close();
  const s = client.stats;
  const decided = s.decided.reply + s.decided.consume + s.decided.fallthrough;
  const m = "meter" in p ? p.meter?.stats : undefined;
  const extra =
    relay !== undefined
      ? relaySummary(relay.counts)
      : m === undefined
        ? ""
        : ` pings=${m.pings} shared=${m.shared} ping_failures=${m.failures} loops=${m.loops}`;
  process.stdout.write(
    `summary policy=${name} decided=${decided} reply=${s.decided.reply} consume=${s.decided.consume} fallthrough=${s.decided.fallthrough} errors=${s.errors} observed=${s.observed} sessions=${s.sessions}${extra}\n`,
  );
  return code;
}

let exitCode = EXIT_OK;
program.action(async (name: string, f: Flags) => {
  exitCode = await run(name, f);
});
try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (!(e instanceof CommanderError)) throw e;
  // --help and --version are clean exits; every other parse error is a usage error.
  exitCode = e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
}
process.exitCode = exitCode;
