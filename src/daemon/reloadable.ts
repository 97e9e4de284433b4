/**
 * The one interface a reload goes through. Each reloadable component names the options it
 * reads; those options, and only those, may change without a restart. A reload computes every
 * component's settings from the new configuration first (reading files: a failure refuses the
 * reload before anything changed), then applies them in order; when one component refuses,
 * the ones already changed get their previous settings back.
 */
import type { Config } from "../config.js";

export interface Reloadable<S = unknown> {
  /** Names the component in refusals and the log. */
  readonly name: string;
  /** The options it reads: a change to any of them is applied live. */
  readonly keys: readonly (keyof Config)[];
  /** Its settings from a configuration; throws an Error naming the file that did not load. */
  settings(config: Config): S;
  /** Takes new settings: null, or why not, naming the options (the component is then unchanged). */
  apply(settings: S): string | null;
}

/** Keeps a component's settings type checked where it is declared. */
export function reloadable<S>(r: Reloadable<S>): Reloadable {
  return r as Reloadable;
}

/** The options a component reads, as its settings. */
export function pick<K extends keyof Config>(config: Config, keys: readonly K[]): Pick<Config, K> {
  const out = {} as Pick<Config, K>;
  for (const k of keys) out[k] = config[k];
  return out;
}

/** Every option some component applies live. */
export function liveKeys(parts: readonly Reloadable[]): ReadonlySet<keyof Config> {
  return new Set(parts.flatMap((p) => p.keys));
}

/**
 * Applies each component's new settings in order. On the first refusal, the components
 * already changed are given their previous settings back (in reverse order) and the refusal
 * is returned.
 */
export function applyAll(
  parts: readonly Reloadable[],
  previous: ReadonlyMap<string, unknown>,
  next: ReadonlyMap<string, unknown>,
): string | null {
  for (let i = 0; i < parts.length; i++) {
    const why = parts[i].apply(next.get(parts[i].name));
    if (why === null) continue;
    for (let j = i - 1; j >= 0; j--) parts[j].apply(previous.get(parts[j].name));
    return why;
  }
  return null;
}
