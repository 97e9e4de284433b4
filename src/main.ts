#!/usr/bin/env node
/** The `icmpfwd` command line. */
import { Command, Option } from "commander";
import {
  ConfigError,
  envName,
  fromEnvironment,
  fromFile,
  fromFlags,
  OPTIONS,
  resolveConfig,
} from "./config.js";
import { StartupError, serve } from "./serve.js";
import { createLogger } from "./telemetry/logger.js";

/** Commander's attribute name for a flag (`--default-ttl` → `defaultTtl`). */
function attributeOf(flag: string): string {
  return flag.replace(/^--/, "").replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function fatal(message: string): never {
  process.stderr.write(`icmpfwd: ${message}\n`);
  process.exit(1);
}

const program = new Command();
program
  .name("icmpfwd")
  .description("A userspace ICMP Echo netstack on a TUN device, decided by policy clients");

const serveCmd = program
  .command("serve", { isDefault: true })
  .description("create the TUN device and answer ICMP Echo from the netstack")
  .option("--config <file>", "JSON config file (keys as in the README), env ICMPFWD_CONFIG");
for (const spec of OPTIONS) {
  const help = `${spec.description} [env ${envName(spec.key)}]${spec.default !== undefined ? ` (default: ${JSON.stringify(spec.default)})` : ""}`;
  if (spec.kind === "bool") {
    serveCmd.addOption(new Option(spec.flag, help));
    serveCmd.addOption(
      new Option(spec.flag.replace(/^--/, "--no-"), `turn off ${spec.flag}`).hideHelp(),
    );
  } else if (spec.kind === "list") {
    serveCmd.addOption(new Option(`${spec.flag} <value>`, help).argParser(collect));
  } else {
    serveCmd.addOption(new Option(`${spec.flag} <value>`, help));
  }
}

serveCmd.action(async (opts: Record<string, unknown>) => {
  let config: ReturnType<typeof resolveConfig>;
  try {
    const flags: Record<string, unknown> = {};
    for (const spec of OPTIONS) flags[spec.key] = opts[attributeOf(spec.flag)];
    const configFile = (opts.config as string | undefined) ?? process.env.ICMPFWD_CONFIG;
    config = resolveConfig(
      configFile !== undefined ? fromFile(configFile) : {},
      fromEnvironment(process.env),
      fromFlags(flags),
    );
  } catch (e) {
    if (e instanceof ConfigError) fatal(e.message);
    throw e;
  }
  const log = createLogger(config.logLevel);
  let running: Awaited<ReturnType<typeof serve>>;
  try {
    running = await serve(config, log);
  } catch (e) {
    if (e instanceof StartupError) fatal(e.message);
    throw e;
  }
  // The first signal drains (up to --drain-timeout); a second one ends the process at once.
  const shutdown = (signal: string): void => {
    void running.stop(signal).then(
      () => process.exit(0),
      (e: unknown) => fatal(`stopping: ${e instanceof Error ? e.message : String(e)}`),
    );
  };
  process.once("SIGINT", () => shutdown("SIGINT"));
  process.once("SIGTERM", () => shutdown("SIGTERM"));
});

program.parseAsync(process.argv).catch((e: unknown) => {
  fatal(e instanceof Error ? e.message : String(e));
});
