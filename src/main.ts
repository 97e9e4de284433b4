#!/usr/bin/env -S node --max-semi-space-size=32
/** The `icmpfwd` command line. */
import { readFileSync } from "node:fs";
import { Command, Option } from "commander";
// The client subcommands and the service are imported when their command runs: `icmpfwd
// --help` and a client command load only what they use.
import type { ConnectionFlags, ServiceClient } from "./cli/client.js";
import {
  ConfigError,
  envName,
  fromEnvironment,
  fromFile,
  fromFlags,
  OPTIONS,
  resolveConfig,
} from "./config.js";
import type { PingEvent } from "./gen/icmpfwd/v1/forwarder.js";
import {
  startTelemetry,
  type Telemetry,
  TelemetrySettingsError,
  TelemetryStartError,
  telemetrySettings,
} from "./telemetry/index.js";
import { createLogger } from "./telemetry/logger.js";

const cli = (): Promise<typeof import("./cli/client.js")> => import("./cli/client.js");

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

/** Commander's attribute name for a flag (`--default-ttl` → `defaultTtl`). */
function attributeOf(flag: string): string {
  return flag.replace(/^--/, "").replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function fatal(message: string, code = 1): never {
  process.stderr.write(`icmpfwd: ${message}\n`);
  process.exit(code);
}

/** Exit code of a usage error (unknown command or flag, a bad value); `health` makes it 1. */
const USAGE = 2;
let usageExitCode: number = USAGE;

function usage(message: string): never {
  fatal(message, usageExitCode);
}

// `icmpfwd stats --watch | head -1`: once the reader is gone there is nobody to tell; end
// quietly with success, as `yes | head` does.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

const program = new Command();
program
  .name("icmpfwd")
  .description("A userspace ICMP Echo netstack on a TUN device, decided by policy clients")
  .version(
    `icmpfwd ${packageVersion()} (node ${process.version})`,
    "-V, --version",
    "print the versions of icmpfwd and Node",
  )
  // Commander's errors as one line, with its suggestion ("Did you mean stats?").
  .configureOutput({
    outputError: (text, write) =>
      write(
        `icmpfwd: ${text
          .replace(/^error: /, "")
          .trim()
          .replace(/\s*\n\s*/g, " ")}; see icmpfwd --help\n`,
      ),
  })
  // Help and --version exit 0; any usage error exits USAGE (commander's own default is 1).
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : usageExitCode));

/** The command being run, as typed ("route add"), for error messages. */
let action = "";
program.hook("preAction", (_program, cmd) => {
  const parent = cmd.parent;
  action = parent !== null && parent !== program ? `${parent.name()} ${cmd.name()}` : cmd.name();
});

const serveCmd = program
  .command("serve")
  .description("create the TUN device and answer ICMP Echo from the netstack")
  .option("--config <file>", "JSON config file (keys as in docs/options.md), env ICMPFWD_CONFIG");
for (const spec of OPTIONS) {
  const help = `${spec.description} [env ${envName(spec.key)}]${spec.default !== undefined ? ` (default: ${JSON.stringify(spec.default)})` : ""}`;
  if (spec.kind === "bool") {
    // The help shows the spelling that changes something: --no-X for an option on by default.
    const on = spec.default === true;
    const negated = spec.flag.replace(/^--/, "--no-");
    serveCmd.addOption(new Option(spec.flag, help).hideHelp(on));
    serveCmd.addOption(
      new Option(
        negated,
        on
          ? `do not ${spec.description} [env ${envName(spec.key)}=false]`
          : `turn off ${spec.flag}`,
      ).hideHelp(!on),
    );
  } else if (spec.kind === "list") {
    serveCmd.addOption(new Option(`${spec.flag} <value>`, help).argParser(collect));
  } else {
    serveCmd.addOption(new Option(`${spec.flag} <value>`, help));
  }
}

serveCmd.action(async (opts: Record<string, unknown>) => {
  let config: ReturnType<typeof resolveConfig>;
  const flags: Record<string, unknown> = {};
  for (const spec of OPTIONS) flags[spec.key] = opts[attributeOf(spec.flag)];
  const configFile = (opts.config as string | undefined) ?? process.env.ICMPFWD_CONFIG;
  // The same layers at start-up and on every reload (SIGHUP): the file is read again.
  const resolve = (): ReturnType<typeof resolveConfig> =>
    resolveConfig(
      configFile !== undefined ? fromFile(configFile) : {},
      fromEnvironment(process.env),
      fromFlags(flags),
    );
  try {
    config = resolve();
  } catch (e) {
    if (e instanceof ConfigError) fatal(e.message);
    throw e;
  }
  let telemetry: Telemetry;
  try {
    const settings = telemetrySettings({
      metricsListen: config.metricsListen,
      metricsMaxSessions: config.metricsMaxSessions,
      tracing: config.tracing,
      traceSampleRatio: config.traceSampleRatio,
    });
    telemetry = await startTelemetry(settings, packageVersion());
  } catch (e) {
    if (e instanceof TelemetrySettingsError || e instanceof TelemetryStartError) fatal(e.message);
    throw e;
  }
  const log = createLogger(config.logLevel, { format: config.logFormat });
  const { StartupError, serve } = await import("./serve.js");
  let running: Awaited<ReturnType<typeof serve>>;
  try {
    running = await serve(config, log, telemetry, { reloadConfig: resolve });
  } catch (e) {
    await telemetry.shutdown();
    if (e instanceof StartupError) fatal(e.message);
    throw e;
  }
  let healthOnly: HealthListener | null = null;
  try {
    healthOnly = await startHealthListener(config.healthListen);
  } catch (e) {
    await running.stop("--health-listen failed");
    await telemetry.shutdown();
    fatal(`--health-listen ${config.healthListen}: ${(e as Error).message}`);
  }
  if (healthOnly !== null) log.info({ healthListen: healthOnly.address }, "health listener");
  // The first signal drains (up to --drain-timeout); a second one ends the process at once.
  const shutdown = (signal: string): void => {
    healthOnly?.notServing();
    void running
      .stop(signal)
      .then(() => healthOnly?.close())
      .then(() => telemetry.shutdown())
      .then(
        () => process.exit(0),
        (e: unknown) => fatal(`stopping: ${e instanceof Error ? e.message : String(e)}`),
      );
  };
  process.once("SIGINT", () => shutdown("SIGINT"));
  process.once("SIGTERM", () => shutdown("SIGTERM"));
});

/** `--health-listen`: its address, and the drain's NOT_SERVING (as the main listener says). */
interface HealthListener {
  address: string;
  notServing(): void;
  close(): Promise<void>;
}

async function startHealthListener(at: string): Promise<HealthListener | null> {
  if (at === "off") return null;
  const { HealthImplementation } = await import("grpc-health-check");
  const { listenHealth, SERVICE_NAME, shutdown } = await import("./service/server.js");
  const health = new HealthImplementation({ "": "SERVING", [SERVICE_NAME]: "SERVING" });
  const { server, address } = await listenHealth(at, health);
  return {
    address,
    notServing: () => {
      health.setStatus("", "NOT_SERVING");
      health.setStatus(SERVICE_NAME, "NOT_SERVING");
    },
    close: () => shutdown(server, 500),
  };
}

// ---- client subcommands: against a running service ----

/** The connection and auth flags every client subcommand takes. */
function withConnection(cmd: Command): Command {
  return cmd
    .option(
      "--target <address>",
      "the service: HOST:PORT or unix:/path [env ICMPFWD_TARGET]",
      process.env.ICMPFWD_TARGET ?? "127.0.0.1:50051",
    )
    .option("--token <token>", "bearer token [env ICMPFWD_TOKEN]", process.env.ICMPFWD_TOKEN)
    .option("--tls-ca <file>", "use TLS; trust this PEM CA for the server")
    .option("--tls-cert <file>", "use TLS with this PEM client certificate (mTLS)")
    .option("--tls-key <file>", "the PEM private key of --tls-cert")
    .option("--connect-timeout <seconds>", "how long to wait for the service", "5")
    .option("--json", "print JSON (one object per line) instead of a table");
}

function connection(o: Record<string, unknown>): ConnectionFlags {
  const timeout = Number(o.connectTimeout);
  if (!(timeout > 0)) usage(`--connect-timeout: "${o.connectTimeout}" is not a positive number`);
  return {
    target: o.target as string,
    token: o.token as string | undefined,
    tlsCa: o.tlsCa as string | undefined,
    tlsCert: o.tlsCert as string | undefined,
    tlsKey: o.tlsKey as string | undefined,
    timeout,
  };
}

/**
 * Runs a client command; a gRPC or file error ends it with one line (target, status name,
 * hint: src/cli/errors.ts) and exit code 1.
 */
async function client(
  o: Record<string, unknown>,
  run: (c: ServiceClient) => Promise<number>,
): Promise<void> {
  const { ServiceClient } = await cli();
  const { describeCallError } = await import("./cli/errors.js");
  let c: ServiceClient | null = null;
  try {
    c = new ServiceClient(connection(o));
    process.exitCode = await run(c);
  } catch (e) {
    c?.close();
    fatal(describeCallError(e, { target: o.target as string, action }));
  } finally {
    c?.close();
  }
}

const print = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

withConnection(
  program
    .command("stats")
    .description("print the service's counters and gauges")
    .option("--watch", "print a snapshot every --interval ms until interrupted")
    .option("--interval <ms>", "interval of --watch (at least 100)", "1000")
    .option("--all", "also print counters that are zero"),
).action(async (o: Record<string, unknown>) => {
  const { statsJson, statsTable } = await cli();
  const { protoTimeOfMs } = await import("./service/wire.js");
  await client(o, async (c) => {
    const show = (r: Parameters<typeof statsTable>[0]): void =>
      print(o.json ? JSON.stringify(statsJson(r)) : `${statsTable(r, o.all === true)}\n`);
    if (!o.watch) {
      show(await c.getStats());
      return 0;
    }
    const call = c.client.watchStats({ interval: protoTimeOfMs(Number(o.interval)) }, c.metadata());
    process.once("SIGINT", () => call.cancel());
    await new Promise<void>((resolve, reject) => {
      call.on("data", show);
      call.on("end", resolve);
      call.on("error", (e: { code?: number }) => (e.code === 1 ? resolve() : reject(e)));
    });
    return 0;
  });
});

withConnection(program.command("sessions").description("list the connected policy clients")).action(
  async (o: Record<string, unknown>) => {
    const { sessionsJson, sessionsTable } = await cli();
    await client(o, async (c) => {
      const ss = await c.listSessions();
      if (o.json) for (const s of sessionsJson(ss)) print(JSON.stringify(s));
      else print(sessionsTable(ss));
      return 0;
    });
  },
);

withConnection(
  program
    .command("ping <address>")
    .description("send Echo Requests from inside the netstack and print the replies")
    .option("-c, --count <n>", "Echo Requests to send", "4")
    .option("-i, --interval <seconds>", "between Echo Requests", "1")
    .option("-s, --size <bytes>", "payload bytes", "56")
    .option("-W, --timeout <seconds>", "how long to wait for each reply", "1"),
).action(async (address: string, o: Record<string, unknown>) => {
  const { pingJson, pingLine } = await cli();
  const { protoTimeOfMs } = await import("./service/wire.js");
  await client(o, async (c) => {
    const num = (flag: string, v: unknown): number => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) usage(`${flag}: "${v}" is not a number`);
      return n;
    };
    const count = num("--count", o.count);
    const size = num("--size", o.size);
    const call = c.client.ping(
      {
        destination: address,
        count,
        interval: protoTimeOfMs(num("--interval", o.interval) * 1000),
        payloadSize: size,
        timeout: protoTimeOfMs(num("--timeout", o.timeout) * 1000),
      },
      c.metadata(),
    );
    if (!o.json) print(`PING ${address} from the netstack: ${size} data bytes`);
    const events: PingEvent[] = [];
    await new Promise<void>((resolve, reject) => {
      call.on("data", (e: PingEvent) => {
        events.push(e);
        print(o.json ? JSON.stringify(pingJson(e)) : pingLine(e, size));
      });
      call.on("end", resolve);
      call.on("error", reject);
    });
    const received = events.filter((e) => e.received).length;
    if (!o.json) {
      const loss =
        events.length === 0 ? 100 : Math.round((100 * (events.length - received)) / events.length);
      print(`--- ${address} ping statistics ---`);
      print(`${events.length} packets transmitted, ${received} received, ${loss}% packet loss`);
    }
    return received > 0 ? 0 : 1;
  });
});

withConnection(
  program
    .command("health")
    .description(
      "grpc.health.v1 check, with grpc_health_probe's exit codes: 0 SERVING, 1 bad arguments, 2 no connection, 3 RPC failed, 4 not SERVING, 20 TLS files",
    )
    .option("--service <name>", 'the service to ask about ("": the whole server)', "")
    .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 1)),
).action(async (o: Record<string, unknown>) => {
  const { HEALTH_EXIT, checkHealth } = await import("./cli/health.js");
  const { ClientError } = await import("./cli/errors.js");
  const { ServiceClient } = await cli();
  usageExitCode = HEALTH_EXIT.badArguments;
  let c: ServiceClient;
  try {
    c = new ServiceClient(connection(o));
  } catch (e) {
    fatal((e as Error).message, e instanceof ClientError ? e.healthCode : 1);
  }
  const r = await checkHealth(c, o.service as string, { target: o.target as string, action });
  c.close();
  if (r.status !== null) print(o.json ? JSON.stringify({ status: r.status }) : r.status);
  if (r.error !== null) fatal(r.error, r.code);
  process.exitCode = r.code;
});

withConnection(
  program
    .command("top")
    .description(
      "a live full-screen view: requests/s by outcome, decision latency, sessions, drops (q quit, s sort, p pause; plain lines when stdout is not a terminal)",
    )
    .option("--interval <ms>", "refresh interval (at least 100)", "1000")
    .option("--window <seconds>", "decision latency window (1–60)", "10")
    .option("--iterations <n>", "exit after this many refreshes (0: run until q)", "0"),
).action(async (o: Record<string, unknown>) => {
  const { runTop } = await import("./cli/top.js");
  const num = (flag: string, v: unknown, min: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) usage(`${flag}: "${v}" is not a number ≥ ${min}`);
    return n;
  };
  const intervalMs = num("--interval", o.interval, 100);
  const windowMs = num("--window", o.window, 1) * 1000;
  const iterations = num("--iterations", o.iterations, 0);
  await client(o, (c) =>
    runTop(c, {
      target: o.target as string,
      intervalMs,
      windowMs,
      iterations,
      json: o.json === true,
      tty: process.stdout.isTTY === true && o.json !== true,
    }),
  );
});

withConnection(
  program
    .command("reload")
    .description(
      "reload the service's configuration (as SIGHUP): print what changed, or why it was refused",
    ),
).action(async (o: Record<string, unknown>) => {
  const { reloadTable } = await cli();
  await client(o, async (c) => {
    const r = await c.call(c.admin.reload, {});
    print(o.json ? JSON.stringify(r) : reloadTable(r.changes));
    return 0;
  });
});

type Change = { network?: import("./gen/icmpfwd/v1/admin.js").GetNetworkResponse };

/** Prints the network after a change (or as it is). */
async function showNetwork(
  o: Record<string, unknown>,
  fetch: (c: ServiceClient) => Promise<Change & { kernelUpdated?: boolean }>,
): Promise<void> {
  const { networkJson, networkTable } = await cli();
  await client(o, async (c) => {
    const r = await fetch(c);
    if (r.network === undefined) return 0;
    if (o.json)
      print(JSON.stringify({ ...networkJson(r.network), kernelUpdated: r.kernelUpdated ?? false }));
    else {
      if (r.kernelUpdated) print("kernel route updated");
      print(networkTable(r.network));
    }
    return 0;
  });
}

function nicOf(o: Record<string, unknown>): number {
  const n = Number(o.nic ?? 0);
  if (!Number.isInteger(n) || n < 0) usage(`--nic: "${o.nic}" is not a NIC id`);
  return n;
}

const addr = program
  .command("addr")
  .description("the netstack's addresses: list, add ADDRESS/PREFIX, del ADDRESS");
withConnection(addr.command("list", { isDefault: true }).description("NICs and routes")).action(
  (o: Record<string, unknown>) =>
    showNetwork(o, async (c) => ({ network: await c.call(c.admin.getNetwork, {}) })),
);
withConnection(
  addr
    .command("add <prefix>")
    .description("add an address with its on-link route (and a kernel route when icmpfwd owns it)")
    .option("--nic <id>", "NIC (default: the service's)"),
).action((prefix: string, o: Record<string, unknown>) =>
  showNetwork(o, (c) => c.call(c.admin.addAddress, { address: prefix, nic: nicOf(o) })),
);
withConnection(
  addr
    .command("del <address>")
    .description("remove an address (and the routes it brought)")
    .option("--nic <id>", "NIC (default: the service's)"),
).action((address: string, o: Record<string, unknown>) =>
  showNetwork(o, (c) => c.call(c.admin.removeAddress, { address, nic: nicOf(o) })),
);

const route = program
  .command("route")
  .description("the netstack's routes: list, add PREFIX, del PREFIX");
withConnection(route.command("list", { isDefault: true }).description("NICs and routes")).action(
  (o: Record<string, unknown>) =>
    showNetwork(o, async (c) => ({ network: await c.call(c.admin.getNetwork, {}) })),
);
withConnection(
  route
    .command("add <prefix>")
    .description(
      "route a prefix into the NIC (and into the TUN, when icmpfwd owns the kernel side)",
    )
    .option("--nic <id>", "NIC (default: the service's)"),
).action((prefix: string, o: Record<string, unknown>) =>
  showNetwork(o, (c) => c.call(c.admin.addRoute, { destination: prefix, nic: nicOf(o) })),
);
withConnection(
  route
    .command("del <prefix>")
    .description("remove a route (and the kernel route icmpfwd added for it)")
    .option("--nic <id>", "NIC (default: the service's)"),
).action((prefix: string, o: Record<string, unknown>) =>
  showNetwork(o, (c) => c.call(c.admin.removeRoute, { destination: prefix, nic: nicOf(o) })),
);

withConnection(
  program
    .command("promiscuous <on|off>")
    .description("accept any destination as a temporary address (and send from it), or stop")
    .option("--nic <id>", "NIC (default: the service's)"),
).action((mode: string, o: Record<string, unknown>) => {
  if (mode !== "on" && mode !== "off") usage(`promiscuous: "${mode}" is not on or off`);
  return showNetwork(o, (c) =>
    c.call(c.admin.setPromiscuous, { on: mode === "on", nic: nicOf(o) }),
  );
});

// No default command: `icmpfwd` alone prints help and exits 2, so typing the bare name never
// creates a TUN device or touches the kernel's addresses.
if (process.argv.length <= 2) {
  program.outputHelp({ error: true });
  process.exit(USAGE);
}

program.parseAsync(process.argv).catch((e: unknown) => {
  fatal(e instanceof Error ? e.message : String(e));
});
