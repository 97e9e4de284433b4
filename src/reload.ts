/**
 * Live reconfiguration (SIGHUP, EchoAdmin.Reload): the configuration is resolved again from the
 * same layers (the config file re-read, the environment and flags as at start-up), compared
 * with the running one option by option, and applied only when every change is one a running
 * service can take. Anything else — an invalid value, a file that does not load, an option
 * only a restart can change — refuses the whole reload with the reason, and the running
 * configuration stays as it was.
 */
import { isDeepStrictEqual } from "node:util";
import type { Config } from "./config.js";
import type { SecurityOptions } from "./service/index.js";

/** Options a running service applies without a restart. */
export const LIVE_KEYS = [
  "deadline",
  "onTimeout",
  "onNoClient",
  "onOverload",
  "onDisconnect",
  "token",
  "insecureToken",
  "authz",
  "tlsCert",
  "tlsKey",
  "tlsClientCa",
  "logLevel",
  "icmpRateLimit",
  "icmpBurst",
  "defaultTtl",
] as const satisfies readonly (keyof Config)[];

export type LiveKey = (typeof LIVE_KEYS)[number];

/** Options changed at run time by their own commands instead. */
const NETWORK_COMMANDS: Partial<Record<keyof Config, string>> = {
  addresses: "icmpfwd addr add|del",
  routes: "icmpfwd route add|del",
  promiscuous: "icmpfwd promiscuous on|off",
};

/** Options whose value is a secret: shown redacted in the diff and the log. */
const SECRET_KEYS: ReadonlySet<string> = new Set(["token"]);

/** Options naming a file whose contents are (re)read on each reload. */
const FILE_KEYS = ["tlsCert", "tlsKey", "tlsClientCa", "authz"] as const;

/** One option that changed. */
export interface ConfigDiff {
  key: LiveKey;
  from: unknown;
  to: unknown;
  /** Same path, new contents (a rotated certificate, an edited authorization file). */
  contentsChanged: boolean;
}

/** What is running: the configuration and the files it loaded. */
export interface ReloadState {
  config: Config;
  security: SecurityOptions;
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

function contentsOf(s: SecurityOptions, key: (typeof FILE_KEYS)[number]): unknown {
  switch (key) {
    case "tlsCert":
      return s.tls?.cert;
    case "tlsKey":
      return s.tls?.key;
    case "tlsClientCa":
      return s.tls?.clientCa;
    case "authz":
      return s.authz;
  }
}

/**
 * Compares the running state with a freshly loaded one. `loadSecurity` reads the TLS and
 * authorization files of the new configuration (throwing an Error naming the file when one does
 * not load).
 */
export function planReload(
  current: ReloadState,
  nextConfig: Config,
  loadSecurity: (c: Config) => SecurityOptions,
): ReloadPlan | ReloadRefusal {
  const live: ReadonlySet<string> = new Set(LIVE_KEYS);
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
  let security: SecurityOptions;
  try {
    security = loadSecurity(nextConfig);
  } catch (e) {
    return { kind: "invalid", reason: (e as Error).message };
  }
  const changes: ConfigDiff[] = [];
  for (const key of LIVE_KEYS) {
    const a = current.config[key];
    const b = nextConfig[key];
    const fileKey = (FILE_KEYS as readonly string[]).includes(key)
      ? (key as (typeof FILE_KEYS)[number])
      : null;
    const contentsChanged =
      fileKey !== null &&
      a !== undefined &&
      a === b &&
      !isDeepStrictEqual(contentsOf(current.security, fileKey), contentsOf(security, fileKey));
    if (isDeepStrictEqual(a, b) && !contentsChanged) continue;
    changes.push({ key, from: shown(key, a), to: shown(key, b), contentsChanged });
  }
  return { next: { config: nextConfig, security }, changes };
}

export function isRefusal(r: ReloadPlan | ReloadRefusal): r is ReloadRefusal {
  return "reason" in r;
}
