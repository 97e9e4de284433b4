/** Types of scripts/prerequisites.mjs, for the tests that reuse its package list. */
export interface Prerequisite {
  pkg: string;
  why: string;
  tests: string;
}
export const PREREQUISITES: readonly Prerequisite[];
export function missingPackages(pkgs?: readonly string[]): string[];
export function aptInstall(pkgs: readonly string[], o?: { quiet?: boolean }): boolean;
