/**
 * `icmpfwd serve`: wires the TUN link, the netstack and the gRPC decision service together, and
 * owns the process lifecycle: start-up, the stats dump, and a drain and clean exit on
 * SIGINT/SIGTERM.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { type Config, lookupAccount } from "./config.js";
import type { ConfigChange } from "./gen/icmpfwd/v1/admin.js";
import { configureKernelSide, kernelCommands, runKernelCommands } from "./kernel-side.js";
import { PcapngWriter } from "./link/pcapng.js";
import { SnifferEndpoint } from "./link/sniffer.js";
import { TunEndpoint, TunError } from "./link/tun.js";
import { formatAddress, parseAddressWithPrefix, Subnet } from "./netstack/address.js";
import { ICMPV4_PROTOCOL_NUMBER, ICMPV6_PROTOCOL_NUMBER } from "./netstack/buffer.js";
import { Forwarder } from "./netstack/icmp/forwarder.js";
import type { LinkEndpoint } from "./netstack/link-endpoint.js";
import { Stack } from "./netstack/stack.js";
import { flattenStats } from "./netstack/stats.js";
import { isRefusal, planReload, type ReloadState } from "./reload.js";
import { type ServiceError, serviceError } from "./service/errors.js";
import {
  EchoService,
  loadAuthz,
  type SecurityOptions,
  type ServiceOptions,
} from "./service/index.js";
import { NetworkControl } from "./service/network.js";
import type { Telemetry } from "./telemetry/index.js";
import { createLogger, type Logger } from "./telemetry/logger.js";

export const NIC_ID = 1;

/** A startup failure to print as one line, without a stack trace. */
export class StartupError extends Error {
  override readonly name = "StartupError";
}

export interface Running {
  stack: Stack;
  tun: TunEndpoint;
  service: EchoService;
  /**
   * Re-reads the configuration and applies it (SIGHUP, EchoAdmin.Reload): the changes, or why
   * the reload was refused (the running configuration is kept).
   */
  reload(trigger: string): Promise<ConfigChange[] | ServiceError>;
  /** Drains the service (DESIGN.md §4), then closes the stack and the TUN. */
  stop(reason: string): Promise<void>;
}

export interface ServeOptions {
  /**
   * Resolves the configuration again (the config file re-read) for a reload; throws a
   * ConfigError naming the field. Given: SIGHUP reloads. Without it a reload re-reads only the
   * files the running configuration names (certificates, the authorization file).
   */
  reloadConfig?: () => Config;
}

/** Builds the stack on an open link: NIC 1 with the configured addresses and on-link routes. */
export function buildStack(config: Config, link: LinkEndpoint): Stack {
  const stack = new Stack({
    defaultTTL: config.defaultTtl,
    icmpRateLimit: config.icmpRateLimit,
    icmpBurst: config.icmpBurst,
    ipv4ReassemblyTimeoutMs: config.ipv4ReassemblyTimeoutMs,
    ipv6ReassemblyTimeoutMs: config.ipv6ReassemblyTimeoutMs,
    reassemblyHighThreshold: config.reassemblyHighThreshold,
    reassemblyLowThreshold: config.reassemblyLowThreshold,
    maxReassembledDatagramSize: config.maxReassembledDatagramSize,
  });
  const fail = (what: string, e: { message: string } | null): void => {
    if (e !== null) throw new StartupError(`${what}: ${e.message}`);
  };
  fail(
    "create NIC",
    stack.createNIC(NIC_ID, link, {
      name: config.tun,
      promiscuous: config.promiscuous,
      spoofing: config.promiscuous,
    }),
  );
  const onLink = new Set<string>();
  for (const text of config.addresses) {
    const p = parseAddressWithPrefix(text);
    if (p === null) throw new StartupError(`bad address ${text}`);
    fail(`address ${text}`, stack.addAddress(NIC_ID, p.address, p.prefixLength));
    const subnet = new Subnet(p.address, p.prefixLength);
    if (!onLink.has(subnet.toString())) {
      onLink.add(subnet.toString());
      fail(`route ${subnet}`, stack.addRoute(subnet, NIC_ID));
    }
  }
  for (const text of config.routes) {
    const subnet = Subnet.parse(text);
    if (subnet === null) throw new StartupError(`bad route ${text}`);
    if (!onLink.has(subnet.toString())) fail(`route ${text}`, stack.addRoute(subnet, NIC_ID));
  }
  if (config.temporaryReply) {
    // The seed's large-address-space embedder: delegate temporary addresses back to the stack.
    // (serve replaces this handler with the service, which keeps the rule for fallthrough.)
    const f = new Forwarder((req) =>
      req.packetInfo().localAddressTemporary ? req.reply() : false,
    );
    stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, f.handlePacket);
    stack.setTransportProtocolHandler(ICMPV6_PROTOCOL_NUMBER, f.handlePacket);
  }
  return stack;
}

function statsSnapshot(
  stack: Stack,
  tun: TunEndpoint,
  service: EchoService,
): Record<string, number> {
  const out = flattenStats(stack.stats);
  for (const [k, v] of Object.entries(tun.stats)) out[`link.${k}`] = v;
  Object.assign(out, service.counters(), service.gauges());
  return out;
}

function readPem(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new StartupError(`${what} ${path}: ${(e as Error).message}`);
  }
}

/** The TLS files, the token and the authorization file, read once at start-up. */
export function securityOptions(config: Config): SecurityOptions {
  const out: SecurityOptions = { token: config.token };
  if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
    out.tls = {
      cert: readPem("--tls-cert", config.tlsCert),
      key: readPem("--tls-key", config.tlsKey),
      clientCa:
        config.tlsClientCa === undefined
          ? undefined
          : readPem("--tls-client-ca", config.tlsClientCa),
    };
  }
  if (config.authz !== undefined) {
    const a = loadAuthz(config.authz);
    if (typeof a === "string") throw new StartupError(`--authz: ${a}`);
    out.authz = a;
  }
  return out;
}

/** The service as the configuration asks for it (not yet listening). */
function serviceOptions(config: Config, stack: Stack): ServiceOptions {
  return {
    listen: config.listen,
    deadlineMs: config.deadline,
    policy: {
      onTimeout: config.onTimeout,
      onNoClient: config.onNoClient,
      onOverload: config.onOverload,
      onDisconnect: config.onDisconnect,
    },
    temporaryReply: config.temporaryReply,
    drainTimeoutMs: config.drainTimeout,
    limits: {
      defaultMaxInFlight: config.maxInFlight,
      maxBatch: config.maxBatch,
      observerQueue: config.observerQueue,
    },
    syntheticWindowMs: config.syntheticWindow,
    security: securityOptions(config),
    extraCounters: () => flattenStats(stack.stats),
  };
}

/**
 * `--user` / `--group`: once the TUN is open, its kernel side configured and the listeners bound,
 * root is given up for good — supplementary groups replaced, then the gid, then the uid (real,
 * effective and saved). The open TUN fd keeps working; a non-persistent device still goes away
 * when the process closes it. Returns the ids, or null when neither option is set.
 */
export function dropPrivileges(config: Config): { uid: number; gid: number } | null {
  if (config.user === undefined && config.group === undefined) return null;
  const idOf = (db: "passwd" | "group", v: string): number[] => {
    const entry = lookupAccount(db, v);
    if (entry !== null) return entry;
    if (/^\d+$/.test(v)) return [Number(v), Number.NaN];
    throw new StartupError(
      `--${db === "passwd" ? "user" : "group"} ${v}: no such ${db === "passwd" ? "user" : "group"}`,
    );
  };
  const user = config.user === undefined ? null : idOf("passwd", config.user);
  const gid =
    config.group !== undefined ? idOf("group", config.group)[0] : (user?.[1] ?? Number.NaN);
  if (Number.isNaN(gid))
    throw new StartupError(`--user ${config.user}: no primary group known; give --group`);
  const uid = user?.[0] ?? (process.getuid?.() as number);
  if (process.getuid?.() !== 0) {
    if (uid === process.getuid?.() && gid === process.getgid?.()) return { uid, gid };
    throw new StartupError(
      `--user/--group: changing to uid ${uid} gid ${gid} needs root (running as uid ${process.getuid?.()})`,
    );
  }
  try {
    process.setgroups?.([gid]);
    process.setgid?.(gid);
    if (user !== null) process.setuid?.(uid);
  } catch (e) {
    throw new StartupError(`dropping privileges to uid ${uid} gid ${gid}: ${(e as Error).message}`);
  }
  if (user !== null && uid !== 0) {
    let regained = true;
    try {
      process.setuid?.(0);
    } catch {
      regained = false;
    }
    if (regained) throw new StartupError(`dropping privileges: uid ${uid} could become root again`);
  }
  return { uid, gid };
}

function writeStatsFile(path: string, stats: Record<string, number>): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(stats, null, 2)}\n`);
  renameSync(tmp, path);
}

export async function serve(
  config: Config,
  log: Logger = createLogger(config.logLevel),
  telemetry: Telemetry | null = null,
  serveOptions: ServeOptions = {},
): Promise<Running> {
  const name = config.tunAttach ?? config.tun;
  let tun: TunEndpoint;
  try {
    tun = TunEndpoint.open({ name, mtu: config.mtu, attach: config.tunAttach !== undefined });
  } catch (e) {
    if (e instanceof TunError) {
      const notRoot =
        process.getuid?.() !== 0 && config.tunAttach === undefined && e.kind === "permission";
      throw new StartupError(
        notRoot
          ? `creating TUN device ${name} needs root (CAP_NET_ADMIN): run as root, or have an administrator create a persistent device (ip tuntap add dev ${name} mode tun user ${process.getuid?.()}) and start with --tun-attach ${name}`
          : e.message,
      );
    }
    throw e;
  }
  let link: LinkEndpoint = tun;
  if (config.pcap !== undefined) link = new SnifferEndpoint(tun, PcapngWriter.open(config.pcap));

  let stack: Stack;
  let service: EchoService;
  let security: SecurityOptions;
  try {
    // A persistent device's kernel side belongs to its administrator unless asked.
    if (config.configureKernel && config.tunAttach === undefined) {
      const err = configureKernelSide(kernelCommands(name, config.kernelAddresses, config.routes));
      if (err !== null) throw new StartupError(`configuring ${name}: ${err}`);
    }
    stack = buildStack(config, link);
    const options = serviceOptions(config, stack);
    security = options.security ?? {};
    if (telemetry?.requests) options.telemetry = telemetry.requests;
    try {
      service = await EchoService.start(options);
    } catch (e) {
      throw new StartupError(`gRPC listen on ${config.listen}: ${(e as Error).message}`);
    }
    // Every Echo Request (both families) now goes to the policy clients.
    service.install(stack);
    telemetry?.observe(service.metricSources(stack.stats));
  } catch (e) {
    link.close();
    throw e;
  }
  // Root is needed only up to here: the TUN is open, its kernel side configured, listening.
  let dropped: { uid: number; gid: number } | null;
  try {
    dropped = dropPrivileges(config);
  } catch (e) {
    await service.close();
    stack.close();
    link.close();
    throw e;
  }

  const managed = config.configureKernel && config.tunAttach === undefined;
  const subnets = (list: readonly string[]): Subnet[] =>
    list.flatMap((t) => {
      const s = Subnet.parse(t);
      return s === null ? [] : [s];
    });
  const network = new NetworkControl(stack, NIC_ID, {
    device: name,
    managed,
    coveredSubnets: managed ? subnets(config.kernelAddresses) : [],
    ownedRoutes: managed ? subnets(config.routes) : [],
    run: runKernelCommands,
  });
  let state: ReloadState = { config, security };
  const reload = async (trigger: string): Promise<ConfigChange[] | ServiceError> => {
    const refuse = (e: ServiceError): ServiceError => {
      log.warn({ trigger, reason: e.message }, "configuration reload refused");
      return e;
    };
    let next: Config;
    try {
      next = serveOptions.reloadConfig?.() ?? state.config;
    } catch (e) {
      return refuse(serviceError("invalidArgument", (e as Error).message));
    }
    const plan = planReload(state, next, securityOptions);
    if (isRefusal(plan))
      return refuse(
        serviceError(
          plan.kind === "invalid" ? "invalidArgument" : "failedPrecondition",
          plan.reason,
        ),
      );
    const err = service.reconfigure({
      deadlineMs: next.deadline,
      policy: {
        onTimeout: next.onTimeout,
        onNoClient: next.onNoClient,
        onOverload: next.onOverload,
        onDisconnect: next.onDisconnect,
      },
      security: plan.next.security,
    });
    if (err !== null) return refuse(err);
    stack.setICMPLimit(next.icmpRateLimit, next.icmpBurst);
    stack.setDefaultTTL(next.defaultTtl);
    log.level = next.logLevel;
    state = plan.next;
    log.info({ trigger, changes: plan.changes }, "configuration reloaded");
    return plan.changes.map((c) => ({
      key: c.key,
      oldValue: JSON.stringify(c.from),
      newValue: JSON.stringify(c.to),
      contentsChanged: c.contentsChanged,
    }));
  };
  service.operator = { reload: () => reload("EchoAdmin.Reload"), network };
  const onHup = (): void => {
    void reload("SIGHUP");
  };
  if (serveOptions.reloadConfig !== undefined) process.on("SIGHUP", onHup);

  let statsFileError: string | null = null;
  const dumpStats = (): Record<string, number> => {
    const s = statsSnapshot(stack, tun, service);
    if (config.statsFile !== undefined) {
      try {
        writeStatsFile(config.statsFile, s);
        statsFileError = null;
      } catch (e) {
        // An unwritable stats file (e.g. after --user) is reported once, never fatal.
        const why = (e as Error).message;
        if (why !== statsFileError)
          log.warn({ statsFile: config.statsFile, error: why }, "stats file not written");
        statsFileError = why;
      }
    }
    return s;
  };
  const timer =
    config.statsFile !== undefined ? setInterval(dumpStats, config.statsIntervalMs) : null;
  timer?.unref();
  const onUsr1 = (): void => {
    log.info({ stats: dumpStats() }, "stats");
  };
  process.on("SIGUSR1", onUsr1);

  log.info(
    {
      tun: name,
      mtu: config.mtu,
      attached: config.tunAttach !== undefined,
      addresses: stack
        .nic(NIC_ID)
        ?.addresses()
        .map((a) => `${formatAddress(a.address)}/${a.prefixLength}`),
      kernelAddresses:
        config.configureKernel && config.tunAttach === undefined ? config.kernelAddresses : [],
      routes: stack.routeTable().map((r) => r.destination.toString()),
      promiscuous: config.promiscuous,
      defaultTtl: config.defaultTtl,
      pcap: config.pcap ?? null,
      statsFile: config.statsFile ?? null,
      listen: service.address,
      deadlineMs: config.deadline,
      policy: service.dispatcher.policy,
      metrics: telemetry?.metricsUrl ?? null,
      tracing: telemetry?.tracing ? telemetry.settings.traces : false,
      uid: process.getuid?.(),
      gid: process.getgid?.(),
      droppedPrivileges: dropped !== null,
    },
    "serving",
  );

  let stopped = false;
  const stop = async (reason: string): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Drain first, with the TUN still up: held requests are decided or defaulted in time.
    log.info({ reason, drainTimeoutMs: service.drainTimeoutMs }, "draining");
    const drained = await service.drain();
    if (timer !== null) clearInterval(timer);
    process.off("SIGUSR1", onUsr1);
    process.off("SIGHUP", onHup);
    const final = dumpStats();
    stack.close();
    link.close();
    log.info({ reason, drained, stats: final }, "stopped");
  };
  return { stack, tun, service, reload, stop };
}
