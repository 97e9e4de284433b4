/**
 * One differential run: `count` inputs of `seed`, each fed to icmpfwd and to gVisor (in memory
 * or through TUN devices), outputs normalized and compared; a difference is attributed to the
 * known difference that explains it exactly, otherwise it is an unknown class (family and what
 * each stack wrote) with its first example. In the TUN mode icmpfwd's output must also equal
 * its in-memory output byte for byte (the link adds and loses nothing).
 */
import { describeAll, hex, normalize } from "./compare.js";
import { generate } from "./generator.js";
import { KNOWN } from "./known.js";
import { type GvisorPeer, icmpfwdOutput } from "./peer.js";

export type Outcome =
  | { ours: Uint8Array[]; theirs: Uint8Array[]; oursInMemory?: Uint8Array[] }
  | { skipped: string };

/** Two stacks answering one input at a time. */
export interface Stacks {
  answer(packets: readonly Uint8Array[]): Promise<Outcome>;
}

/** The in-memory mode: icmpfwd's Stack on the channel link, gVisor's on a channel endpoint. */
export class MemoryStacks implements Stacks {
  constructor(private readonly peer: GvisorPeer) {}

  async answer(packets: readonly Uint8Array[]): Promise<Outcome> {
    const theirs = this.peer.feed(packets);
    return { ours: icmpfwdOutput(packets), theirs: await theirs };
  }
}

export interface Unknown {
  count: number;
  example: string;
}

export interface RunResult {
  seed: number;
  inputs: number;
  same: number;
  known: Map<string, number>;
  /** The first input each known difference explained, and what each stack wrote. */
  knownExample: Map<string, string>;
  /** Inputs that cannot be sent on the link (TUN mode), by reason. */
  skipped: Map<string, number>;
  unknown: Map<string, Unknown>;
}

const hexAll = (ps: readonly Uint8Array[]): string => ps.map(hex).join(" ") || "(nothing)";

function addUnknown(result: RunResult, cls: string, example: string): void {
  const u = result.unknown.get(cls);
  if (u !== undefined) u.count++;
  else result.unknown.set(cls, { count: 1, example });
}

/** The id of the known difference that explains two different outputs, or null. */
export function classify(
  input: readonly Uint8Array[],
  ours: readonly Uint8Array[],
  theirs: readonly Uint8Array[],
): string | null {
  return KNOWN.find((k) => k.explains(input, ours, theirs))?.id ?? null;
}

export async function differentialRun(
  stacks: Stacks,
  seed: number,
  count: number,
): Promise<RunResult> {
  const result: RunResult = {
    seed,
    inputs: count,
    same: 0,
    known: new Map(),
    knownExample: new Map(),
    skipped: new Map(),
    unknown: new Map(),
  };
  for (let i = 0; i < count; i++) {
    const input = generate(seed, i);
    const outcome = await stacks.answer(input.packets);
    if ("skipped" in outcome) {
      result.skipped.set(outcome.skipped, (result.skipped.get(outcome.skipped) ?? 0) + 1);
      continue;
    }
    const { ours, theirs, oursInMemory } = outcome;
    const a = hexAll(ours.map(normalize));
    const b = hexAll(theirs.map(normalize));
    const where = `seed ${seed} input ${i}\n  input   ${hexAll(input.packets)}`;
    if (oursInMemory !== undefined && a !== hexAll(oursInMemory.map(normalize)))
      addUnknown(
        result,
        `${input.family}: icmpfwd on the TUN ${describeAll(ours)}; in memory ${describeAll(oursInMemory)}`,
        `${where}\n  TUN     ${hexAll(ours)}\n  memory  ${hexAll(oursInMemory)}`,
      );
    if (a === b) {
      result.same++;
      continue;
    }
    const known = classify(input.packets, ours, theirs);
    if (known !== null) {
      result.known.set(known, (result.known.get(known) ?? 0) + 1);
      if (!result.knownExample.has(known))
        result.knownExample.set(
          known,
          `seed ${seed} input ${i} (${input.family}): icmpfwd ${describeAll(ours)}; gVisor ${describeAll(theirs)}`,
        );
      continue;
    }
    addUnknown(
      result,
      `${input.family}: icmpfwd ${describeAll(ours)}; gVisor ${describeAll(theirs)}`,
      `${where}\n  icmpfwd ${a}\n  gVisor  ${b}`,
    );
  }
  return result;
}

/** The unknown classes, one example each, for a failure message. */
export function formatUnknown(r: RunResult): string {
  return [...r.unknown].map(([cls, u]) => `${u.count} × ${cls}\n  ${u.example}`).join("\n");
}
