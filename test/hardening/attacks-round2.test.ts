// Issue 19 ("Hardening, round two"), items 1, 2, 4 and 6: each attack reproduced over real
// sockets on loopback, with the bound the issue requires asserted.
import { expect } from 'chai'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { request } from 'node:https'
import { connect } from 'node:net'
import { WebSocket } from 'ws'
import { MUXERS, encodeFrame } from '../../protocol/index.js'
import { runCli } from '../fixtures/cli.js'
import { echoServer, eventually, freePort, freePortRange, randomPayload, sha256, steady, tcpServer } from '../fixtures/net.js'
import { TOKEN, startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import { closedWithin, exchangeWithTimeout, rawSession, registerRaw, seededBytes, sleep, socketClosedWithin } from './helpers.js'
import { captureLogger } from '../fixtures/logger.js'
import type { CliProcess } from '../fixtures/cli.js'
import type { TcpServer } from '../fixtures/net.js'
import type { TunnelServer } from '../../index.js'
import type { MuxerName } from '../../protocol/index.js'
import type { DialTarget } from './helpers.js'
import type { Socket } from 'node:net'

const MiB = 1024 * 1024
const registration = (serviceName: string, over: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ serviceName, frontendData: { port: 0 }, backendAcceptBacklog: 1, targetPort: 1, targetAddresses: ['127.0.0.1'], ...over })

/** yamux frame header: version 0, type, flags, stream id, length (or a ping's opaque value). */
const yamuxHeader = (type: number, flags: number, streamId: number, length: number): Buffer => {
  const b = Buffer.alloc(12)
  b[0] = 0; b[1] = type; b.writeUInt16BE(flags, 2); b.writeUInt32BE(streamId, 4); b.writeUInt32BE(length, 8)
  return b
}
const SYN = 0x1
const PING = 2

/** Resident set of a process, in MiB, from /proc. */
function rssMiB (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m === null) throw new Error(`no VmRSS for ${pid}`)
  return Number(m[1]) / 1024
}

/** GET /healthz on the tunnel port; resolves with the time the answer took (ms), rejects past `timeoutMs`. */
async function healthz (port: number, timeoutMs = 5000): Promise<number> {
  const started = performance.now()
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/healthz', rejectUnauthorized: false, agent: false, timeout: timeoutMs }, (res) => {
      res.resume()
      res.on('end', () => res.statusCode === 200 ? resolve(performance.now() - started) : reject(new Error(`/healthz answered ${String(res.statusCode)}`)))
    })
    req.on('timeout', () => req.destroy(new Error(`/healthz did not answer within ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end()
  })
}

/** A server started by the CLI in its own process, so that its RSS is its own. */
async function serverProcess (keepaliveS: number): Promise<{ cli: CliProcess, target: DialTarget, pid: number }> {
  const port = await freePort()
  const dyn = await freePortRange(4)
  const cli = runCli(['-t', TOKEN, '-l', 'debug', 'server', '--host', '127.0.0.1', '--frontendhost', '127.0.0.1', '--port', String(port),
    '--dynport', String(dyn), '--dynportcount', '4', '--keepalive', String(keepaliveS), '--portgrace', '0', '--handshaketimeout', '5'])
  const [, fingerprint] = await cli.waitFor(/fingerprint: (\S+)/)
  const pid = cli.child.pid
  if (pid === undefined) throw new Error('server process has no pid')
  return { cli, target: { port, fingerprint }, pid }
}

/**
 * Watches the log of `cli` for a line matching `re` written from now on: `seen` turns true and
 * `at` resolves with the time it was noticed; `at` rejects after `timeoutMs`.
 */
function logLine (cli: CliProcess, re: RegExp, timeoutMs: number): { seen: boolean, at: Promise<number> } {
  const before = cli.output.match(new RegExp(re.source, 'g'))?.length ?? 0
  const w = { seen: false, at: Promise.resolve(0) }
  w.at = cli.waitFor(re, timeoutMs, before + 1).then(() => { w.seen = true; return Date.now() })
  w.at.catch(() => {})
  return w
}

/** Samples `pid`'s RSS until stop() is called; returns the highest sample. */
function rssSampler (pid: number, everyMs = 100): { stop: () => number } {
  let peak = rssMiB(pid)
  const t = setInterval(() => { try { peak = Math.max(peak, rssMiB(pid)) } catch { /* exited */ } }, everyMs)
  return { stop: () => { clearInterval(t); return peak } }
}

describe('hardening round two (issue 19): the attacks, over real sockets', function () {
  this.timeout(120_000)

  describe('item 1 and 6: a registered client that stops reading and pumps frames the server answers (server in its own process)', function () {
    const KEEPALIVE_S = 1
    let server: Awaited<ReturnType<typeof serverProcess>>
    let baseline: number
    before(async function () {
      server = await serverProcess(KEEPALIVE_S)
      // A first session and /healthz warm the server up, so the baseline includes what any client costs.
      for (let i = 0; i < 3; i++) {
        const { ws, muxer } = await rawSession(server.target, 'yamux')
        await registerRaw(muxer, registration(`warmup-${i}`))
        ws.close()
        await closedWithin(ws, 5000)
        await healthz(server.target.port)
      }
      // Once the server's memory has settled after the warm-up.
      baseline = await steady(() => rssMiB(server.pid), 500, 10_000, 1)
    })
    after(async function () {
      await server?.cli.stop()
    })

    it('ping flood with reads stopped: RSS within +50 MB, the client dropped within ~2 keepalive intervals, /healthz answers; repeated, nothing is kept', async function () {
      const after: number[] = []
      for (let round = 1; round <= 3; round++) {
        const { ws, muxer } = await rawSession(server.target, 'yamux')
        const { message } = await registerRaw(muxer, registration(`pinger-${round}`))
        expect(message).to.have.property('frontendPort')
        const dropped = logLine(server.cli, /tunnel client \S+ stopped answering pings( or reading)?; dropping it/, 20_000)
        // Stop reading the TLS socket: whatever the server answers piles up on its side.
        ws.pause()
        const sampler = rssSampler(server.pid)
        const health: number[] = []
        const started = Date.now()
        let nextHealth = started
        let sent = 0
        const healthChecks: Array<Promise<void>> = []
        // 1000 yamux pings a message (12 KB), and a WebSocket ping every turn, for at most 15 s.
        const msg = Buffer.concat(Array.from({ length: 1000 }, (_, i) => yamuxHeader(PING, SYN, 0, i)))
        while (ws.readyState === WebSocket.OPEN && !dropped.seen && Date.now() - started < 15_000) {
          if (ws.bufferedAmount < 4 * MiB) {
            for (let i = 0; i < 16; i++) { ws.send(msg); sent += msg.length }
            try { ws.ping() } catch { /* closing */ }
          }
          if (Date.now() >= nextHealth) {
            nextHealth += 500
            healthChecks.push(healthz(server.target.port).then(ms => { health.push(ms) }))
          }
          await new Promise(resolve => setTimeout(resolve, 1))
        }
        const droppedAfter = (await dropped.at) - started
        ws.terminate()
        await Promise.all(healthChecks)
        const peak = sampler.stop()
        const back = await eventually(() => {
          const now = rssMiB(server.pid)
          expect(now - baseline, 'RSS after the client left (MiB above baseline)').to.be.below(50)
          return now
        }, 10_000, 250)
        after.push(back)
        console.log(`      [item 1] round ${round}: baseline RSS ${baseline.toFixed(1)} MiB, peak ${peak.toFixed(1)}, after the client left ${back.toFixed(1)}; ` +
          `sent ${(sent / MiB).toFixed(0)} MiB of pings; dropped after ${droppedAfter} ms; /healthz ${health.map(h => h.toFixed(0)).join(',')} ms`)
        expect(peak - baseline, 'RSS growth under the ping flood (MiB)').to.be.below(50)
        expect(health.length, '/healthz answers during the flood').to.be.greaterThan(0)
        expect(Math.max(...health), 'slowest /healthz during the flood (ms)').to.be.below(1000)
        // Two pings unanswered for a whole interval each: dead at the third tick (measured 1.9-3.1 s;
        // 5x margin for a busy machine).
        expect(droppedAfter, 'time until the server dropped the non-reading client (ms)').to.be.below(5 * 3 * KEEPALIVE_S * 1000)
      }
      // What an attack cost is given back (V8 keeps some heap; it must not ratchet up from round to
      // round). Since the CLI starts leaner, the heap is still growing to its working size in round
      // 2 (100 -> 121 MiB, then 124): rounds 2 and 3 are compared.
      expect(after[2] - after[1], 'RSS after round 3 minus after round 2 (MiB)').to.be.below(10)
    })

    it('frontend data into full windows toward a client that reads none of it: the queue stays bounded, the client is dropped', async function () {
      // The client acknowledges every stream the server opens (so frontend bytes are relayed), then
      // stops reading and grants each stream a 64 MiB window it will never read: only the server's
      // own bounds hold what it relays.
      const streamIds: number[] = []
      const { ws, muxer } = await rawSession(server.target, 'yamux', (stream) => {
        stream.write(encodeFrame({ ok: true }))
        streamIds.push(stream.id)
        return true
      })
      const { message } = await registerRaw(muxer, registration('sink'))
      expect(message).to.have.property('frontendPort')
      const frontendPort = (message as { frontendPort: number }).frontendPort
      const dropped = logLine(server.cli, /tunnel client \S+ stopped answering pings( or reading)?; dropping it/, 20_000)
      const before = rssMiB(server.pid)
      const sampler = rssSampler(server.pid)
      // 64 frontend connections each offering 16 MiB (1 GiB in all), all of it within the windows.
      const chunk = seededBytes(4, 256 * 1024)
      const frontends = await Promise.all(Array.from({ length: 64 }, async () => {
        const s = connect({ port: frontendPort, host: '127.0.0.1' })
        s.on('error', () => {})
        await once(s, 'connect')
        let wrote = 0
        const pump = (): void => {
          while (wrote < 16 * MiB && !s.destroyed) { wrote += chunk.length; if (!s.write(chunk)) { s.once('drain', pump); return } }
        }
        pump()
        return s
      }))
      await eventually(() => expect(streamIds.length).to.equal(64), 5000)
      ws.pause()
      const started = Date.now()
      ws.send(Buffer.concat(streamIds.map(id => yamuxHeader(1, 0, id, 64 * MiB))))
      const health: number[] = []
      while (!dropped.seen && Date.now() - started < 15_000) {
        // Something every 200 ms, so the client is never silent (what the old keepalive took for alive).
        if (ws.readyState === WebSocket.OPEN) ws.send(yamuxHeader(1, 0, streamIds[0], 1))
        health.push(await healthz(server.target.port))
        await sleep(200)
      }
      const droppedAfter = (await dropped.at) - started
      const peak = sampler.stop()
      console.log(`      [item 1] 64 frontends x 16 MiB toward a non-reading client with 64 MiB windows: dropped after ${droppedAfter} ms; ` +
        `RSS before ${before.toFixed(1)} MiB, peak ${peak.toFixed(1)}; /healthz max ${Math.max(...health).toFixed(0)} ms over ${health.length}`)
      // The kernel buffers fill within a moment; then the queue sits unread for an interval or two.
      expect(droppedAfter, 'time until the server dropped the client (ms), 5x margin').to.be.below(5 * 3 * KEEPALIVE_S * 1000)
      expect(peak - before, 'RSS growth (MiB)').to.be.below(50)
      expect(Math.max(...health), 'slowest /healthz (ms)').to.be.below(1000)
      // Its frontend connections go with it.
      await Promise.all(frontends.map(async s => await socketClosedWithin(s, 5000)))
      ws.terminate()
    })

    it('pings and SYNs on fresh odd ids with reads stopped: disconnected after a few refusals, RSS bounded', async function () {
      const { ws, muxer } = await rawSession(server.target, 'yamux')
      const { message } = await registerRaw(muxer, registration('synner'))
      expect(message).to.have.property('frontendPort')
      const cut = logLine(server.cli, /peer opened \d+ streams it may not open/, 10_000)
      ws.pause()
      const before = rssMiB(server.pid)
      const sampler = rssSampler(server.pid)
      const started = Date.now()
      let id = 3
      let syns = 0
      while (ws.readyState === WebSocket.OPEN && !cut.seen && Date.now() - started < 10_000 && syns < 2_000_000) {
        const frames: Buffer[] = []
        for (let i = 0; i < 500; i++, id += 2, syns++) frames.push(yamuxHeader(PING, SYN, 0, i), yamuxHeader(1, SYN, id, 0))
        if (ws.bufferedAmount < 4 * MiB) ws.send(Buffer.concat(frames))
        await new Promise(resolve => setTimeout(resolve, 1))
      }
      const cutAfter = (await cut.at) - started
      ws.terminate()
      const peak = sampler.stop()
      console.log(`      [item 1] SYN+ping flood: the server cut the client off after ${cutAfter} ms (${syns} SYNs sent by then, most still in flight); ` +
        `peak RSS ${peak.toFixed(1)} MiB (before ${before.toFixed(1)}, baseline ${baseline.toFixed(1)})`)
      // At the 9th refused SYN, i.e. within the first message.
      expect(cutAfter, 'time until the server cut the SYN flooder off (ms)').to.be.below(1000)
      expect(peak - before, 'RSS growth under the SYN flood (MiB)').to.be.below(50)
    })

    it('item 6: a registration that claims 4 GiB and then pumps is refused; the server buffers no more than the limit', async function () {
      for (const muxerName of MUXERS) {
        const { ws, muxer } = await rawSession(server.target, muxerName)
        ws.on('error', () => {})
        const before = rssMiB(server.pid)
        const sampler = rssSampler(server.pid)
        const control = muxer.open()
        const head = Buffer.alloc(4)
        head.writeUInt32BE(0xffff_ffff, 0)
        control.write(head)
        let answer = ''
        let closed = false
        control.attach({
          onData: (c) => { answer += c.toString() },
          onEnd: () => {},
          onDrain: () => {},
          onClose: () => { closed = true }
        })
        const chunk = seededBytes(6, 64 * 1024)
        let sent = 0
        const started = Date.now()
        // Up to 256 MiB or 10 s, as fast as the transport takes it.
        while (ws.readyState === WebSocket.OPEN && !closed && sent < 256 * MiB && Date.now() - started < 10_000) {
          if (ws.bufferedAmount > 8 * MiB) { await sleep(2); continue }
          control.write(chunk)
          sent += chunk.length
          if (sent % MiB === 0) await new Promise(resolve => setImmediate(resolve))
        }
        await closedWithin(ws, 5000)
        const peak = sampler.stop()
        console.log(`      [item 6] ${muxerName}: 4 GiB registration: answer ${JSON.stringify(answer.slice(4, 120))}; sent ${(sent / MiB).toFixed(1)} MiB before the close; peak RSS ${peak.toFixed(1)} MiB (before ${before.toFixed(1)})`)
        expect(answer).to.match(/exceeds the limit/)
        // A server that buffered the claimed body would keep reading up to the pump's 256 MiB; it
        // closes after a few MiB in flight. RSS may grow by about twice what arrived (frames the GC
        // has not taken back yet: 21.7 MiB for 11 MiB over mplex once the CLI started leaner).
        expect(sent, 'bytes the pump got out before the server closed the connection').to.be.below(64 * MiB)
        expect(peak - before, 'RSS growth while the huge registration was pumped (MiB)').to.be.below(20 + 2 * sent / MiB)
      }
      // The refused control stream never held what followed (mplex would reset it at 4 MiB, and say so).
      expect(server.cli.stderr).not.to.match(/stream 0 fell \d+ bytes behind/)
      await server.cli.waitFor(/registration from .* refused: .*exceeds the limit/, 5000)
    })
  })

  describe('item 2: one frontend peer that does not read', function () {
    const KEEPALIVE_MS = 1000
    const log = captureLogger()
    let server: TunnelServer
    let backend: TcpServer
    const BULK = 64 * MiB
    before(async function () {
      // Echoes, except a connection that starts with "BULK": it gets 64 MB as fast as it takes them.
      backend = await tcpServer((socket) => {
        socket.once('data', (first: Buffer) => {
          if (first.subarray(0, 4).toString() !== 'BULK') { socket.write(first); socket.pipe(socket); return }
          const chunk = seededBytes(2, 256 * 1024)
          let left = BULK
          const pump = (): void => {
            while (left > 0) { left -= chunk.length; if (!socket.write(chunk)) { socket.once('drain', pump); return } }
            socket.end()
          }
          pump()
        })
      })
      server = await startServer({ keepaliveMs: KEEPALIVE_MS, logger: log.logger })
    })
    after(async function () {
      await server?.close()
      await backend?.close()
    })

    /** Echo round trips of 4 KB every 20 ms on fresh connections until stop(); their latencies, and the first failure. */
    function keepEchoing (frontendPort: number): { stop: () => Promise<{ latencies: number[], failure?: string }> } {
      const latencies: number[] = []
      let failure: string | undefined
      let running = true
      const loop = (async () => {
        while (running && failure === undefined) {
          const payload = randomPayload(4096)
          const t = performance.now()
          try {
            const back = await exchangeWithTimeout(frontendPort, payload, 5000)
            if (sha256(back) !== sha256(payload)) failure = `echo ${latencies.length + 1} came back altered (${back.length} bytes)`
          } catch (err) {
            failure = `echo ${latencies.length + 1} failed: ${(err as Error).message}`
          }
          latencies.push(performance.now() - t)
          await sleep(20)
        }
      })()
      return { stop: async () => { running = false; await loop; return { latencies, failure } } }
    }

    /**
     * A frontend connection that does not read until `stopStalling()` says so (or `stallMs` passed),
     * uploading 64 MB (echoed back) or asking the backend for 64 MB. Then it reads what is left:
     * `how` says how it ended ('end' with all the bytes, 'end' short of them: silently truncated,
     * or the error, e.g. ECONNRESET). Bounded: 30 s for the rest.
     */
    async function nonReader (port: number, opts: { upload: boolean, stallMs: number, stopStalling: () => boolean }): Promise<{ stalled: string, how: string, wrote: number, received: number }> {
      const s: Socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
      s.pause()
      await once(s, 'connect')
      let wrote = 0
      let received = 0
      let ended: string | undefined
      s.on('error', (err: NodeJS.ErrnoException) => { ended ??= `error ${err.code ?? err.message}` })
      s.on('end', () => { ended ??= 'end' })
      s.on('close', () => { ended ??= 'closed' })
      s.on('data', (c: Buffer) => { received += c.length })
      if (opts.upload) {
        const chunk = seededBytes(1, 256 * 1024)
        const pump = (): void => {
          while (wrote < BULK && !s.destroyed) { wrote += chunk.length; if (!s.write(chunk)) { s.once('drain', pump); return } }
          if (!s.destroyed) s.end()
        }
        pump()
      } else {
        s.write('BULK')
      }
      const started = Date.now()
      while (ended === undefined && !opts.stopStalling() && Date.now() - started < opts.stallMs) await sleep(20)
      if (ended === undefined && (!opts.upload || opts.stopStalling())) {
        // A reset purges what the kernel held for us, and a paused socket that resumes then reads a
        // plain EOF (Linux): a reset is told from a FIN by a write, which fails only after a reset
        // (an upload has one waiting already; the reset may follow the server's log line by a moment).
        if (!opts.upload) s.write('?')
        const probed = Date.now()
        while (ended === undefined && Date.now() - probed < 1000) await sleep(20)
      }
      const stalled = ended ?? 'open'
      // Now read: a reset shows as an error, a silent truncation as an early end.
      s.resume()
      const readStarted = Date.now()
      while (ended === undefined && Date.now() - readStarted < 30_000) await sleep(20)
      s.destroy()
      return { stalled, how: ended ?? 'timeout', wrote, received }
    }

    for (const muxer of MUXERS) {
      for (const upload of [true, false]) {
        const what = upload ? 'writes 64 MB and never reads' : 'never reads while the backend sends 64 MB'
        it(`${muxer}: a peer that ${what} does not stall or drop the others of its session`, async function () {
          const service = `slow-${muxer}-${upload ? 'up' : 'down'}`
          const client = startClient(server, tunnelData(backend.port, { serviceName: service }), { muxer: muxer as MuxerName, keepaliveMs: KEEPALIVE_MS })
          try {
            const { frontendPort } = await client.ready()
            const session = server.registry.services.get(service)?.sessions[0]
            expect(session, 'the client\'s session').not.to.equal(undefined)
            const linesBefore = log.lines.length
            let sessionsClosed = 0
            const onClosed = ({ service: s }: { service: { name: string } }): void => { if (s.name === service) sessionsClosed++ }
            server.on('sessionClosed', onClosed)
            const echo = keepEchoing(frontendPort)
            // mplex: reset once it falls 4 MiB behind (the log says so). yamux: it just waits (its window); we give it 4 keepalive intervals.
            const overflowed = (): boolean => /fell \d+ bytes behind/.test(log.lines.slice(linesBefore).join(''))
            const stalled = await nonReader(frontendPort, { upload, stallMs: muxer === 'mplex' ? 20_000 : 4 * KEEPALIVE_MS, stopStalling: overflowed })
            // Some more keepalive intervals with the other connections flowing.
            const after = Date.now()
            await eventually(() => expect(Date.now() - after).to.be.above(3 * KEEPALIVE_MS), 10_000, 100)
            const { latencies, failure } = await echo.stop()
            server.off('sessionClosed', onClosed)
            const lines = log.lines.slice(linesBefore)
            const sorted = [...latencies].sort((a, b) => a - b)
            console.log(`      [item 2] ${muxer}, ${what}: the non-reader: "${stalled.stalled}" while it did not read (wrote ${(stalled.wrote / MiB).toFixed(1)} MiB), then "${stalled.how}" with ${(stalled.received / MiB).toFixed(1)} MiB read; ` +
              `${latencies.length} echo round trips meanwhile, median ${sorted[Math.floor(sorted.length / 2)].toFixed(1)} ms, max ${sorted[sorted.length - 1].toFixed(1)} ms`)
            expect(failure, 'echo round trips alongside the non-reader').to.equal(undefined)
            expect(sessionsClosed, 'sessions of the service dropped meanwhile').to.equal(0)
            expect(server.registry.services.get(service)?.sessions[0], 'the same session still serves').to.equal(session)
            expect(lines.join(''), 'log').not.to.match(/stopped answering pings/)
            expect(latencies.length, 'echo round trips completed alongside').to.be.greaterThan(20)
            // Measured up to ~500 ms here (1.6 s while another suite ran); a stream held back behind the
            // non-reader would wait out its whole stall (4 s or more).
            expect(sorted[sorted.length - 1], 'slowest echo round trip alongside the non-reader (ms)').to.be.below(2500)
            if (muxer === 'mplex') {
              // Reset, never a silent FIN.
              expect(stalled.stalled).to.match(/ECONNRESET|EPIPE/)
              expect(stalled.received).to.be.below(BULK)
              // Without flow control, which end's bound is hit first is a race: the server's queue
              // toward the non-reader, or the client's toward the echo backend held up behind it.
              expect(lines.join(''), 'log').to.match(/fell \d+ bytes behind its frontend reader; reset|closed, \d+ bytes in, \d+ out, stream reset by the peer/)
            } else {
              // yamux: the stalled connection only waited; once read, every byte arrives.
              expect(stalled.stalled, 'yamux: the stalled connection only waits').to.equal('open')
              expect(stalled.how).to.equal('end')
              expect(stalled.received).to.equal(BULK)
            }
          } finally {
            await client.close()
          }
        })
      }
    }
  })

  describe('item 4: a stream-open flood', function () {
    const log = captureLogger()
    let server: TunnelServer
    let backend: TcpServer
    before(async function () {
      backend = await echoServer()
      server = await startServer({ dynPortCount: 8, logger: log.logger })
    })
    after(async function () {
      await server?.close()
      await backend?.close()
    })

    for (const muxer of MUXERS) {
      it(`${muxer}: flooders are cut off after a few refusals; /healthz under 100 ms and a 1 MB transfer under 1 s meanwhile`, async function () {
        const bystander = startClient(server, tunnelData(backend.port, { serviceName: `bystander-${muxer}` }), { muxer: muxer as MuxerName })
        try {
          const { frontendPort } = await bystander.ready()
          // Warm the path.
          await exchangeWithTimeout(frontendPort, randomPayload(1024), 5000)
          await healthz(server.port)
          const linesBefore = log.lines.length
          const health: number[] = []
          const transfers: number[] = []
          const opensPerFlooder: number[] = []
          let flooding = true
          // Flooders one after the other for ~5 s (at least 5 of them, however slow the machine; at
          // most 300), each as fast as one event-loop turn writes opens.
          const flood = (async () => {
            const started = Date.now()
            for (let k = 0; k < 300 && (k < 5 || Date.now() - started < 5000); k++) {
              const { ws, muxer: mux } = await rawSession(server, muxer)
              const { message } = await registerRaw(mux, registration(`flood-${muxer}-${k}`))
              expect(message).to.have.property('frontendPort')
              let opened = 0
              while (ws.readyState === WebSocket.OPEN && opened < 20_000) {
                for (let i = 0; i < 1000 && !mux.isClosed; i++, opened++) mux.open().write(Buffer.from('hello?'))
                await new Promise(resolve => setImmediate(resolve))
              }
              await closedWithin(ws, 3000)
              opensPerFlooder.push(opened)
            }
            flooding = false
          })()
          const probes = (async () => {
            while (flooding) {
              health.push(await healthz(server.port))
              const payload = randomPayload(MiB)
              const t = performance.now()
              const back = await exchangeWithTimeout(frontendPort, payload, 5000)
              transfers.push(performance.now() - t)
              expect(sha256(back)).to.equal(sha256(payload))
            }
          })()
          await Promise.all([flood, probes])
          const max = (xs: number[]): number => Math.max(...xs)
          console.log(`      [item 4] ${muxer}: ${opensPerFlooder.length} flooders, opens sent before the cut max ${max(opensPerFlooder)}; ` +
            `/healthz max ${max(health).toFixed(1)} ms over ${health.length}; 1 MB transfer max ${max(transfers).toFixed(1)} ms over ${transfers.length}`)
          expect(opensPerFlooder.length).to.be.greaterThan(3)
          // Cut off within a turn or two of opens (the server decides at the 9th refusal; the rest was in flight).
          expect(max(opensPerFlooder), 'opens a flooder got to send before the server closed it').to.be.below(10_000)
          // Every flooder was cut off by the refusal limit (not by something slower).
          const cuts = log.lines.slice(linesBefore).filter(l => /peer opened \d+ streams it may not open/.test(l)).length
          expect(cuts, 'flooders cut off for refused opens').to.equal(opensPerFlooder.length)
          expect(health.length).to.be.greaterThan(0)
          // The bound is 100 ms; the probes share this process (and its event loop) with the
          // flooders and the server, so one slow answer in ten is tolerated, up to 500 ms (measured:
          // 35-70 ms on a quiet machine, 231 ms while other suites ran).
          const p90 = [...health].sort((a, b) => a - b)[Math.floor(health.length * 0.9)]
          expect(p90, '90th percentile of /healthz during the flood (ms)').to.be.below(100)
          expect(max(health), 'slowest /healthz during the flood (ms)').to.be.below(500)
          expect(max(transfers), 'slowest 1 MB transfer during the flood (ms)').to.be.below(1000)
        } finally {
          await bystander.close()
        }
      })
    }
  })

  describe('item 6: the control stream after registration', function () {
    const log = captureLogger()
    let server: TunnelServer
    before(async function () {
      server = await startServer({ dynPortCount: 4, logger: log.logger })
    })
    after(async function () {
      await server?.close()
    })

    for (const muxer of MUXERS) {
      it(`${muxer}: more data on the control stream after registering closes the session, with a log line`, async function () {
        const service = `chatty-${muxer}`
        const { ws, muxer: mux } = await rawSession(server, muxer)
        const { message, control } = await registerRaw(mux, registration(service))
        expect(message).to.have.property('frontendPort')
        expect(server.registry.services.has(service)).to.equal(true)
        control.write(encodeFrame(registration(service)))
        const ms = await closedWithin(ws, 3000)
        await eventually(() => expect(server.registry.services.has(service)).to.equal(false), 3000)
        await eventually(() => expect(log.lines.join('')).to.match(/sent data on its control stream after registering; closing the session/), 3000)
        console.log(`      [item 6] ${muxer}: closed ${ms} ms after the extra data`)
      })
    }
  })
})
