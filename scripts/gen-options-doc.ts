/**
 * Renders docs/options.md from src/config.ts's OPTIONS (the SPECS table): every option of
 * `icmpfwd serve` with its flag, config-file key, ICMPFWD_* variable, default and help, so the
 * reference can never lack a flag. `npm run docs:options` rewrites the file; `--check` exits 1
 * when the committed file is stale (test/unit/repo/options-doc.test.ts compares the same way).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { envName, OPTIONS } from "../src/config.js";

export const OPTIONS_DOC_PATH: string = fileURLToPath(
  new URL("../docs/options.md", import.meta.url),
);

/** One option as the generator reads it (a subset of config.ts's OptionSpec). */
export interface OptionRow {
  key: string;
  flag: string;
  kind: "string" | "int" | "number" | "bool" | "list";
  description: string;
  default: unknown;
}

const HEADER = `# Options of \`icmpfwd serve\`

<!-- Generated from src/config.ts (SPECS) by scripts/gen-options-doc.ts: edit the specs and run
\`npm run docs:options\`; test/unit/repo/options-doc.test.ts fails when this file is stale. -->

Every option is a flag, an \`ICMPFWD_*\` environment variable and a key of the JSON file given
with \`--config FILE\` (or \`ICMPFWD_CONFIG\`). Flags win over the environment, the environment
over the file, the file over the defaults. A bad value stops start-up with one line naming the
field, its flag and its variable, e.g.

\`\`\`text
icmpfwd: invalid configuration: defaultTtl (--default-ttl, ICMPFWD_DEFAULT_TTL): Number must be less than or equal to 255
\`\`\`

How values are written: a *switch* is on when given (\`--no-FLAG\` turns it off; in the
environment \`1|true|yes|on\` or \`0|false|no|off\`; in the file \`true\` / \`false\`); a *list*
flag is repeatable and also takes comma-separated values (the variable: comma-separated; the
file: a JSON array); numbers are plain numbers in all three. \`icmpfwd serve --help\` prints the
same list. Which options a reload (SIGHUP, \`icmpfwd reload\`) applies without a restart:
[operations.md](operations.md#reloading-the-configuration-sighup-icmpfwd-reload).
`;

const FOOTER = `
## Signals

- SIGINT / SIGTERM: drain (\`Draining\` to sessions; requests in flight decided or given their
  default within \`--drain-timeout\`), the final stats, the device closed (and gone when the
  service created it), exit 0. A second signal exits at once.
- SIGUSR1: one JSON log line \`{"msg":"stats","stats":{…}}\` with every counter.
- SIGHUP: reload the config file ([operations.md](operations.md): what applies live, what is
  refused).

## Telemetry environment

The standard \`OTEL_*\` variables (exporters, endpoints, sampler, batch sizes) are read too:
[observability.md](observability.md#configuration).
`;

function placeholderOf(kind: OptionRow["kind"]): string {
  switch (kind) {
    case "int":
    case "number":
      return " N";
    case "list":
      return " VALUE…";
    case "string":
      return " VALUE";
    case "bool":
      return "";
  }
}

function defaultText(row: OptionRow): string {
  if (row.default === undefined) return "–";
  if (row.kind === "bool") return row.default === true ? "on" : "off";
  if (Array.isArray(row.default)) {
    return row.default.length === 0 ? "none" : row.default.map((v) => `\`${v}\``).join(", ");
  }
  return `\`${String(row.default)}\``;
}

function cell(text: string): string {
  return text.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/** The whole document for these options. */
export function renderOptionsDoc(rows: readonly OptionRow[]): string {
  const lines = [
    "| flag | config key | variable | default | meaning |",
    "| --- | --- | --- | --- | --- |",
  ];
  for (const row of rows) {
    const flag =
      row.kind === "bool"
        ? `\`${row.flag}\` (switch)`
        : `\`${row.flag}${placeholderOf(row.kind)}\``;
    lines.push(
      `| ${flag} | \`${row.key}\` | \`${envName(row.key)}\` | ${cell(defaultText(row))} | ${cell(row.description)} |`,
    );
  }
  return `${HEADER}\n${lines.join("\n")}\n${FOOTER}`;
}

/** docs/options.md as the current SPECS render it. */
export function currentOptionsDoc(): string {
  return renderOptionsDoc(OPTIONS as readonly OptionRow[]);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const doc = currentOptionsDoc();
  if (process.argv.includes("--check")) {
    let committed = "";
    try {
      committed = readFileSync(OPTIONS_DOC_PATH, "utf8");
    } catch {
      // A missing file is stale too.
    }
    if (committed !== doc) {
      process.stderr.write("docs/options.md is stale: run `npm run docs:options`\n");
      process.exit(1);
    }
    process.stdout.write("docs/options.md is current\n");
  } else {
    writeFileSync(OPTIONS_DOC_PATH, doc);
    process.stdout.write(`wrote ${OPTIONS_DOC_PATH} (${OPTIONS.length} options)\n`);
  }
}
