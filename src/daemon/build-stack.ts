/** The netstack as the configuration describes it, on an open link. */
import type { Config } from "../config.js";
import { parseAddressWithPrefix, Subnet } from "../netstack/address.js";
import type { LinkEndpoint } from "../netstack/link-endpoint.js";
import { Stack } from "../netstack/stack.js";
import { NIC_ID, nicOptionsOf, stackOptionsOf } from "./components.js";
import { StartupError } from "./startup-error.js";

/** NIC 1 on `link` with the configured addresses, their on-link routes and the extra routes. */
export function buildStack(config: Config, link: LinkEndpoint): Stack {
  const stack = new Stack(stackOptionsOf(config));
  const fail = (what: string, e: { message: string } | null): void => {
    if (e !== null) throw new StartupError(`${what}: ${e.message}`);
  };
  fail("create NIC", stack.createNIC(NIC_ID, link, nicOptionsOf(config)));
  const onLink = new Set<string>();
  for (const text of config.addresses) {
    const p = parseAddressWithPrefix(text);
    if (p === null) throw new StartupError(`bad address ${text}`);
    fail(`address ${text}`, stack.addAddress(NIC_ID, p.address, p.prefixLength));
    const subnet = new Subnet(p.address, p.prefixLength);
    if (!onLink.has(subnet.toString())) {
      onLink.add(subnet.toString());
      fail(`route ${subnet}`, stack.addRoute(subnet, NIC_ID));
    }
  }
  for (const text of config.routes) {
    const subnet = Subnet.parse(text);
    if (subnet === null) throw new StartupError(`bad route ${text}`);
    if (!onLink.has(subnet.toString())) fail(`route ${text}`, stack.addRoute(subnet, NIC_ID));
  }
  return stack;
}
