/** Errors opening a TUN device, as values with a kind the caller can switch on. */
import type { NativeError } from "./tun-addon.js";

export type TunErrorKind =
  | "noTunDevice"
  | "permission"
  | "nameInUse"
  | "notFound"
  | "addonMissing"
  | "invalidOption"
  | "io";

export class TunError extends Error {
  override readonly name = "TunError";

  constructor(
    readonly kind: TunErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const TOOLCHAIN = "apt-get install -y build-essential python3";

export function addonMissing(cause: unknown): TunError {
  const detail = cause instanceof Error ? ` (${cause.message.split("\n")[0]})` : "";
  return new TunError(
    "addonMissing",
    `the native TUN addon is not built: run \`npm rebuild icmpfwd\` or \`npm ci\` (needs: ${TOOLCHAIN})${detail}`,
    { cause },
  );
}

export interface OpenContext {
  name: string;
  attach: boolean;
  netns?: string;
}

/** Maps an error thrown by the addon's open() to a TunError that says what to do. */
export function fromOpenError(error: unknown, ctx: OpenContext): TunError {
  if (!(error instanceof Error)) return new TunError("io", String(error), { cause: error });
  const e = error as NativeError;
  const code = e.code ?? "";
  const where = ctx.netns ? ` in network namespace ${ctx.netns}` : "";
  const raw = e.message;
  const make = (kind: TunErrorKind, message: string): TunError =>
    new TunError(kind, message, { cause: error });

  if (code.startsWith("ERR_INVALID_ARG")) return make("invalidOption", raw);

  if (e.path === "/dev/net/tun") {
    if (code === "ENOENT" || code === "ENODEV" || code === "ENXIO") {
      return make(
        "noTunDevice",
        `/dev/net/tun is missing or the tun module is not loaded (${raw}): run \`modprobe tun\`, or in a container pass --device /dev/net/tun`,
      );
    }
    if (code === "EACCES" || code === "EPERM") {
      return make("permission", `cannot open /dev/net/tun (${raw}): check its mode (crw-rw-rw-)`);
    }
  }

  if (ctx.netns !== undefined && e.path === ctx.netns) {
    if (code === "ENOENT") {
      return make("notFound", `network namespace ${ctx.netns} does not exist (${raw})`);
    }
    if (code === "EPERM" || code === "EACCES") {
      return make("permission", `entering ${ctx.netns} needs CAP_SYS_ADMIN (${raw})`);
    }
    if (code === "EINVAL") {
      return make("invalidOption", `${ctx.netns} is not a network namespace file (${raw})`);
    }
  }

  switch (code) {
    case "ENODEV":
      return make(
        "notFound",
        `no TUN device named ${ctx.name}${where} to attach to: an administrator creates it with \`ip tuntap add dev ${ctx.name} mode tun user $UID\``,
      );
    case "EEXIST":
      return make(
        "nameInUse",
        `a network device named ${ctx.name} already exists${where}: pick another name, or attach to a persistent TUN device with --tun-attach ${ctx.name}`,
      );
    case "EBUSY":
      return make(
        "nameInUse",
        `TUN device ${ctx.name}${where} is already in use by another process (${raw})`,
      );
    case "EPERM":
    case "EACCES":
      return make(
        "permission",
        ctx.attach
          ? `attaching to ${ctx.name}${where} was refused (${raw}): the device must be created for this user (\`ip tuntap add dev ${ctx.name} mode tun user $UID\`), up, and with the requested MTU, or run with CAP_NET_ADMIN`
          : `creating a TUN device needs CAP_NET_ADMIN (${raw}): run as root, or have an administrator create a persistent device (ip tuntap add dev ${ctx.name} mode tun user $UID) and attach to it with --tun-attach ${ctx.name}`,
      );
    case "EINVAL":
      if (e.syscall === "ioctl" && raw.startsWith("TUNSETIFF")) {
        return make(
          "nameInUse",
          `${ctx.name}${where} exists but is not a single-queue TUN device (${raw})`,
        );
      }
      return make("invalidOption", raw);
    default:
      return make("io", `opening TUN device ${ctx.name}${where} failed: ${raw}`);
  }
}
