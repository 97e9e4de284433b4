/**
 * The composition root: every part of `icmpfwd serve` built from one resolved Config, each
 * through its own mapping (components.ts), and the list of parts a reload reconfigures. Nothing
 * else constructs the service's parts; serve.ts only orders start-up and shutdown around it.
 */
import type { Config } from "../config.js";
import type { ConfigChange } from "../gen/icmpfwd/v1/admin.js";
import { runKernelCommands } from "../kernel-side.js";
import type { LinkEndpoint } from "../netstack/link-endpoint.js";
import type { Stack } from "../netstack/stack.js";
import { flattenStats } from "../netstack/stats.js";
import { type ServiceError, serviceError } from "../service/errors.js";
import { DECISION_SETTING_KEYS, EchoService } from "../service/index.js";
import { NetworkControl } from "../service/network.js";
import type { Telemetry } from "../telemetry/index.js";
import type { Logger } from "../telemetry/logger.js";
import { pinoAudit } from "./audit.js";
import { buildStack } from "./build-stack.js";
import {
  authSettingsOf,
  NIC_ID,
  networkControlOptionsOf,
  securityOf,
  serviceOptionsOf,
  type TlsSettings,
  tlsSettingsOf,
} from "./components.js";
import { CounterRegistry } from "./counters.js";
import { metricSourcesOf } from "./metric-sources.js";
import { Reloader } from "./reload.js";
import { pick, type Reloadable, reloadable } from "./reloadable.js";
import { StartupError } from "./startup-error.js";

export interface Parts {
  stack: Stack;
  service: EchoService;
  network: NetworkControl;
  counters: CounterRegistry;
  reloader: Reloader;
}

export interface RootOptions {
  log: Logger;
  telemetry: Telemetry | null;
  /** Resolves the configuration again on a reload (the config file re-read); null: only files. */
  resolve: (() => Config) | null;
  /** The link's counters, reported as `link.*` (the TUN's). */
  linkStats: () => Readonly<object>;
}

/** The parts a reload reconfigures, in the order it applies them (the one that may refuse first). */
export function reloadablesOf(service: EchoService, stack: Stack, log: Logger): Reloadable[] {
  return [
    reloadable<TlsSettings>({
      name: "tls",
      keys: ["tlsCert", "tlsKey", "tlsClientCa"],
      settings: tlsSettingsOf,
      apply: (s) =>
        s.tlsCert === undefined || s.tlsKey === undefined
          ? null
          : (service.applyTls({ cert: s.tlsCert, key: s.tlsKey, clientCa: s.tlsClientCa })
              ?.message ?? null),
    }),
    reloadable({
      name: "authenticator",
      // insecureToken is only checked by the schema: changing it needs nothing running to change.
      keys: ["token", "authz", "insecureToken", "allowUnauthenticated", "tlsClientCa"],
      settings: (c) => ({ ...authSettingsOf(c), clientCertificates: c.tlsClientCa !== undefined }),
      apply: (s) => service.applySecurity(s),
    }),
    reloadable({
      name: "decisions",
      keys: DECISION_SETTING_KEYS,
      settings: (c) => pick(c, DECISION_SETTING_KEYS),
      apply: (s) => service.apply(s),
    }),
    reloadable({
      name: "netstack",
      keys: ["icmpRateLimit", "icmpBurst", "defaultTtl"],
      settings: (c) => pick(c, ["icmpRateLimit", "icmpBurst", "defaultTtl"]),
      apply: (s) => {
        const ttl = stack.setDefaultTTL(s.defaultTtl);
        if (ttl !== null) return `defaultTtl: ${ttl.message}`;
        stack.setICMPLimit(s.icmpRateLimit, s.icmpBurst);
        return null;
      },
    }),
    reloadable({
      name: "logger",
      keys: ["logLevel"],
      settings: (c) => pick(c, ["logLevel"]),
      apply: (s) => {
        log.level = s.logLevel;
        return null;
      },
    }),
  ];
}

/** Builds every part on an open link; the service is listening when this returns. */
export async function compose(config: Config, link: LinkEndpoint, o: RootOptions): Promise<Parts> {
  const stack = buildStack(config, link);
  const counters = new CounterRegistry();
  const network = new NetworkControl(
    stack,
    NIC_ID,
    networkControlOptionsOf(config, runKernelCommands),
  );
  // The reloader needs the service it reconfigures, and the service's EchoAdmin.Reload needs
  // the reloader: a Reload before it exists (start-up not finished) is refused.
  let reloader: Reloader | null = null;
  const reload = (trigger: string): Promise<ConfigChange[] | ServiceError> =>
    reloader === null
      ? Promise.resolve(serviceError("failedPrecondition", "the service is still starting"))
      : reloader.reload(trigger);
  let service: EchoService;
  try {
    service = await EchoService.start({
      ...serviceOptionsOf(config),
      security: securityOf(tlsSettingsOf(config), authSettingsOf(config)),
      stack,
      telemetry: o.telemetry?.requests ?? undefined,
      calls: o.telemetry?.calls ?? undefined,
      operator: { reload: () => reload("EchoAdmin.Reload"), network },
      audit: pinoAudit(o.log),
      stats: () => counters.snapshot(),
    });
  } catch (e) {
    stack.close();
    if (e instanceof StartupError) throw e;
    throw new StartupError(`gRPC listen on ${config.listen}: ${(e as Error).message}`);
  }
  counters.addCounters(() => flattenStats(stack.stats));
  counters.addCounters(() => prefixed("link.", o.linkStats()));
  counters.addCounters(() => service.counters());
  counters.addGauges(() => service.gauges());
  reloader = new Reloader(reloadablesOf(service, stack, o.log), config, o.log, o.resolve);
  const refused = reloader.applyRunning();
  if (refused !== null) {
    await service.close();
    stack.close();
    throw new StartupError(refused);
  }
  o.telemetry?.observe(metricSourcesOf(service, stack, counters));
  return { stack, service, network, counters, reloader };
}

function prefixed(prefix: string, o: Readonly<object>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(o)) if (typeof v === "number") out[`${prefix}${k}`] = v;
  return out;
}
