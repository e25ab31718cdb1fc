import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8'
import { PerformanceObserver } from 'node:perf_hooks'

/**
 * V8 sets the next full-GC limit from how fast the program allocates against how fast it
 * collects, and counts the Buffers allocated since the last full GC against it. A tunnel moving
 * hundreds of MB/s in 64 KiB Buffers looks like an extreme allocator, so V8 falls back to its
 * smallest growth factor (1.1): the limit ends barely above the small live heap and the whole heap
 * is marked and compacted every ~50 ms (80-90 full GCs in a 5 s transfer, ~13 % of a core in each
 * process). A fixed factor of 3 (the flag is read at every GC, so setting it at startup works)
 * ends that. Bench, medians of 2 rounds, without -> with: bulk 664 -> 725 MB/s up and 621 -> 676
 * down, CPU per GB 2.23 -> 2.04 s; RSS with 10,000 idle connections unchanged (190 -> 185 MB).
 * Factor 5 gained another ~10 % but let the server's RSS creep by a third in the 60 s soak
 * (factor 3: +10 %, then flat). Only the CLI sets it: the process is ours there, while a program
 * embedding the library keeps its own GC settings, and `node --heap-growing-percent=N` on the
 * command line wins.
 */
if (!process.execArgv.some(arg => /^--heap[-_]growing[-_]percent\b/.test(arg))) setFlagsFromString('--heap-growing-percent=200')

/** Most the young generation (both semi-spaces) may grow to. */
const YOUNG_GENERATION_MAX = 20 * 1024 * 1024

/**
 * V8 doubles the young generation (up to 32 MB on Node 20, ~50 MB on Node 26) whenever much of it
 * survives a scavenge, and never gives it back while the process idles. Opening thousands of
 * connections is exactly that: their state is long-lived, survives, and is promoted to the old
 * generation anyway, so the larger young generation buys nothing and stays in RSS (10,000 idle
 * connections: +17 MB per process on Node 20, +37 MB on Node 26). The maximum is fixed when the
 * heap is made (`--max-semi-space-size` at runtime has no effect), but the growth factor is read
 * at each growth (a doubling): once the next one would pass the maximum (startup usually gets
 * there: 16 MB), a factor of 1 keeps it at its size. Not lower: a smaller one promotes short-lived transfer
 * state early and multiplies full GCs under load. A `--max-semi-space-size` or
 * `--semi-space-growth-factor` on the command line wins.
 */
if (!process.execArgv.some(arg => /^--(max[-_]semi[-_]space[-_]size|semi[-_]space[-_]growth[-_]factor)\b/.test(arg))) {
  const youngGeneration = (): number => getHeapSpaceStatistics().find(s => s.space_name === 'new_space')?.space_size ?? 0
  const capped = (): boolean => {
    if (2 * youngGeneration() <= YOUNG_GENERATION_MAX) return false
    setFlagsFromString('--semi-space-growth-factor=1')
    return true
  }
  if (!capped()) {
    const observer = new PerformanceObserver(() => { if (capped()) observer.disconnect() })
    observer.observe({ entryTypes: ['gc'] })
  }
}
