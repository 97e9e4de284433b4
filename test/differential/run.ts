/**
 * One differential run: `count` inputs of `seed`, each fed to icmpfwd and to gVisor, outputs
 * normalized and compared; a difference is attributed to the first known difference that
 * explains it, otherwise it is an unknown class (family and what each stack wrote) with its
 * first example.
 */
import { describeAll, hex, normalize } from "./compare.js";
import { generate } from "./generator.js";
import { KNOWN } from "./known.js";
import { type GvisorPeer, icmpfwdOutput } from "./peer.js";

export interface Unknown {
  count: number;
  example: string;
}

export interface RunResult {
  seed: number;
  inputs: number;
  same: number;
  known: Map<string, number>;
  unknown: Map<string, Unknown>;
}

const hexAll = (ps: readonly Uint8Array[]): string => ps.map(hex).join(" ") || "(nothing)";

export async function differentialRun(
  peer: GvisorPeer,
  seed: number,
  count: number,
): Promise<RunResult> {
  const result: RunResult = { seed, inputs: count, same: 0, known: new Map(), unknown: new Map() };
  // Every input is written at once (the peer answers them in order); icmpfwd runs meanwhile.
  const inputs = Array.from({ length: count }, (_, i) => generate(seed, i));
  const answers = inputs.map((input) => peer.feed(input.packets));
  for (let i = 0; i < count; i++) {
    const input = inputs[i];
    const ours = icmpfwdOutput(input.packets);
    const theirs = await answers[i];
    const a = hexAll(ours.map(normalize));
    const b = hexAll(theirs.map(normalize));
    if (a === b) {
      result.same++;
      continue;
    }
    const known = KNOWN.find((k) => k.explains(input.packets, ours, theirs));
    if (known !== undefined) {
      result.known.set(known.id, (result.known.get(known.id) ?? 0) + 1);
      continue;
    }
    const cls = `${input.family}: icmpfwd ${describeAll(ours)}; gVisor ${describeAll(theirs)}`;
    const u = result.unknown.get(cls);
    if (u !== undefined) u.count++;
    else
      result.unknown.set(cls, {
        count: 1,
        example: `seed ${seed} input ${i}\n  input   ${hexAll(input.packets)}\n  icmpfwd ${a}\n  gVisor  ${b}`,
      });
  }
  return result;
}

/** The unknown classes, one example each, for a failure message. */
export function formatUnknown(r: RunResult): string {
  return [...r.unknown].map(([cls, u]) => `${u.count} × ${cls}\n  ${u.example}`).join("\n");
}
