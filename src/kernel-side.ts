/**
 * The kernel side of the TUN: addresses and routes, configured once at start-up with a single
 * `ip -batch -` run (never per packet).
 */
import { execFile, spawnSync } from "node:child_process";
import { parseAddressWithPrefix } from "./netstack/address.js";

export function kernelCommands(
  device: string,
  addresses: readonly string[],
  routes: readonly string[],
): string[] {
  const cmds: string[] = [];
  for (const a of addresses) {
    const p = parseAddressWithPrefix(a);
    // nodad: the address is usable at once; a TUN has no neighbours to ask.
    cmds.push(
      p !== null && p.address.length === 16
        ? `address add ${a} dev ${device} nodad`
        : `address add ${a} dev ${device}`,
    );
  }
  cmds.push(`link set dev ${device} up`);
  for (const r of routes) cmds.push(`route add ${r} dev ${device}`);
  return cmds;
}

/** Runs the commands with one ip(8) process; returns an error message or null. */
export function configureKernelSide(commands: readonly string[]): string | null {
  const r = spawnSync("ip", ["-batch", "-"], {
    input: `${commands.join("\n")}\n`,
    encoding: "utf8",
    timeout: 10_000,
  });
  if (r.error) return `cannot run ip(8): ${r.error.message} (apt-get install -y iproute2)`;
  if (r.status !== 0) return `ip(8) failed: ${(r.stderr || r.stdout).trim()}`;
  return null;
}

/** As configureKernelSide, without blocking the event loop (run-time changes, EchoAdmin). */
export function runKernelCommands(commands: readonly string[]): Promise<string | null> {
  return new Promise((resolve) => {
    const child = execFile(
      "ip",
      ["-batch", "-"],
      { encoding: "utf8", timeout: 10_000 },
      (err, stdout, stderr) => {
        if (err === null) resolve(null);
        else if ((err as NodeJS.ErrnoException).code === "ENOENT")
          resolve(`cannot run ip(8): ${err.message} (apt-get install -y iproute2)`);
        else resolve(`ip(8) failed: ${(stderr || stdout || err.message).trim()}`);
      },
    );
    child.stdin?.end(`${commands.join("\n")}\n`);
  });
}
