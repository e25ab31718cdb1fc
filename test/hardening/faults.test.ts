import { expect } from 'chai'
import { once } from 'node:events'
import { connect } from 'node:net'
import { procStats, startServerProc, startTunnelProc, writeCertificate } from '../../soak/cluster.js'
import { MUXERS } from '../../protocol/index.js'
import { echoServer, eventually, freePort, freePortRange, randomPayload, sha256, steady, tcpServer } from '../fixtures/net.js'
import { TOKEN, startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import { exchangeWithTimeout, seededBytes, sleep } from './helpers.js'
import type { CliProc, Certificate } from '../../soak/cluster.js'
import type { TunnelServer } from '../../index.js'
import type { MuxerName } from '../../protocol/index.js'
import type { TcpServer } from '../fixtures/net.js'
import type { Socket } from 'node:net'

/** How a frontend connection ended, seen from the frontend peer. */
interface Ending { at: number, how: 'fin' | 'reset' | 'open', received: number }

/**
 * What a test connection does; its first byte tells the backend (see streamingBackend):
 * D  download, paced (64 KiB every 10 ms)      U  upload, paced; the backend reads it
 * F  download as fast as possible              S  upload as fast as possible; the backend never reads
 */
type Kind = 'D' | 'U' | 'F' | 'S'

interface Flow {
  socket: Socket
  progress: () => number
  ended: Promise<Ending>
  /** Stop reading (a peer that does not keep up), and start again. */
  hold: () => void
  release: () => void
}

/** Connects, sends `first` (default: the kind), and moves data as `kind` says until the far end closes; bounded. */
function flow (port: number, kind: Kind, first: Buffer | string = kind, allowHalfOpen = false): Flow {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen })
  let received = 0
  let sent = 0
  let how: Ending['how'] = 'open'
  socket.on('data', (c: Buffer) => { received += c.length })
  socket.on('end', () => { how = 'fin' })
  socket.on('error', () => { how = 'reset' })
  const chunk = seededBytes(5, 64 * 1024)
  const LIMIT = 2 * 1024 * 1024 * 1024
  socket.once('connect', () => {
    socket.write(first)
    if (kind === 'U') {
      const timer = setInterval(() => {
        if (socket.destroyed || sent >= LIMIT) { clearInterval(timer); return }
        sent += chunk.length
        socket.write(chunk)
      }, 10)
      socket.once('close', () => clearInterval(timer))
    }
    if (kind === 'S') {
      const pump = (): void => {
        while (!socket.destroyed && sent < LIMIT) {
          sent += chunk.length
          if (!socket.write(chunk)) { socket.once('drain', pump); return }
        }
      }
      pump()
    }
  })
  const ended = new Promise<Ending>(resolve => socket.once('close', () => resolve({ at: Date.now(), how, received })))
  return {
    socket,
    progress: () => kind === 'D' || kind === 'F' ? received : sent,
    ended,
    hold: () => socket.pause(),
    release: () => socket.resume()
  }
}

/** Serves flow(): streams to downloaders (paced or flat out), reads or ignores uploads. */
async function streamingBackend (): Promise<TcpServer> {
  const chunk = seededBytes(6, 64 * 1024)
  const LIMIT = 2 * 1024 * 1024 * 1024
  return await tcpServer((s) => {
    s.once('data', (c: Buffer) => {
      let sent = 0
      const kind = String.fromCharCode(c[0])
      if (kind === 'D') {
        const timer = setInterval(() => {
          if (s.destroyed || !s.writable || sent >= LIMIT) { clearInterval(timer); return }
          sent += chunk.length
          s.write(chunk)
        }, 10)
        s.once('close', () => clearInterval(timer))
      } else if (kind === 'F') {
        const pump = (): void => {
          while (!s.destroyed && s.writable && sent < LIMIT) {
            sent += chunk.length
            if (!s.write(chunk)) { s.once('drain', pump); return }
          }
        }
        pump()
      } else if (kind === 'S') {
        s.pause()
      } else {
        s.resume() // 'U': read and drop
      }
    })
  })
}

async function drainOrTimeout (socket: Socket, ms: number): Promise<void> {
  await new Promise<void>(resolve => {
    const done = (): void => { clearTimeout(t); socket.off('drain', done); resolve() }
    const t = setTimeout(done, ms)
    socket.once('drain', done)
  })
}

async function byteExact (port: number, n = 3, size = 1024 * 1024): Promise<void> {
  await Promise.all(Array.from({ length: n }, async () => {
    const payload = randomPayload(size)
    // Never a backend's command letter ('R', 'W', ...): a random first byte was one in 128 times,
    // and that echo then waited for a reset that never came (this test's old flake).
    payload[0] = 0x45
    expect(sha256(await exchangeWithTimeout(port, payload, 15_000))).to.equal(sha256(payload))
  }))
}

describe('faults: kill -9 of a tunnel client mid-transfer', function () {
  this.timeout(60_000)
  let server: TunnelServer
  let backend: TcpServer
  let echo: TcpServer
  const procs: CliProc[] = []
  let n = 0

  before(async function () {
    server = await startServer()
    backend = await streamingBackend()
    echo = await echoServer()
  })
  after(async function () {
    await Promise.all(procs.map(async p => await p.stop('SIGKILL')))
    await server.close()
    await backend.close()
    await echo.close()
  })

  /**
   * Starts a CLI tunnel, puts `kinds` in flight, kills the tunnel with SIGKILL once each has moved
   * `minBytes` (and, for F/S, once they are held back), lets held readers read again, and reports
   * how each frontend connection ended (or that it stayed open for 10 s).
   */
  async function killMidTransfer (muxer: MuxerName, kinds: Kind[], minBytes: number): Promise<{ endings: Ending[], killedAt: number, frontendPort: number, service: string }> {
    const frontendPort = await freePort()
    const service = `kill-${muxer}-${++n}`
    const tunnel = await startTunnelProc({ token: TOKEN, apiPort: server.port, frontendPort, backendPort: backend.port, serviceName: service, fingerprint: server.fingerprint, muxer })
    procs.push(tunnel)
    const flows = kinds.map(k => flow(frontendPort, k))
    try {
      await eventually(() => { for (const f of flows) expect(f.progress()).to.be.above(minBytes) }, 15_000)
      if (kinds.some(k => k === 'F' || k === 'S')) {
        // Flat-out flows: the frontend stops reading, the backend never reads; until the buffers
        // on the way are full, so the relays are held back by backpressure when the client dies.
        for (const [i, f] of flows.entries()) if (kinds[i] === 'F') f.hold()
        const stalled = flows.filter((_f, i) => kinds[i] === 'F' || kinds[i] === 'S')
        await steady(() => stalled.reduce((n, f) => n + f.progress(), 0), 300, 15_000)
      }
      const killedAt = Date.now()
      await tunnel.stop('SIGKILL')
      await sleep(100)
      for (const f of flows) f.release()
      const endings = await Promise.all(flows.map(async f => await Promise.race([
        f.ended,
        sleep(10_000).then((): Ending => ({ at: Infinity, how: 'open', received: 0 }))
      ])))
      return { endings, killedAt, frontendPort, service }
    } finally {
      for (const f of flows) f.socket.destroy()
    }
  }

  for (const muxer of MUXERS) {
    it(`frontend peers see a prompt close, and the service comes back when the client restarts (${muxer})`, async function () {
      const { endings, killedAt, frontendPort, service } = await killMidTransfer(muxer, ['D', 'D', 'D', 'U', 'U', 'U'], 256 * 1024)
      for (const e of endings) {
        expect(e.how, 'a frontend connection stayed open after its tunnel client died').not.to.equal('open')
        expect(e.at - killedAt).to.be.below(2000)
      }
      // The server dropped the session; the port closes with its last session...
      await eventually(() => expect(server.registry.services.has(service)).to.equal(false), 5000)
      // ...and a restarted client gets it back and carries data byte-exact.
      const again = await startTunnelProc({ token: TOKEN, apiPort: server.port, frontendPort, backendPort: echo.port, serviceName: service, fingerprint: server.fingerprint, muxer })
      procs.push(again)
      await byteExact(frontendPort)
      await again.stop('SIGTERM')
    })
  }

  it('a transfer cut by a dead tunnel client ends with a reset, never with a clean FIN (silent truncation)', async function () {
    const { endings } = await killMidTransfer('yamux', ['D', 'D', 'D', 'U', 'U', 'U'], 256 * 1024)
    expect(endings.map(e => e.how)).to.deep.equal(Array(6).fill('reset'))
  })

  for (const muxer of MUXERS) {
    it(`frontend peers held back by backpressure when the client dies are closed promptly too (${muxer})`, async function () {
      const { endings, killedAt } = await killMidTransfer(muxer, ['F', 'F', 'S', 'S'], 1024 * 1024)
      for (const e of endings) {
        expect(e.how, 'a frontend connection stayed open after its tunnel client died').not.to.equal('open')
        expect(e.at - killedAt).to.be.below(2500)
      }
    })
  }
})

describe('faults: kill -9 and restart of the server process', function () {
  this.timeout(60_000)
  let cert: Certificate
  let echo: TcpServer
  const procs: CliProc[] = []

  before(async function () {
    cert = await writeCertificate()
    echo = await echoServer()
  })
  after(async function () {
    await Promise.all(procs.map(async p => await p.stop('SIGKILL')))
    await echo.close()
    cert.remove()
  })

  it('clients re-register on their ports (explicit and server-chosen) and carry data byte-exact', async function () {
    const apiPort = await freePort()
    const dynPort = await freePortRange(4)
    const serverOpts = { token: TOKEN, apiPort, dynPort, dynPortCount: 4, cert }
    let server = await startServerProc(serverOpts)
    procs.push(server)
    const explicitPort = await freePort()
    const a = await startTunnelProc({ token: TOKEN, apiPort, frontendPort: explicitPort, backendPort: echo.port, serviceName: 'phoenix-a', fingerprint: cert.fingerprint, muxer: 'yamux' })
    const b = await startTunnelProc({ token: TOKEN, apiPort, frontendPort: 0, backendPort: echo.port, serviceName: 'phoenix-b', fingerprint: cert.fingerprint, muxer: 'mplex' })
    procs.push(a, b)
    const portOf = (p: CliProc): number => Number(/registered with .* frontend [^\s]*:(\d+)/.exec(p.output)?.[1])
    const dynamicPort = portOf(b)
    expect(dynamicPort).to.be.within(dynPort, dynPort + 3)
    await byteExact(explicitPort, 2)
    await byteExact(dynamicPort, 2)

    // A download in flight when the server dies is closed promptly (its process is gone).
    const inFlight = connect({ port: explicitPort, host: '127.0.0.1' })
    inFlight.on('error', () => {})
    inFlight.resume()
    const inFlightClosed = new Promise(resolve => inFlight.once('close', resolve))
    await once(inFlight, 'connect')
    await server.stop('SIGKILL')
    await Promise.race([inFlightClosed, sleep(2000).then(() => { throw new Error('in-flight connection not closed') })])

    server = await startServerProc(serverOpts)
    procs.push(server)
    await a.waitFor(/ registered with /, 20_000, 2)
    await b.waitFor(/ registered with /, 20_000, 2)
    expect(portOf(a)).to.equal(explicitPort)
    await byteExact(explicitPort, 3)
    await byteExact(dynamicPort, 3)
    expect(b.output.match(/registered with .* frontend [^\s]*:(\d+)/g)?.map(l => Number(/:(\d+)$/.exec(l)?.[1]))).to.deep.equal([dynamicPort, dynamicPort])
  })
})

describe('faults: backends that misbehave', function () {
  this.timeout(60_000)

  for (const muxer of MUXERS) {
    it(`a backend that accepts but never reads: the writer is ${muxer === 'yamux' ? 'held back' : 'reset'}, memory stays bounded, other connections flow (${muxer})`, async function () {
      const cert = await writeCertificate()
      const procs: CliProc[] = []
      const sinks: Socket[] = []
      // The first connection is the sink (never read); every later one is echoed.
      let first = true
      const backend = await tcpServer((s) => {
        if (first) { first = false; s.pause(); sinks.push(s); return }
        s.pipe(s)
      })
      let writer: Socket | undefined
      try {
        const apiPort = await freePort()
        const server = await startServerProc({ token: TOKEN, apiPort, dynPort: await freePortRange(1), dynPortCount: 1, cert })
        procs.push(server)
        const frontendPort = await freePort()
        const tunnel = await startTunnelProc({ token: TOKEN, apiPort, frontendPort, backendPort: backend.port, serviceName: 'sink', fingerprint: cert.fingerprint, muxer })
        procs.push(tunnel)
        // Once both processes' memory has settled after the start.
        await steady(() => procStats(server.pid).rss + procStats(tunnel.pid).rss, 300, 10_000, 1024 * 1024)
        const base = { server: procStats(server.pid).rss, tunnel: procStats(tunnel.pid).rss }

        writer = connect({ port: frontendPort, host: '127.0.0.1' })
        writer.on('error', () => {})
        await once(writer, 'connect')
        const chunk = seededBytes(8, 64 * 1024)
        let written = 0
        const deadline = Date.now() + 4000
        // Write as fast as the socket takes it, for 4 s (bounded): backpressure must stop us.
        while (Date.now() < deadline && written < 512 * 1024 * 1024) {
          if (writer.write(chunk)) { written += chunk.length; continue }
          written += chunk.length
          await drainOrTimeout(writer, 250)
        }
        const stalledAt = written
        // Until what the stall costs has been paid: memory stops growing.
        await steady(() => procStats(server.pid).rss + procStats(tunnel.pid).rss, 500, 10_000, 1024 * 1024)
        const grown = { server: procStats(server.pid).rss - base.server, tunnel: procStats(tunnel.pid).rss - base.tunnel }
        // Bounded by socket buffers and one stream window (yamux, 4 MiB) or the stream's bound (mplex).
        expect(stalledAt, `writer got ${stalledAt} bytes out`).to.be.below(48 * 1024 * 1024)
        expect(writer.writableLength, 'bytes held in the writer itself').to.be.below(64 * 1024 * 1024)
        expect(grown.server, 'server RSS growth').to.be.below(64 * 1024 * 1024)
        expect(grown.tunnel, 'tunnel client RSS growth').to.be.below(64 * 1024 * 1024)
        // The stalled stream does not hold the others of its session back.
        await byteExact(frontendPort, 4, 256 * 1024)
        if (muxer === 'mplex') {
          // No flow control: once the stream fell its bound behind, the tunnel reset it.
          await eventually(() => expect(writer?.destroyed, 'writer reset').to.equal(true), 10_000)
          return
        }
        // When the backend finally reads, every byte written arrives (nothing was dropped to make room).
        writer.end()
        const sink = sinks[0]
        let got = 0
        sink.on('data', (c: Buffer) => { got += c.length })
        sink.resume()
        await eventually(() => expect(got).to.equal(writer?.bytesWritten), 20_000)
      } finally {
        writer?.destroy()
        await Promise.all(procs.map(async p => await p.stop('SIGKILL')))
        await backend.close()
        cert.remove()
      }
    })
  }

  it('a backend that resets mid-transfer: that frontend sees a reset promptly, concurrent transfers stay byte-exact', async function () {
    const server = await startServer()
    let resetAt: number[] = []
    // 'R' + n: read n bytes of upload then reset; 'W' + n: send n bytes, reset on the frontend's 'A'; else echo.
    const backend = await tcpServer((s) => {
      s.once('data', (c: Buffer) => {
        const n = c.length > 1 ? c.readUInt32BE(1) : 0
        if (c[0] === 0x52) {
          let got = c.length
          s.on('data', (d: Buffer) => { got += d.length; if (got >= n && !s.destroyed) { resetAt.push(Date.now()); s.resetAndDestroy() } })
        } else if (c[0] === 0x57) {
          // Reset once the frontend confirms it got everything ('A'): a reset that overtakes bytes
          // the tunnel client has not read yet may reach it as a plain EOF (Linux discards them and
          // libuv can report 0), which the tunnel would faithfully pass on as a FIN.
          s.write(seededBytes(4, n))
          s.on('data', (d: Buffer) => { if (d.includes(0x41) && !s.destroyed) { resetAt.push(Date.now()); s.resetAndDestroy() } })
        } else {
          s.write(c)
          s.pipe(s)
        }
      })
    })
    const client = startClient(server, tunnelData(backend.port, { serviceName: 'resetter' }))
    try {
      const { frontendPort } = await client.ready()
      const header = (kind: string, n: number): Buffer => { const b = Buffer.alloc(5); b.write(kind, 0); b.writeUInt32BE(n, 1); return b }
      for (const kind of ['R', 'W']) {
        resetAt = []
        const n = 2 * 1024 * 1024
        const victims = Array.from({ length: 3 }, () => {
          const f = flow(frontendPort, kind === 'R' ? 'S' : 'F', header(kind, n))
          let acked = false
          if (kind === 'W') f.socket.on('data', () => { if (!acked && f.progress() >= n) { acked = true; f.socket.write('A') } })
          return f
        })
        const bystanders = byteExact(frontendPort, 6, 512 * 1024)
        const endings = await Promise.all(victims.map(async v => await Promise.race([v.ended, sleep(10_000).then((): Ending => ({ at: Infinity, how: 'open', received: 0 }))])))
        await bystanders
        expect(resetAt).to.have.length(3)
        for (const e of endings) {
          expect(e.how, `${kind}: the backend's reset must reach the frontend as a reset`).to.equal('reset')
          expect(e.at - Math.max(...resetAt)).to.be.below(2000)
          if (kind === 'W') expect(e.received).to.equal(n)
        }
      }
    } finally {
      await client.close()
      await server.close()
      await backend.close()
    }
  })

  it('the tunnel goes away under a frontend upload held back by backpressure: the frontend is closed and the server keeps no socket', async function () {
    const server = await startServer()
    const backend = await streamingBackend()
    const client = startClient(server, tunnelData(backend.port, { serviceName: 'gone-under-upload' }))
    try {
      const { frontendPort } = await client.ready()
      const service = server.registry.services.get('gone-under-upload')
      const f = flow(frontendPort, 'S') // the backend never reads: the upload backs up to the frontend
      await eventually(() => expect(f.progress()).to.be.above(4 * 1024 * 1024), 5000)
      await steady(() => f.progress(), 300)
      await client.close()
      const ending = await Promise.race([f.ended, sleep(5000).then((): Ending => ({ at: Infinity, how: 'open', received: 0 }))])
      expect(ending.how, 'the frontend connection is still open').not.to.equal('open')
      await eventually(() => expect(service?.frontend.connections, 'server-side frontend sockets').to.equal(0), 3000)
      f.socket.destroy()
    } finally {
      await client.close()
      await server.close()
      await backend.close()
    }
  })
})
