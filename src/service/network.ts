/**
 * The netstack's addresses, routes and NIC modes, changed at run time (EchoAdmin's AddAddress,
 * RemoveAddress, AddRoute, RemoveRoute, SetPromiscuous; `icmpfwd addr|route|promiscuous`).
 * When the service owns the kernel side of the TUN (it created the device and configures it),
 * a prefix the kernel does not route into the TUN yet gets a kernel route (`ip route add PREFIX
 * dev TUN`), and the service removes only kernel routes it added. Changes are applied one at a
 * time; a kernel failure undoes the netstack half, so both sides stay in step.
 */
import type { GetNetworkResponse } from "../gen/icmpfwd/v1/admin.js";
import {
  type Address,
  formatAddress,
  isUnicastOutsideLoopback,
  parseAddress,
  parseAddressWithPrefix,
  Subnet,
} from "../netstack/address.js";
import type { NIC } from "../netstack/nic.js";
import type { Stack } from "../netstack/stack.js";
import { type ServiceError, serviceError } from "./errors.js";

/** The kernel side of the TUN, as far as the service owns it. */
export interface KernelSide {
  /** The TUN device's name. */
  device: string;
  /** Whether the service configures the kernel side (it created the device; --configure-kernel). */
  managed: boolean;
  /** Subnets the kernel already routes into the TUN through its own addresses (on-link). */
  coveredSubnets: readonly Subnet[];
  /** Kernel routes the service added at start-up (`--route`): it may remove them. */
  ownedRoutes: readonly Subnet[];
  /** Runs ip(8) commands (`route add …`) in one batch; an error message, or null. */
  run(commands: readonly string[]): Promise<string | null>;
}

export interface NetworkChange {
  network: GetNetworkResponse;
  /** Whether a kernel route was added or removed. */
  kernelUpdated: boolean;
}

const LINK_LOCAL_V6 = Subnet.parse("fe80::/10") as Subnet;

function unicastProblem(a: Address): string | null {
  return isUnicastOutsideLoopback(a) ? null : "is not a unicast address outside the loopback range";
}

export class NetworkControl {
  /** Kernel routes the service added (prefix text), which it may remove. */
  private readonly kernelRoutes = new Set<string>();
  /** Routes that exist because of an address (its on-link prefix). */
  private readonly onLink = new Set<string>();
  /** Routes added on their own (`--route`, AddRoute). */
  private readonly explicit = new Set<string>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly stack: Stack,
    private readonly defaultNic: number,
    private readonly kernel: KernelSide,
  ) {
    for (const nic of stack.allNICs())
      for (const a of nic.addresses()) this.onLink.add(key(nic.id, a.subnet));
    for (const r of stack.routeTable()) {
      const k = key(r.nic, r.destination);
      if (!this.onLink.has(k)) this.explicit.add(k);
    }
    if (kernel.managed) for (const s of kernel.ownedRoutes) this.kernelRoutes.add(s.toString());
  }

  /** The NICs and the route table as GetNetwork shows them. */
  state(): GetNetworkResponse {
    return {
      nics: this.stack.allNICs().map((n) => ({
        id: n.id,
        name: n.name,
        addresses: n
          .addresses()
          .map((a) => ({ address: `${formatAddress(a.address)}/${a.prefixLength}` })),
        promiscuous: n.promiscuous,
        spoofing: n.spoofing,
      })),
      routes: this.stack.routeTable().map((r) => ({
        destination: r.destination.toString(),
        nic: r.nic,
        kernelRoute: this.kernelRoutes.has(r.destination.toString()),
      })),
      kernelManaged: this.kernel.managed,
    };
  }

  addAddress(text: string, nicId: number): Promise<NetworkChange | ServiceError> {
    return this.serialized(async () => {
      const p = parseAddressWithPrefix(text.trim());
      if (p === null)
        return serviceError(
          "invalidArgument",
          `address: "${text}" is not ADDRESS/PREFIX (e.g. 198.18.5.2/24)`,
        );
      const problem = unicastProblem(p.address);
      if (problem !== null) return serviceError("invalidArgument", `address: ${text} ${problem}`);
      const nic = this.nicOf(nicId);
      if ("kind" in nic) return nic;
      if (nic.findAddress(p.address) !== null)
        return serviceError(
          "alreadyExists",
          `address: ${formatAddress(p.address)} is already on NIC ${nic.id}`,
        );
      const err = this.stack.addAddress(nic.id, p.address, p.prefixLength);
      if (err !== null) return serviceError("invalidArgument", `address: ${text}: ${err.message}`);
      const subnet = new Subnet(p.address, p.prefixLength);
      const k = key(nic.id, subnet);
      const routeAdded = !this.hasRoute(nic.id, subnet);
      if (routeAdded) this.stack.addRoute(subnet, nic.id);
      if (!this.explicit.has(k)) this.onLink.add(k);
      const kernel = await this.kernelAdd(subnet);
      if (typeof kernel === "string") {
        this.stack.removeAddress(nic.id, p.address);
        if (routeAdded) {
          this.stack.removeRoute(subnet, nic.id);
          this.onLink.delete(k);
        }
        return serviceError("internal", `address: ${text}: the kernel route failed: ${kernel}`);
      }
      return { network: this.state(), kernelUpdated: kernel };
    });
  }

  removeAddress(text: string, nicId: number): Promise<NetworkChange | ServiceError> {
    return this.serialized(async () => {
      const t = text.trim();
      const address = parseAddress(t.includes("/") ? t.slice(0, t.indexOf("/")) : t);
      if (address === null)
        return serviceError("invalidArgument", `address: "${text}" is not an IP address`);
      const nic = this.nicOf(nicId);
      if ("kind" in nic) return nic;
      const entry = nic.findAddress(address);
      if (entry === null || entry.kind !== "permanent")
        return serviceError(
          "notFound",
          `address: ${formatAddress(address)} is not an address of NIC ${nic.id}`,
        );
      const subnet = entry.subnet;
      const k = key(nic.id, subnet);
      const lastInSubnet = !nic
        .addresses()
        .some((a) => a !== entry && a.subnet.equals(subnet) && a.kind === "permanent");
      const dropRoute = lastInSubnet && this.onLink.has(k) && !this.explicit.has(k);
      let kernelUpdated = false;
      if (dropRoute) {
        const kernel = await this.kernelRemove(subnet);
        if (typeof kernel === "string")
          return serviceError("internal", `address: ${text}: the kernel route failed: ${kernel}`);
        kernelUpdated = kernel;
      }
      this.stack.removeAddress(nic.id, address);
      if (dropRoute) {
        this.stack.removeRoute(subnet, nic.id);
        this.onLink.delete(k);
      }
      return { network: this.state(), kernelUpdated };
    });
  }

  addRoute(text: string, nicId: number): Promise<NetworkChange | ServiceError> {
    return this.serialized(async () => {
      const subnet = Subnet.parse(text.trim());
      if (subnet === null)
        return serviceError(
          "invalidArgument",
          `destination: "${text}" is not a prefix (e.g. 198.18.128.0/17)`,
        );
      const nic = this.nicOf(nicId);
      if ("kind" in nic) return nic;
      if (this.hasRoute(nic.id, subnet))
        return serviceError(
          "alreadyExists",
          `destination: ${subnet} is already routed into NIC ${nic.id}`,
        );
      this.stack.addRoute(subnet, nic.id);
      const k = key(nic.id, subnet);
      this.explicit.add(k);
      const kernel = await this.kernelAdd(subnet);
      if (typeof kernel === "string") {
        this.stack.removeRoute(subnet, nic.id);
        this.explicit.delete(k);
        return serviceError(
          "internal",
          `destination: ${subnet}: the kernel route failed: ${kernel}`,
        );
      }
      return { network: this.state(), kernelUpdated: kernel };
    });
  }

  removeRoute(text: string, nicId: number): Promise<NetworkChange | ServiceError> {
    return this.serialized(async () => {
      const subnet = Subnet.parse(text.trim());
      if (subnet === null)
        return serviceError("invalidArgument", `destination: "${text}" is not a prefix`);
      const nic = this.nicOf(nicId);
      if ("kind" in nic) return nic;
      if (!this.hasRoute(nic.id, subnet))
        return serviceError("notFound", `destination: no route to ${subnet} through NIC ${nic.id}`);
      const owner = nic.addresses().find((a) => a.kind === "permanent" && a.subnet.equals(subnet));
      if (owner !== undefined && !this.explicit.has(key(nic.id, subnet)))
        return serviceError(
          "failedPrecondition",
          `destination: ${subnet} is the on-link route of address ${formatAddress(owner.address)}/${owner.prefixLength}: remove the address instead`,
        );
      const kernel = await this.kernelRemove(subnet);
      if (typeof kernel === "string")
        return serviceError(
          "internal",
          `destination: ${subnet}: the kernel route failed: ${kernel}`,
        );
      this.stack.removeRoute(subnet, nic.id);
      this.explicit.delete(key(nic.id, subnet));
      return { network: this.state(), kernelUpdated: kernel };
    });
  }

  setPromiscuous(on: boolean, nicId: number): Promise<NetworkChange | ServiceError> {
    return this.serialized(async () => {
      const nic = this.nicOf(nicId);
      if ("kind" in nic) return nic;
      // As --promiscuous: accept any destination, and send from it.
      this.stack.setPromiscuousMode(nic.id, on);
      this.stack.setSpoofing(nic.id, on);
      return { network: this.state(), kernelUpdated: false };
    });
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => {});
    return next;
  }

  private nicOf(nicId: number): NIC | ServiceError {
    const id = nicId === 0 ? this.defaultNic : nicId;
    return this.stack.nic(id) ?? serviceError("notFound", `nic: no NIC ${id}`);
  }

  private hasRoute(nicId: number, subnet: Subnet): boolean {
    return this.stack.routeTable().some((r) => r.nic === nicId && r.destination.equals(subnet));
  }

  /** Whether the kernel already sends `subnet` into the TUN without the service's help. */
  private kernelCovers(subnet: Subnet): boolean {
    if (LINK_LOCAL_V6.contains(subnet.address) && subnet.prefixLength >= 10) return true;
    return this.kernel.coveredSubnets.some(
      (c) => c.prefixLength <= subnet.prefixLength && c.contains(subnet.address),
    );
  }

  /** Adds the kernel route for `subnet` when needed: whether one was added, or ip(8)'s error. */
  private async kernelAdd(subnet: Subnet): Promise<boolean | string> {
    const text = subnet.toString();
    if (!this.kernel.managed || this.kernelCovers(subnet) || this.kernelRoutes.has(text))
      return false;
    const err = await this.kernel.run([`route add ${text} dev ${this.kernel.device}`]);
    if (err !== null) return err;
    this.kernelRoutes.add(text);
    return true;
  }

  /** Removes the kernel route for `subnet` if the service added it. */
  private async kernelRemove(subnet: Subnet): Promise<boolean | string> {
    const text = subnet.toString();
    if (!this.kernel.managed || !this.kernelRoutes.has(text)) return false;
    // Another NIC's route to the same prefix keeps the kernel route.
    if (this.stack.routeTable().filter((r) => r.destination.equals(subnet)).length > 1)
      return false;
    const err = await this.kernel.run([`route del ${text} dev ${this.kernel.device}`]);
    if (err !== null) return err;
    this.kernelRoutes.delete(text);
    return true;
  }
}

function key(nic: number, s: Subnet): string {
  return `${nic} ${s}`;
}
