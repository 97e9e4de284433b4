/** Giving up root once everything that needs it is done. */
import { type Config, lookupAccount } from "../config.js";
import { StartupError } from "./startup-error.js";

/**
 * `--user` / `--group`: once the TUN is open, its kernel side configured and the listeners bound,
 * root is given up for good — supplementary groups replaced, then the gid, then the uid (real,
 * effective and saved). The open TUN fd keeps working; a non-persistent device still goes away
 * when the process closes it. Returns the ids, or null when neither option is set.
 */
export function dropPrivileges(
  config: Config,
  /** Runs as root just before the ids change (e.g. handing the unix socket to the new owner). */
  beforeDrop: (uid: number, gid: number) => void = () => {},
): { uid: number; gid: number } | null {
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
    beforeDrop(uid, gid);
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
