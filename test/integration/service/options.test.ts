/** The service's options in the one OPTIONS table: defaults of DESIGN.md §4, bounds, names. */
import { describe, expect, it } from "vitest";
import { envName, fromEnvironment, fromFlags, resolveConfig } from "../../../src/config.js";

describe("service options", () => {
  it("default to 127.0.0.1:50051, a 100 ms deadline, every action fallthrough, a 5 s drain", () => {
    const c = resolveConfig();
    expect(c.listen).toBe("127.0.0.1:50051");
    expect(c.deadline).toBe(100);
    expect([c.onTimeout, c.onNoClient, c.onOverload, c.onDisconnect]).toEqual([
      "fallthrough",
      "fallthrough",
      "fallthrough",
      "fallthrough",
    ]);
    expect(c.drainTimeout).toBe(5000);
    expect(c.maxInFlight).toBe(1024);
    expect(c.maxBatch).toBe(128);
  });

  it("come from flags and ICMPFWD_* variables", () => {
    expect(envName("onNoClient")).toBe("ICMPFWD_ON_NO_CLIENT");
    const c = resolveConfig(
      fromEnvironment({ ICMPFWD_ON_TIMEOUT: "consume", ICMPFWD_LISTEN: "unix:/run/icmpfwd.sock" }),
      fromFlags({ deadline: "250", onDisconnect: "consume" }),
    );
    expect(c.onTimeout).toBe("consume");
    expect(c.onDisconnect).toBe("consume");
    expect(c.deadline).toBe(250);
    expect(c.listen).toBe("unix:/run/icmpfwd.sock");
  });

  it("bound the deadline to 1 ms – 10 s, naming the field", () => {
    expect(resolveConfig(fromFlags({ deadline: "1" })).deadline).toBe(1);
    expect(resolveConfig(fromFlags({ deadline: "10000" })).deadline).toBe(10000);
    expect(() => resolveConfig(fromFlags({ deadline: "0" }))).toThrow(
      /deadline \(--deadline, ICMPFWD_DEADLINE\)/,
    );
    expect(() => resolveConfig(fromFlags({ deadline: "10001" }))).toThrow(/deadline/);
  });

  it("accept only fallthrough or consume as default actions", () => {
    expect(() => resolveConfig(fromFlags({ onOverload: "reply" }))).toThrow(
      /onOverload \(--on-overload, ICMPFWD_ON_OVERLOAD\)/,
    );
  });

  it("accept HOST:PORT, [IPv6]:PORT and unix:/path listen addresses only", () => {
    for (const ok of ["127.0.0.1:0", "[::1]:50051", "localhost:1", "unix:/tmp/x.sock"])
      expect(resolveConfig(fromFlags({ listen: ok })).listen).toBe(ok);
    for (const bad of ["127.0.0.1", "127.0.0.1:70000", "unix:relative.sock", "::1:50051", ""])
      expect(() => resolveConfig(fromFlags({ listen: bad })), bad).toThrow(/listen \(--listen/);
  });
});
