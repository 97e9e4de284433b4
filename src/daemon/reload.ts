/**
 * Live reconfiguration (SIGHUP, EchoAdmin.Reload): the configuration is resolved again from the
 * same layers (the config file re-read, the environment and flags as at start-up), compared
 * with the running one option by option, and applied only when every change is one a running
 * component takes (an option some Reloadable reads). Anything else — an invalid value, a file
 * that does not load, an option only a restart can change, a component that refuses — refuses
 * the whole reload with the reason, and the running configuration stays as it was.
 */
import { isDeepStrictEqual } from "node:util";
import { type Config, OPTIONS } from "../config.js";
import type { ConfigChange } from "../gen/icmpfwd/v1/admin.js";
import { type ServiceError, serviceError } from "../service/errors.js";
import type { Logger } from "../telemetry/logger.js";
import { applyAll, liveKeys, type Reloadable } from "./reloadable.js";

/** Options changed at run time by their own commands instead. */
const NETWORK_COMMANDS: Partial<Record<keyof Config, string>> = {
  addresses: "icmpfwd addr add|del",
  routes: "icmpfwd route add|del",
  promiscuous: "icmpfwd promiscuous on|off",
};

/** Options whose value is a secret: shown redacted in the diff and the log. */
const SECRET_KEYS: ReadonlySet<string> = new Set(["token"]);

/** Options naming a file whose contents are (re)read on each reload. */
const FILE_KEYS: ReadonlySet<string> = new Set(["tlsCert", "tlsKey", "tlsClientCa", "authz"]);

/** One option that changed. */
export interface ConfigDiff {
  key: keyof Config;
  from: unknown;
  to: unknown;
  /** Same path, new contents (a rotated certificate, an edited authorization file). */
  contentsChanged: boolean;
}

/** What is running: the configuration and each component's settings from it (by name). */
export interface ReloadState {
  config: Config;
  settings: ReadonlyMap<string, unknown>;
}

/** A reload that cannot be applied; nothing was changed. */
export interface ReloadRefusal {
  kind: "invalid" | "needsRestart";
  reason: string;
}

export interface ReloadPlan {
  next: ReloadState;
  changes: ConfigDiff[];
}

const shown = (key: string, v: unknown): unknown =>
  v === undefined ? null : SECRET_KEYS.has(key) ? "(redacted)" : v;

/** Each component's settings from a configuration; throws an Error naming a file that did not load. */
export function settingsOf(
  parts: readonly Reloadable[],
  config: Config,
): ReadonlyMap<string, unknown> {
  return new Map(parts.map((p) => [p.name, p.settings(config)]));
}

/** Whether a file option's contents changed: the setting of that name of a component that reads it. */
function contentsChanged(
  parts: readonly Reloadable[],
  key: keyof Config,
  before: ReadonlyMap<string, unknown>,
  after: ReadonlyMap<string, unknown>,
): boolean {
  const field = (m: ReadonlyMap<string, unknown>, name: string): unknown =>
    (m.get(name) as Record<string, unknown> | undefined)?.[key];
  return parts.some(
    (p) => p.keys.includes(key) && !isDeepStrictEqual(field(before, p.name), field(after, p.name)),
  );
}

/** Compares the running state with a freshly resolved configuration. */
export function planReload(
  current: ReloadState,
  nextConfig: Config,
  parts: readonly Reloadable[],
): ReloadPlan | ReloadRefusal {
  const live = liveKeys(parts);
  const keys = new Set([...Object.keys(current.config), ...Object.keys(nextConfig)]) as Set<
    keyof Config
  >;
  for (const key of keys) {
    const a = current.config[key];
    const b = nextConfig[key];
    if (live.has(key) || isDeepStrictEqual(a, b)) continue;
    const command = NETWORK_COMMANDS[key];
    return {
      kind: "needsRestart",
      reason: `${key}: changed from ${JSON.stringify(shown(key, a))} to ${JSON.stringify(shown(key, b))}, which only a restart applies${command === undefined ? "" : ` (at run time: ${command})`}`,
    };
  }
  if ((current.config.tlsCert === undefined) !== (nextConfig.tlsCert === undefined))
    return {
      kind: "needsRestart",
      reason: `tlsCert: turning TLS ${nextConfig.tlsCert === undefined ? "off" : "on"} needs a restart (rotating certificates does not)`,
    };
  if ((current.config.tlsClientCa === undefined) !== (nextConfig.tlsClientCa === undefined))
    return {
      kind: "needsRestart",
      reason: `tlsClientCa: turning client certificates (mTLS) ${nextConfig.tlsClientCa === undefined ? "off" : "on"} needs a restart`,
    };
  let settings: ReadonlyMap<string, unknown>;
  try {
    settings = settingsOf(parts, nextConfig);
  } catch (e) {
    return { kind: "invalid", reason: (e as Error).message };
  }
  const changes: ConfigDiff[] = [];
  // In the order the options are declared, so the diff reads the same every time.
  for (const { key } of OPTIONS) {
    if (!live.has(key)) continue;
    const a = current.config[key];
    const b = nextConfig[key];
    const rewritten =
      FILE_KEYS.has(key) &&
      a !== undefined &&
      a === b &&
      contentsChanged(parts, key, current.settings, settings);
    if (isDeepStrictEqual(a, b) && !rewritten) continue;
    changes.push({ key, from: shown(key, a), to: shown(key, b), contentsChanged: rewritten });
  }
  return { next: { config: nextConfig, settings }, changes };
}

export function isRefusal(r: ReloadPlan | ReloadRefusal): r is ReloadRefusal {
  return "reason" in r;
}

/**
 * The running configuration and the components a reload reconfigures. `resolve` resolves the
 * configuration again (throwing a ConfigError naming the field); without it a reload re-reads
 * only the files the running configuration names.
 */
export class Reloader {
  private state: ReloadState;

  constructor(
    private readonly parts: readonly Reloadable[],
    config: Config,
    private readonly log: Logger,
    private readonly resolve: (() => Config) | null,
  ) {
    this.state = { config, settings: settingsOf(parts, config) };
  }

  get config(): Config {
    return this.state.config;
  }

  /**
   * Applies the running configuration to every part once, at start-up: live options reach
   * their components by the same path as on a reload. Null, or the first part's refusal.
   */
  applyRunning(): string | null {
    return applyAll(this.parts, this.state.settings, this.state.settings);
  }

  async reload(trigger: string): Promise<ConfigChange[] | ServiceError> {
    const refuse = (e: ServiceError): ServiceError => {
      this.log.warn({ trigger, reason: e.message }, "configuration reload refused");
      return e;
    };
    let next: Config;
    try {
      next = this.resolve?.() ?? this.state.config;
    } catch (e) {
      return refuse(serviceError("invalidArgument", (e as Error).message));
    }
    const plan = planReload(this.state, next, this.parts);
    if (isRefusal(plan))
      return refuse(
        serviceError(
          plan.kind === "invalid" ? "invalidArgument" : "failedPrecondition",
          plan.reason,
        ),
      );
    const why = applyAll(this.parts, this.state.settings, plan.next.settings);
    if (why !== null) return refuse(serviceError("invalidArgument", why));
    this.state = plan.next;
    this.log.info({ trigger, changes: plan.changes }, "configuration reloaded");
    return plan.changes.map((c) => ({
      key: c.key,
      oldValue: JSON.stringify(c.from),
      newValue: JSON.stringify(c.to),
      contentsChanged: c.contentsChanged,
    }));
  }
}
