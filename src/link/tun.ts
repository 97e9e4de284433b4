/**
 * The TUN link endpoint: a layer-3 device (IFF_TUN | IFF_NO_PI) through the project's N-API
 * addon. Reads arrive in batches (one JS call per loop wake-up, zero-copy views into one slab per
 * batch); writes are one write(2) per packet, made together at the end of the current task
 * (a microtask): the replies to a read batch go out once the whole batch, and the handlers'
 * microtasks it started, have run, and the replies to a verdict batch once it is applied.
 * Writing each one at once let the kernel wake the pinger between our reads, so every read
 * brought fewer packets and each packet cost more (issue #13). See notes/tun-binding.md.
 */
import type { LinkEndpoint, LinkWriteError, NetworkDispatcher } from "../netstack/link-endpoint.js";
import { loadTunAddon, type NativeError, type NativeTun, type TunAddon } from "./tun-addon.js";
import { addonMissing, fromOpenError, TunError, type TunErrorKind } from "./tun-errors.js";

export { TunError, type TunErrorKind };

/**
 * Returns the C allocator's free memory to the kernel (glibc's malloc_trim, through the addon
 * that the TUN already loads); whether any was. Node's own heap is not touched.
 */
export function releaseFreedMemory(): boolean {
  return loadTunAddon().trimMemory();
}

export interface TunOptions {
  /** Interface name, 1–15 characters. */
  name: string;
  /** Default 1500 for a new device; when attaching, the device's current MTU. */
  mtu?: number;
  /** Attach to an existing persistent device instead of creating a non-persistent one. */
  attach?: boolean;
  /** A network-namespace file (/var/run/netns/NAME): the device lives there, this process not. */
  netns?: string;
  /** Most packets handed up per read wake-up (default 64). */
  batchSize?: number;
}

export interface TunStats {
  /** Read wake-ups that delivered at least one packet. */
  batches: number;
  packetsRead: number;
  packetsWritten: number;
  writeErrors: number;
  /** Packets read while no dispatcher was attached. */
  droppedNoDispatcher: number;
  /** read(2) errors other than EAGAIN, counted by the addon. */
  readErrors: number;
}

const NAME_RE = /^[^\s/:%]{1,15}$/;
const MIN_MTU = 68;
const MAX_MTU = 65535;
const MAX_BATCH = 4096;

function validate(o: TunOptions): void {
  const bad = (message: string): never => {
    throw new TunError("invalidOption", message);
  };
  if (typeof o.name !== "string" || !NAME_RE.test(o.name) || o.name === "." || o.name === "..") {
    bad(`TUN name ${JSON.stringify(o.name)}: 1-15 characters, no spaces, '/', ':' or '%'`);
  }
  if (o.mtu !== undefined && (!Number.isInteger(o.mtu) || o.mtu < MIN_MTU || o.mtu > MAX_MTU)) {
    bad(`TUN MTU ${o.mtu}: an integer in ${MIN_MTU}..${MAX_MTU}`);
  }
  if (
    o.batchSize !== undefined &&
    (!Number.isInteger(o.batchSize) || o.batchSize < 1 || o.batchSize > MAX_BATCH)
  ) {
    bad(`TUN batch size ${o.batchSize}: an integer in 1..${MAX_BATCH}`);
  }
  if (o.netns !== undefined && (typeof o.netns !== "string" || o.netns === "")) {
    bad("netns: the path of a network-namespace file, e.g. /var/run/netns/NAME");
  }
}

export class TunEndpoint implements LinkEndpoint {
  readonly name: string;
  readonly mtu: number;
  /** Called once if the reader stops by itself (the device was deleted under us). */
  onError: ((error: TunError) => void) | null = null;

  private dispatcher: NetworkDispatcher | null = null;
  private closed = false;
  /** Packets accepted by writePacket and not written yet; a flush is queued while non-empty. */
  private held: Uint8Array[] = [];
  /** A flush is queued (or a read batch is being handed up and queues one when done). */
  private flushQueued = false;
  private readonly flush = (): void => this.flushHeld();
  private readonly counters = {
    batches: 0,
    packetsRead: 0,
    packetsWritten: 0,
    writeErrors: 0,
    droppedNoDispatcher: 0,
  };
  private constructor(private readonly native: NativeTun) {
    this.name = native.name;
    this.mtu = native.mtu;
  }

  /**
   * Creates (or attaches to) the device, brings it up with its MTU and starts reading. Like a
   * listening socket, an open endpoint keeps the event loop alive until close().
   */
  static open(options: TunOptions): TunEndpoint {
    validate(options);
    let addon: TunAddon;
    try {
      addon = loadTunAddon();
    } catch (e) {
      throw addonMissing(e);
    }
    const attach = options.attach ?? false;
    // The addon calls back from the event loop only, never inside open(): by then `endpoint` is set.
    let endpoint: TunEndpoint | null = null;
    let native: NativeTun;
    try {
      native = addon.open(
        {
          name: options.name,
          mtu: options.mtu ?? (attach ? 0 : 1500),
          attach,
          netns: options.netns,
          batchSize: options.batchSize ?? 64,
        },
        (slab, lengths) => endpoint?.deliver(slab, lengths),
        (error) => endpoint?.readerFailed(error),
      );
    } catch (e) {
      throw fromOpenError(e, { name: options.name, attach, netns: options.netns });
    }
    endpoint = new TunEndpoint(native);
    return endpoint;
  }

  attach(dispatcher: NetworkDispatcher | null): void {
    this.dispatcher = dispatcher;
  }

  writePacket(packet: Uint8Array): LinkWriteError | null {
    if (this.closed) return { kind: "closed", message: `${this.name} is closed` };
    if (packet.length > this.mtu) {
      this.counters.writeErrors++;
      return {
        kind: "tooBig",
        message: `packet of ${packet.length} bytes exceeds the MTU of ${this.name} (${this.mtu})`,
      };
    }
    // The packet (perhaps a view into a read slab) is not touched again by the netstack; it
    // goes out at the flush. A write(2) error then is counted in writeErrors.
    this.held.push(packet);
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flush);
    }
    return null;
  }

  /** Writes the held packets, in order. */
  private flushHeld(): void {
    this.flushQueued = false;
    const held = this.held;
    if (held.length === 0) return;
    this.held = [];
    for (let i = 0; i < held.length; i++) {
      if (this.closed) {
        this.counters.writeErrors += held.length - i;
        return;
      }
      if (this.native.write(held[i]) >= 0) this.counters.packetsWritten++;
      else this.counters.writeErrors++;
    }
  }

  /** Stops reading and closes the fd; a non-persistent device is gone when this returns. */
  close(): void {
    if (this.closed) return;
    // What was accepted goes out first (a drain's last replies).
    this.flushHeld();
    this.closed = true;
    this.dispatcher = null;
    this.native.close();
  }

  get stats(): Readonly<TunStats> {
    return { ...this.counters, readErrors: this.native.readErrors };
  }

  private deliver(slab: ArrayBuffer, lengths: Uint32Array): void {
    const count = lengths.length;
    this.counters.batches++;
    this.counters.packetsRead += count;
    const dispatcher = this.dispatcher;
    if (dispatcher === null) {
      this.counters.droppedNoDispatcher += count;
      return;
    }
    // Views, no copies: every batch has its own slab, so receivers may keep or mutate them.
    const packets = new Array<Uint8Array>(count);
    let offset = lengths.byteLength;
    for (let i = 0; i < count; i++) {
      const length = lengths[i];
      packets[i] = new Uint8Array(slab, offset, length);
      offset += length;
    }
    // The flush is queued after the batch, behind every microtask its handlers queued.
    const queued = this.flushQueued;
    this.flushQueued = true;
    try {
      dispatcher.deliverNetworkPackets(packets);
    } finally {
      if (!queued) queueMicrotask(this.flush);
    }
  }

  private readerFailed(error: NativeError): void {
    const tunError = new TunError("io", `reading from ${this.name} stopped: ${error.message}`, {
      cause: error,
    });
    if (this.onError !== null) this.onError(tunError);
    else process.emitWarning(tunError.message, { code: "ICMPFWD_TUN_READ" });
  }
}
