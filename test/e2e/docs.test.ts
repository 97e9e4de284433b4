/**
 * Docs that are tested: every `runnable` shell block of README.md and docs/*.md runs as a reader
 * would run it, in order, each file in a private network namespace of its own, against a live
 * `icmpfwd serve` started there on its defaults (the README's setup) — unless the file says
 * `<!-- docs-test: own-service -->` and starts what it needs itself. A block passes when it
 * exits with its expected status (0 unless `<!-- expect-exit: N -->`) and its output matches
 * every `<!-- expect: REGEX -->` under it (test/unit/repo/doc-blocks.ts, docs/testing.md).
 *
 * Blocks of one file share a terminal's state: variables and the working directory carry from
 * one block to the next (a background job's $! too), as they would in the reader's shell.
 * `icmpfwd` and `icmpfwd-policy` are this checkout's builds on PATH.
 */
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeNetns, exec, Netns, type Spawned, tempDir, waitFor } from "../helpers/netns.js";
import { MAIN_JS } from "../helpers/serve.js";
import { type DocBlock, isShell, REPO_ROOT, repoDocs } from "../unit/repo/doc-blocks.js";

const BLOCK_TIMEOUT_MS = 90_000;
const POLICY_JS = join(REPO_ROOT, "clients/ts/dist/cli.js");

/** A directory with `icmpfwd` and `icmpfwd-policy` as the launchers run them. */
function binDir(): string {
  const dir = tempDir("icmpfwd-docs-bin-");
  const shim = (name: string, line: string): void => {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\nexec ${line} "$@"\n`);
    chmodSync(path, 0o755);
  };
  shim("icmpfwd", `${process.execPath} --max-semi-space-size=64 ${MAIN_JS}`);
  shim("icmpfwd-policy", `${process.execPath} ${POLICY_JS}`);
  return dir;
}

/**
 * The script for one block: the previous blocks' variables and directory, the block with
 * every assignment exported (so `export -p` carries it), then the state saved for the next.
 */
function scriptFor(block: DocBlock, state: string, bin: string): string {
  const path = `${bin}:${dirname(process.execPath)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;
  return [
    `[ -f ${state} ] && . ${state}`,
    `export PATH=${path}`,
    `cd "\${DOCS_PWD:-${REPO_ROOT}}"`,
    "save() { export DOCS_PWD=\"$PWD\"; export -p | grep -Ev ' (BASH[A-Z_]*|SHLVL|PWD|OLDPWD|_|SHELLOPTS|PPID|UID|EUID)=' > " +
      `${state}; }`,
    "trap save EXIT",
    "set -a -e",
    block.code,
  ].join("\n");
}

/** The names `ip netns list` shows. */
async function namespaces(): Promise<string[]> {
  const r = await exec("ip", ["netns", "list"]);
  return r.stdout
    .split("\n")
    .map((l) => l.split(" ")[0])
    .filter((n) => n !== "");
}

const files = repoDocs().filter((d) => d.blocks.some((b) => isShell(b) && b.kind === "runnable"));

describeNetns("docs that are tested", () => {
  const bin = binDir();
  afterAll(() => rmSync(bin, { recursive: true, force: true }));

  for (const doc of files) {
    describe(doc.file, () => {
      let ns: Netns;
      let serve: Spawned | null = null;
      const work = tempDir("icmpfwd-docs-");
      const state = join(work, "state.sh");

      let before = new Set<string>();

      beforeAll(async () => {
        before = new Set(await namespaces());
        ns = await Netns.create("docs");
        mkdirSync(work, { recursive: true });
        if (!doc.ownService) {
          serve = ns.spawnNode(MAIN_JS, ["serve"]);
          await waitFor(
            () => serve?.output().includes('"msg":"serving"') || serve?.child.exitCode !== null,
            { what: "icmpfwd serve to start", timeoutMs: 20_000 },
          );
          if (serve.child.exitCode !== null) throw new Error(`serve exited: ${serve.output()}`);
        }
      });

      afterAll(async () => {
        serve?.child.kill("SIGTERM");
        await ns?.destroy();
        rmSync(work, { recursive: true, force: true });
        // A guide's own namespace (policy-guide.md: policy-test-PID) left by a failed block.
        for (const name of (await namespaces()).filter((n) => !before.has(n))) {
          if (!/^policy-test-\d+$/.test(name)) continue;
          const pids = await exec("ip", ["netns", "pids", name]);
          const list = pids.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p));
          if (list.length > 0) await exec("kill", ["-9", ...list]);
          await exec("ip", ["netns", "delete", name]);
        }
      });

      const runnable = doc.blocks.filter((b) => isShell(b) && b.kind === "runnable");
      for (const block of runnable) {
        it(
          `${doc.file}:${block.line} runs as written`,
          async () => {
            const script = join(work, `block-${block.line}.sh`);
            const out = join(work, `block-${block.line}.out`);
            writeFileSync(script, scriptFor(block, state, bin));
            // Output to a file, not a pipe: a job the block leaves running in the background
            // (a policy, the service) would hold a pipe open after the block ends. nsenter
            // rather than `ip netns exec`: only the network namespace changes, so a namespace
            // a guide adds itself (`ip netns add`) stays visible to its next block.
            const r = await exec(
              "nsenter",
              [`--net=${ns.path}`, "bash", "-c", `bash ${script} > ${out} 2>&1 < /dev/null`],
              { timeoutMs: BLOCK_TIMEOUT_MS },
            );
            const output = readFileSync(out, "utf8") + r.stderr;
            // DOCS_TEST_PRINT=1 shows every block's output, for writing its expectations.
            if (process.env.DOCS_TEST_PRINT === "1") process.stdout.write(`${output}\n`);
            const where = `${doc.file}:${block.line}\n--- block\n${block.code}\n--- output\n${output}`;
            expect(r.code, where).toBe(block.expectExit);
            for (const e of block.expect) expect(output, where).toMatch(new RegExp(e, "m"));
          },
          BLOCK_TIMEOUT_MS + 10_000,
        );
      }
    });
  }
}, ["bash", "openssl", "nsenter"]);
