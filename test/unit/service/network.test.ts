/**
 * Run-time address and route changes (service/network.ts) against a recording kernel side,
 * without a network.
 */
import { describe, expect, it } from "vitest";
import { Subnet } from "../../../src/netstack/address.js";
import type { ServiceError } from "../../../src/service/errors.js";
import { type NetworkChange, NetworkControl } from "../../../src/service/network.js";
import { testStack } from "../../helpers/stack.js";

describe("run-time addresses and routes", () => {
  function control(managed = true, fail: string | null = null) {
    const ts = testStack();
    const commands: string[] = [];
    const n = new NetworkControl(ts.stack, 1, {
      device: "tun9",
      managed,
      coveredSubnets: [Subnet.parse("198.18.0.0/24") as Subnet],
      ownedRoutes: [],
      run: async (cmds) => {
        commands.push(...cmds);
        return fail;
      },
    });
    return { n, commands, stack: ts.stack };
  }
  const routes = (c: NetworkChange | ServiceError): string[] =>
    "network" in c
      ? c.network.routes.map((r) => `${r.destination}${r.kernelRoute ? " kernel" : ""}`)
      : [];

  it("an address outside the kernel's subnets gets an on-link route and a kernel route", async () => {
    const { n, commands } = control();
    const r = await n.addAddress("198.18.5.2/24", 0);
    expect(routes(r)).toContain("198.18.5.0/24 kernel");
    expect(commands).toEqual(["route add 198.18.5.0/24 dev tun9"]);
    const d = await n.removeAddress("198.18.5.2", 0);
    expect(routes(d)).not.toContain("198.18.5.0/24");
    expect(commands).toEqual([
      "route add 198.18.5.0/24 dev tun9",
      "route del 198.18.5.0/24 dev tun9",
    ]);
  });

  it("an address inside a subnet the kernel already routes needs no kernel route", async () => {
    const { n, commands } = control();
    expect(await n.addAddress("198.18.0.9/24", 0)).toMatchObject({ kernelUpdated: false });
    expect(commands).toEqual([]);
  });

  it("without the kernel side (--tun-attach) only the netstack changes", async () => {
    const { n, commands } = control(false);
    expect(await n.addRoute("198.18.64.0/18", 0)).toMatchObject({ kernelUpdated: false });
    expect(commands).toEqual([]);
  });

  it("a kernel failure undoes the netstack change", async () => {
    const { n, stack } = control(true, "ip(8) failed: RTNETLINK answers: File exists");
    expect(await n.addRoute("198.18.64.0/18", 0)).toEqual({
      kind: "internal",
      message:
        "destination: 198.18.64.0/18: the kernel route failed: ip(8) failed: RTNETLINK answers: File exists",
    });
    expect(stack.routeTable().map((r) => r.destination.toString())).not.toContain("198.18.64.0/18");
  });

  it("bad input names the field", async () => {
    const { n } = control();
    expect(await n.addAddress("198.18.5.2", 0)).toEqual({
      kind: "invalidArgument",
      message: 'address: "198.18.5.2" is not ADDRESS/PREFIX (e.g. 198.18.5.2/24)',
    });
    expect(await n.addAddress("224.0.0.5/24", 0)).toEqual({
      kind: "invalidArgument",
      message: "address: 224.0.0.5/24 is not a unicast address outside the loopback range",
    });
    expect(await n.addRoute("198.18.0.0/33", 0)).toEqual({
      kind: "invalidArgument",
      message: 'destination: "198.18.0.0/33" is not a prefix (e.g. 198.18.128.0/17)',
    });
    expect(await n.addRoute("198.18.64.0/18", 7)).toEqual({
      kind: "notFound",
      message: "nic: no NIC 7",
    });
    expect(await n.addAddress("198.18.0.2/24", 0)).toEqual({
      kind: "alreadyExists",
      message: "address: 198.18.0.2 is already on NIC 1",
    });
  });

  it("promiscuous on sets promiscuous and spoofing, off clears both", async () => {
    const { n, stack } = control();
    await n.setPromiscuous(true, 0);
    expect([stack.nic(1)?.promiscuous, stack.nic(1)?.spoofing]).toEqual([true, true]);
    await n.setPromiscuous(false, 0);
    expect([stack.nic(1)?.promiscuous, stack.nic(1)?.spoofing]).toEqual([false, false]);
  });
});
