/**
 * `icmpfwd serve`: the start-up and shutdown sequence around the composition root
 * (src/daemon/root.ts). Open the TUN, configure its kernel side, build and start every part,
 * give up root, then serve until a signal: SIGHUP reloads, SIGUSR1 logs every counter, and
 * SIGINT/SIGTERM drain the service before the stack and the TUN close.
 */
import { chownSync, renameSync, writeFileSync } from "node:fs";
import type { Config } from "./config.js";
import { deviceOf, kernelSideManaged, NIC_ID } from "./daemon/components.js";
import { collectGarbage, trimWhenSessionsClose } from "./daemon/memory-trim.js";
import { dropPrivileges } from "./daemon/privileges.js";
import { compose } from "./daemon/root.js";
import { StartupError } from "./daemon/startup-error.js";
import type { ConfigChange } from "./gen/icmpfwd/v1/admin.js";
import { configureKernelSide, kernelCommands } from "./kernel-side.js";
import { PcapngWriter } from "./link/pcapng.js";
import { SnifferEndpoint } from "./link/sniffer.js";
import { releaseFreedMemory, TunEndpoint, TunError } from "./link/tun.js";
import { formatAddress } from "./netstack/address.js";
import type { Stack } from "./netstack/stack.js";
import type { ServiceError } from "./service/errors.js";
import type { EchoService } from "./service/index.js";
import type { Telemetry } from "./telemetry/index.js";
import { createLogger, type Logger } from "./telemetry/logger.js";

export { buildStack } from "./daemon/build-stack.js";
export { dropPrivileges } from "./daemon/privileges.js";
export { NIC_ID, StartupError };

export interface Running {
  stack: Stack;
  tun: TunEndpoint;
  service: EchoService;
  /**
   * Re-reads the configuration and applies it (SIGHUP, EchoAdmin.Reload): the changes, or why
   * the reload was refused (the running configuration is kept).
   */
  reload(trigger: string): Promise<ConfigChange[] | ServiceError>;
  /** Drains the service, then closes the stack and the TUN. */
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

function openTun(config: Config): TunEndpoint {
  const name = deviceOf(config);
  try {
    return TunEndpoint.open({ name, mtu: config.mtu, attach: config.tunAttach !== undefined });
  } catch (e) {
    if (!(e instanceof TunError)) throw e;
    const notRoot =
      process.getuid?.() !== 0 && config.tunAttach === undefined && e.kind === "permission";
    throw new StartupError(
      notRoot
        ? `creating TUN device ${name} needs root (CAP_NET_ADMIN): run as root, or have an administrator create a persistent device (ip tuntap add dev ${name} mode tun user ${process.getuid?.()}) and start with --tun-attach ${name}`
        : e.message,
    );
  }
}

/** --stats-file: rewritten atomically; an unwritable file (e.g. after --user) is reported once. */
function statsFileWriter(path: string, log: Logger): (stats: Record<string, number>) => void {
  let lastError: string | null = null;
  return (stats) => {
    const tmp = `${path}.tmp-${process.pid}`;
    try {
      writeFileSync(tmp, `${JSON.stringify(stats, null, 2)}\n`);
      renameSync(tmp, path);
      lastError = null;
    } catch (e) {
      const why = (e as Error).message;
      if (why !== lastError) log.warn({ statsFile: path, error: why }, "stats file not written");
      lastError = why;
    }
  };
}

export async function serve(
  config: Config,
  log: Logger = createLogger(config.logLevel),
  telemetry: Telemetry | null = null,
  serveOptions: ServeOptions = {},
): Promise<Running> {
  const tun = openTun(config);
  const link =
    config.pcap === undefined ? tun : new SnifferEndpoint(tun, PcapngWriter.open(config.pcap));
  let parts: Awaited<ReturnType<typeof compose>>;
  try {
    // A persistent device's kernel side belongs to its administrator unless asked.
    if (kernelSideManaged(config)) {
      const name = deviceOf(config);
      const err = configureKernelSide(kernelCommands(name, config.kernelAddresses, config.routes));
      if (err !== null) throw new StartupError(`configuring ${name}: ${err}`);
    }
    parts = await compose(config, link, {
      log,
      telemetry,
      resolve: serveOptions.reloadConfig ?? null,
      linkStats: () => tun.stats,
    });
  } catch (e) {
    link.close();
    throw e;
  }
  const { stack, service, counters, reloader } = parts;
  // Root is needed only up to here: the TUN is open, its kernel side configured, listening.
  let dropped: { uid: number; gid: number } | null;
  try {
    // The unix socket (0600) goes to the user the service becomes: root and that user may
    // connect, nobody else.
    dropped = dropPrivileges(config, (uid, gid) => {
      if (config.listen.startsWith("unix:"))
        chownSync(config.listen.slice("unix:".length), uid, gid);
    });
  } catch (e) {
    await service.close();
    stack.close();
    link.close();
    throw e;
  }

  const reload = (trigger: string): Promise<ConfigChange[] | ServiceError> =>
    reloader.reload(trigger);
  const onHup = (): void => {
    void reload("SIGHUP");
  };
  if (serveOptions.reloadConfig !== undefined) process.on("SIGHUP", onHup);

  const writeStats = config.statsFile === undefined ? null : statsFileWriter(config.statsFile, log);
  const dumpStats = (): Record<string, number> => {
    const s = counters.flat();
    writeStats?.(s);
    return s;
  };
  const timer = writeStats !== null ? setInterval(dumpStats, config.statsIntervalMs) : null;
  timer?.unref();
  const d = service.dispatcher;
  const stopTrimming = trimWhenSessionsClose(() => d.sessions.length + d.observers.length, {
    collect: collectGarbage,
    trim: releaseFreedMemory,
  });
  const onUsr1 = (): void => {
    log.info({ stats: dumpStats() }, "stats");
  };
  process.on("SIGUSR1", onUsr1);

  // Start-up's garbage and the young generation it grew, given back before anything is served:
  // the collection's pause (~300 ms) would otherwise hold up the first pings.
  collectGarbage();
  releaseFreedMemory();
  if (config.allowUnauthenticated)
    log.warn(
      { listen: service.address },
      "--allow-unauthenticated: callers without credentials may change routes and decide every ping",
    );
  log.info(
    {
      tun: deviceOf(config),
      mtu: config.mtu,
      attached: config.tunAttach !== undefined,
      addresses: stack
        .nic(NIC_ID)
        ?.addresses()
        .map((a) => `${formatAddress(a.address)}/${a.prefixLength}`),
      kernelAddresses: kernelSideManaged(config) ? config.kernelAddresses : [],
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
    stopTrimming();
    process.off("SIGUSR1", onUsr1);
    process.off("SIGHUP", onHup);
    const final = dumpStats();
    stack.close();
    link.close();
    log.info({ reason, drained, stats: final }, "stopped");
  };
  return { stack, tun, service, reload, stop };
}
