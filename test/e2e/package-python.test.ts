/**
 * The Python client as a package, the way clients/README.md says: from a temp dir outside the
 * repository, `pip install --no-build-isolation ./clients/python` into a venv made with
 * `--system-site-packages` on Debian's /usr/bin/python3 — run inside a private namespace, which
 * has no network at all, so the install is offline by construction — then the README's ten-line
 * policy against a real `icmpfwd serve` in that namespace: `ping -c 20` (IPv4 and IPv6) gets
 * exactly the even sequences answered. And without grpcio (a venv without system site packages)
 * the import fails with one line naming both remedies.
 */
import { cpSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { expectEvenPingsDecided } from "../helpers/even-pings.js";
import { describeNetns, exec, inCI, Netns, type Spawned, tempDir } from "../helpers/netns.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PYTHON = "/usr/bin/python3";
const INSTALL_TIMEOUT_MS = 120_000;

/** The README's Python example (the first python block of its "## Python" section). */
function readmeBlock(language: string, section: string): string {
  const readme = readFileSync(join(ROOT, "clients/README.md"), "utf8");
  const at = readme.indexOf(`\n## ${section}`);
  if (at < 0) throw new Error(`clients/README.md has no "## ${section}" section`);
  const m = new RegExp(`\`\`\`${language}\\n([\\s\\S]*?)\`\`\``).exec(readme.slice(at));
  if (m?.[1] === undefined) throw new Error(`no ${language} block in "## ${section}"`);
  return m[1];
}

/** Runs a command line in the namespace from `cwd` with a clean pip configuration. */
async function inNs(ns: Netns, cwd: string, cmdline: string, timeoutMs = 60_000): Promise<string> {
  const env: NodeJS.ProcessEnv = { PATH: "/usr/bin:/bin", HOME: process.env.HOME ?? "/root" };
  // The documented command alone: no pip.conf, no extra index or find-links of this machine.
  env.PIP_CONFIG_FILE = "/dev/null";
  const c = ns.spawn("sh", ["-c", `cd '${cwd}' && ${cmdline}`], env);
  const timer = setTimeout(() => c.child.kill("SIGKILL"), timeoutMs);
  const { code } = await c.exited;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${cmdline}: exit ${code}: ${c.output()}`);
  return c.output();
}

async function pythonReady(): Promise<string | null> {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing`;
  const r = await exec(PYTHON, ["-c", "import grpc, google.protobuf, venv, ensurepip"]);
  if (r.code !== 0) return "python3-grpcio, python3-protobuf or python3-venv is not installed";
  return null;
}

describeNetns("the Python client package, installed offline outside the repository", () => {
  let ns: Netns;
  let serve: ServeProcess | null = null;
  let skipReason: string | null = null;
  let dir = "";
  const procs: Spawned[] = [];

  beforeAll(async () => {
    skipReason = await pythonReady();
    if (skipReason !== null && inCI) throw new Error(skipReason);
    ns = await Netns.create("pkgpy");
    dir = tempDir("icmpfwd-pkg-py-");
    // A checkout's clients/python, outside the repository.
    cpSync(join(ROOT, "clients/python"), join(dir, "clients/python"), {
      recursive: true,
      filter: (p) => !/(__pycache__|\/build$|\.egg-info$)/.test(p),
    });
    writeFileSync(join(dir, "even.py"), readmeBlock("python", "Python"));
  }, INSTALL_TIMEOUT_MS);

  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill("SIGKILL");
    if (serve !== null) await serve.stop();
    await ns?.destroy();
  });

  it(
    "installs with pip --no-build-isolation into a --system-site-packages venv, and the README policy answers exactly the even sequences",
    async (ctx) => {
      if (skipReason !== null) ctx.skip();
      await inNs(ns, dir, `${PYTHON} -m venv --system-site-packages venv`);
      const pip = await inNs(
        ns,
        dir,
        "venv/bin/pip install --no-build-isolation ./clients/python",
        INSTALL_TIMEOUT_MS,
      );
      expect(pip).toMatch(/Successfully installed icmpfwd-client-0\.1\.0/);
      // The console script and the module run from a directory outside the repository.
      const help = await inNs(ns, dir, "venv/bin/icmpfwd-policy-py --help");
      expect(help).toContain("--resolve-interval-ms");

      serve = await startServe(ns, ["--deadline", "2000"]);
      const s = serve;
      const policy = ns.spawn("sh", ["-c", `cd '${dir}' && exec venv/bin/python -u even.py`]);
      procs.push(policy);
      await expectEvenPingsDecided(ns, s, policy);
      policy.child.kill("SIGTERM");
      const { code } = await policy.exited;
      expect(code, policy.output()).toBe(0);
      expect(policy.output()).toMatch(
        /^summary policy=even decided=40 reply=20 consume=20 fallthrough=0 errors=0 observed=0 sessions=1$/m,
      );
    },
    INSTALL_TIMEOUT_MS + 60_000,
  );

  it("without grpcio, the import fails with one line naming both remedies", async (ctx) => {
    if (skipReason !== null) ctx.skip();
    await inNs(ns, dir, `${PYTHON} -m venv --without-pip bare`);
    const env = { PATH: "/usr/bin:/bin", PYTHONPATH: join(dir, "clients/python") };
    const cli = await exec("sh", [
      "-c",
      `cd '${dir}' && PYTHONPATH='${env.PYTHONPATH}' bare/bin/python -m icmpfwd_client reply-all`,
    ]);
    expect(cli.code).toBe(1);
    const line = cli.stderr.trimEnd();
    expect(line.split("\n")).toHaveLength(1);
    expect(line).toContain("apt-get install python3-grpcio python3-protobuf");
    expect(line).toContain("pip install grpcio protobuf");
    // The README policy itself: the traceback ends in that one line.
    const script = await exec("sh", [
      "-c",
      `cd '${dir}' && PYTHONPATH='${env.PYTHONPATH}' bare/bin/python even.py`,
    ]);
    expect(script.code).toBe(1);
    const last = script.stderr.trimEnd().split("\n").at(-1) ?? "";
    expect(last).toMatch(
      /^ImportError: icmpfwd_client needs grpcio and protobuf \(grpc is missing\): .*python3-grpcio.*pip install grpcio protobuf`$/,
    );
  });
});
