/**
 * Bounded soak: one server and two tunnel clients as child processes (the CLI, as an operator runs
 * it), mixed bulk and short connections checked by SHA-256, and one client killed and restarted on
 * purpose every `restartEverySeconds`. At the end it reports transfers ok / corrupted / failed
 * (those cut on purpose by a restart are counted apart) and the server's RSS and open file
 * descriptors at baseline and after the load stopped, and says what, if anything, is wrong.
 *
 *   npm run soak                         (node dist/soak/soak.js --seconds 600)
 *   node dist/soak/soak.js --seconds 60 --restart-every 20
 */
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { connect, createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { freePort, freePortRange, procStats, startServerProc, startTunnelProc, writeCertificate } from './cluster.js'
import type { CliProc, TunnelProcOptions } from './cluster.js'
import type { AddressInfo, Server, Socket } from 'node:net'

export interface SoakOptions {
  /** Length of the load phase. */
  seconds: number
  /** A client is killed (SIGKILL) and restarted this often; alternates between the two. */
  restartEverySeconds: number
  bulkWorkers?: number
  shortWorkers?: number
  bulkMinBytes?: number
  bulkMaxBytes?: number
  /** Pause after the load stops before the final measurement. */
  settleMs?: number
  log?: (line: string) => void
}

export interface ProcFigures { rss: number, fds: number }

export interface SoakReport {
  seconds: number
  transfers: {
    ok: number
    /** Completed (clean end) with bytes that differ from what was sent. */
    corrupted: number
    /** Ended by an error or a timeout without being exposed to a restart. */
    failed: number
    /** In flight on the client that was killed on purpose, and ended by an error. */
    cutOnPurpose: number
    /**
     * In flight on the killed client and ended with a clean FIN after a prefix of the data: the
     * frontend could not tell it was cut (see the relay bug in the hardening report).
     */
    cutTruncatedWithFin: number
    bulk: number
    short: number
    bytes: number
  }
  restarts: number
  server: { baseline: ProcFigures, end: ProcFigures }
  /** The first few unexpected failures and corruptions, for diagnosis. */
  problems: string[]
}

/** Limits for "back to baseline" after the load: a leak grows without bound, noise does not. */
export const FD_SLACK = 10
export const RSS_SLACK_RATIO = 0.3

/** What is wrong with a soak run; empty when it passed. */
export function verdict (r: SoakReport): string[] {
  const out: string[] = []
  if (r.transfers.corrupted > 0) out.push(`${r.transfers.corrupted} corrupted transfers`)
  if (r.transfers.failed > 0) out.push(`${r.transfers.failed} unexpected failures`)
  if (r.transfers.ok === 0) out.push('no transfer completed')
  if (r.server.end.fds > r.server.baseline.fds + FD_SLACK) out.push(`server fds ${r.server.baseline.fds} -> ${r.server.end.fds} (more than +${FD_SLACK})`)
  if (r.server.end.rss > r.server.baseline.rss * (1 + RSS_SLACK_RATIO)) {
    out.push(`server RSS ${mib(r.server.baseline.rss)} -> ${mib(r.server.end.rss)} (more than +${RSS_SLACK_RATIO * 100}%)`)
  }
  return out
}

const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`

export function formatReport (r: SoakReport): string {
  const t = r.transfers
  return [
    `soak: ${r.seconds} s, ${r.restarts} client restarts on purpose`,
    `transfers: ok ${t.ok} (bulk ${t.bulk}, short ${t.short}, ${mib(t.bytes)} each way) / corrupted ${t.corrupted} / failed ${t.failed}` +
      ` (excluded, cut on purpose by a restart: ${t.cutOnPurpose} reset + ${t.cutTruncatedWithFin} truncated with FIN)`,
    `server RSS: baseline ${mib(r.server.baseline.rss)}, end ${mib(r.server.end.rss)}`,
    `server open fds: baseline ${r.server.baseline.fds}, end ${r.server.end.fds}`,
    ...r.problems.map(p => `  problem: ${p}`)
  ].join('\n')
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
const ID_BYTES = 16
const WARM_UP_MS = 5000

/** An echo backend that remembers which transfer ids (the first 16 bytes) reached it. */
async function taggingEcho (index: number, seen: Map<string, number>): Promise<{ server: Server, port: number, close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    let head = Buffer.alloc(0)
    const onHead = (c: Buffer): void => {
      head = Buffer.concat([head, c])
      if (head.length >= ID_BYTES) { seen.set(head.subarray(0, ID_BYTES).toString('hex'), index); s.off('data', onHead) }
    }
    s.on('data', onHead)
    s.pipe(s)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise(resolve => server.close(resolve))
    }
  }
}

type Outcome = { kind: 'ok' } | { kind: 'corrupted', truncatedPrefix: boolean, detail: string } | { kind: 'failed', detail: string }

/** Sends id + payload, half-closes, and checks the echo byte for byte. Bounded by `timeoutMs`. */
async function transfer (port: number, id: Buffer, payload: Buffer, timeoutMs: number): Promise<Outcome> {
  const sent = Buffer.concat([id, payload])
  return await new Promise<Outcome>((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    const chunks: Buffer[] = []
    let settled = false
    const done = (o: Outcome): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve(o)
    }
    const timer = setTimeout(() => done({ kind: 'failed', detail: `timed out after ${timeoutMs} ms` }), timeoutMs)
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', (err) => done({ kind: 'failed', detail: err.message }))
    socket.on('close', () => done({ kind: 'failed', detail: 'closed without FIN' }))
    socket.on('end', () => {
      const got = Buffer.concat(chunks)
      if (got.length === sent.length && sha(got) === sha(sent)) { done({ kind: 'ok' }); return }
      const truncatedPrefix = got.length < sent.length && got.equals(sent.subarray(0, got.length))
      done({ kind: 'corrupted', truncatedPrefix, detail: `got ${got.length} of ${sent.length} bytes${truncatedPrefix ? ' (a prefix)' : ', content differs'}` })
    })
    socket.once('connect', () => socket.end(sent))
  })
}

export async function runSoak (opts: SoakOptions): Promise<SoakReport> {
  const log = opts.log ?? ((line: string) => process.stderr.write(line + '\n'))
  const bulkMin = opts.bulkMinBytes ?? 1024 * 1024
  const bulkMax = opts.bulkMaxBytes ?? 8 * 1024 * 1024
  const token = randomBytes(12).toString('hex')
  const cert = await writeCertificate()
  const seen = new Map<string, number>()
  const backends = [await taggingEcho(0, seen), await taggingEcho(1, seen)]
  const children: CliProc[] = []
  const report: SoakReport = {
    seconds: opts.seconds,
    transfers: { ok: 0, corrupted: 0, failed: 0, cutOnPurpose: 0, cutTruncatedWithFin: 0, bulk: 0, short: 0, bytes: 0 },
    restarts: 0,
    server: { baseline: { rss: 0, fds: 0 }, end: { rss: 0, fds: 0 } },
    problems: []
  }
  try {
    const apiPort = await freePort()
    const server = await startServerProc({ token, apiPort, dynPort: await freePortRange(2), dynPortCount: 2, cert, loglevel: 'info' })
    children.push(server)
    const frontendPort = await freePort()
    const tunnelOpts = (i: number): TunnelProcOptions => ({
      token, apiPort, frontendPort, backendPort: backends[i].port, serviceName: 'soak', fingerprint: cert.fingerprint,
      muxer: i === 0 ? 'yamux' : 'mplex', loglevel: 'info'
    })
    const tunnels: CliProc[] = []
    for (const i of [0, 1]) {
      const t = await startTunnelProc(tunnelOpts(i))
      children.push(t)
      tunnels.push(t)
    }

    /** Transfers in flight: id (hex) -> started. */
    const inFlight = new Set<string>()
    /** Ids exposed to a restart (in flight on, or not yet placed when, the client was killed). */
    const exposed = new Set<string>()
    const run = async (size: number, kind: 'bulk' | 'short', count: boolean): Promise<void> => {
      const id = randomBytes(ID_BYTES)
      const key = id.toString('hex')
      inFlight.add(key)
      const outcome = await transfer(frontendPort, id, randomBytes(size), kind === 'bulk' ? 60_000 : 15_000)
      inFlight.delete(key)
      seen.delete(key)
      const wasExposed = exposed.delete(key)
      if (!count) {
        if (outcome.kind !== 'ok') throw new Error(`warm-up transfer failed: ${outcome.detail}`)
        return
      }
      const t = report.transfers
      if (outcome.kind === 'ok') {
        t.ok++
        t[kind]++
        t.bytes += size
      } else if (wasExposed && outcome.kind === 'failed') {
        t.cutOnPurpose++
      } else if (wasExposed && outcome.kind === 'corrupted' && outcome.truncatedPrefix) {
        t.cutTruncatedWithFin++
      } else {
        if (outcome.kind === 'corrupted') t.corrupted++; else t.failed++
        if (report.problems.length < 10) report.problems.push(`${kind} transfer of ${size} bytes ${outcome.kind}: ${outcome.detail}`)
      }
    }
    const bulkSize = (): number => bulkMin + Math.floor(Math.random() * (bulkMax - bulkMin + 1))
    const shortSize = (): number => 1 + Math.floor(Math.random() * 16 * 1024)

    // Warm-up at full load for a few seconds (JIT, heap and buffer pools reach their working
    // size), then the baseline: growth measured after that is what the load left behind.
    const warmUntil = Date.now() + WARM_UP_MS
    const warm = async (kind: 'bulk' | 'short'): Promise<void> => {
      while (Date.now() < warmUntil) await run(kind === 'bulk' ? bulkSize() : shortSize(), kind, false)
    }
    await Promise.all([
      ...Array.from({ length: opts.bulkWorkers ?? 3 }, async () => await warm('bulk')),
      ...Array.from({ length: opts.shortWorkers ?? 6 }, async () => await warm('short'))
    ])
    await sleep(opts.settleMs ?? 3000)
    report.server.baseline = procStats(server.pid)
    log(`soak: baseline server RSS ${mib(report.server.baseline.rss)}, fds ${report.server.baseline.fds}; load for ${opts.seconds} s`)

    const started = Date.now()
    const deadline = started + opts.seconds * 1000
    const worker = async (kind: 'bulk' | 'short'): Promise<void> => {
      while (Date.now() < deadline) await run(kind === 'bulk' ? bulkSize() : shortSize(), kind, true)
    }
    const restarter = async (): Promise<void> => {
      let which = 1
      for (let next = started + opts.restartEverySeconds * 1000; next < deadline - 2000; next += opts.restartEverySeconds * 1000) {
        await sleep(next - Date.now())
        // Everything in flight that is (or may yet be) on the victim's backend counts as cut on purpose.
        for (const key of inFlight) {
          const at = seen.get(key)
          if (at === undefined || at === which) exposed.add(key)
        }
        await tunnels[which].stop('SIGKILL')
        const t = await startTunnelProc(tunnelOpts(which))
        children.push(t)
        tunnels[which] = t
        report.restarts++
        log(`soak: ${Math.round((Date.now() - started) / 1000)} s: restarted client ${which} (${tunnelOpts(which).muxer}); ` +
          `so far ok ${report.transfers.ok}, corrupted ${report.transfers.corrupted}, failed ${report.transfers.failed}, cut ${report.transfers.cutOnPurpose + report.transfers.cutTruncatedWithFin}`)
        which = 1 - which
      }
    }
    await Promise.all([
      ...Array.from({ length: opts.bulkWorkers ?? 3 }, async () => await worker('bulk')),
      ...Array.from({ length: opts.shortWorkers ?? 6 }, async () => await worker('short')),
      restarter()
    ])
    await sleep(opts.settleMs ?? 3000)
    report.server.end = procStats(server.pid)
    return report
  } finally {
    await Promise.all(children.map(async c => await c.stop('SIGKILL')))
    await Promise.all(backends.map(async b => await b.close()))
    cert.remove()
  }
}

function argValue (name: string): string | undefined {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : undefined
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const seconds = Number(argValue('--seconds') ?? 600)
  const restartEverySeconds = Number(argValue('--restart-every') ?? (seconds >= 180 ? 60 : 20))
  if (!(seconds > 0) || !(restartEverySeconds > 0)) {
    process.stderr.write('usage: node dist/soak/soak.js [--seconds 600] [--restart-every 60]\n')
    process.exit(2)
  }
  runSoak({ seconds, restartEverySeconds }).then((report) => {
    process.stdout.write(formatReport(report) + '\n')
    const wrong = verdict(report)
    process.stdout.write(wrong.length === 0 ? 'soak: PASS\n' : `soak: FAIL: ${wrong.join('; ')}\n`)
    process.exit(wrong.length === 0 ? 0 : 1)
  }, (err: Error) => {
    process.stderr.write(`soak: ${err.stack ?? err.message}\n`)
    process.exit(1)
  })
}
