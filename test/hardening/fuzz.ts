import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/**
 * Fixed seed and run counts: the fuzz tests explore the same inputs on every run (and in CI), so
 * a failure is reproducible from the test name alone. Raise FUZZ_RUNS locally to search further;
 * FUZZ_SEED picks another seed. Any counterexample found goes into corpus/*.json.
 */
export const FUZZ_SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : 0x5eed_0006
export const fuzzRuns = (n: number): number => process.env.FUZZ_RUNS !== undefined ? Number(process.env.FUZZ_RUNS) : n

/** fast-check parameters for one property: fixed seed, fixed count, corpus entries as examples. */
export function fuzzParams<T> (runs: number, examples: T[] = []): { seed: number, numRuns: number, examples: T[], endOnFailure: boolean } {
  return { seed: FUZZ_SEED, numRuns: fuzzRuns(runs), examples, endOnFailure: false }
}

// The corpus lives in the source tree (test/hardening/corpus); tests run from dist/test/hardening.
const CORPUS_DIR = fileURLToPath(new URL('../../../test/hardening/corpus/', import.meta.url))

export function loadCorpus<T> (name: string): T[] {
  return JSON.parse(readFileSync(CORPUS_DIR + name, 'utf8')) as T[]
}

/** Corpus byte inputs are stored as hex (with a note on what they found). */
export interface ByteCase { hex: string, note: string }
export const bytesOf = (c: ByteCase): Buffer => Buffer.from(c.hex, 'hex')

/** C0 controls and DEL: never allowed in anything that reaches a log line. */
export const CONTROL = /[\x00-\x1f\x7f]/
export const PRINTABLE_ASCII = /^[\x20-\x7e]*$/
