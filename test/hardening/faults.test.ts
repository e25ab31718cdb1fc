import { expect } from 'chai'
import { once } from 'node:events'
import { connect } from 'node:net'
import { procStats, startServerProc, startTunnelProc, writeCertificate } from '../../soak/cluster.js'
import { MUXERS } from '../../protocol/index.js'
import { echoServer, eventually, freePort, freePortRange, randomPayload, sha256, tcpServer } from '../fixtures/net.js'
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
 * Connects, sends `first`, then keeps reading (downloads) or writing (uploads, bounded) until the
 * far end closes the connection.
 */
function transfer (port: number, direction: 'download' | 'upload', first: Buffer): { socket: Socket, progress: () => number, ended: Promise<Ending> } {
  const socket = connect({ port, host: '127.0.0.1' })
  let received = 0
  let sent = 0
  let how: Ending['how'] = 'open'
  socket.on('data', (c: Buffer) => { received += c.length })
  socket.on('end', () => { how = 'fin' })
  socket.on('error', () => { how = 'reset' })
  if (direction === 'upload') {
    const chunk = seededBytes(5, 64 * 1024)
    const pump = (): void => {
      while (!socket.destroyed && sent < 2 * 1024 * 1024 * 1024) {
        sent += chunk.length
        if (!socket.write(chunk)) { socket.once('drain', pump); return }
      }
    }
    socket.once('connect', () => { socket.write(first); pump() })
  } else {
    socket.once('connect', () => socket.write(first))
  }
  const ended = new Promise<Ending>(resolve => socket.once('close', () => resolve({ at: Date.now(), how, received })))
  return { socket, progress: () => direction === 'download' ? received : sent, ended }
}

/** A backend that streams endless data to downloaders and swallows uploads; counts what it got. */
async function streamingBackend (): Promise<TcpServer & { got: () => number }> {
  let got = 0
  const chunk = seededBytes(6, 64 * 1024)
  const server = await tcpServer((s) => {
    s.on('data', (c: Buffer) => { got += c.length })
    let sent = 0
    const pump = (): void => {
      while (!s.destroyed && s.writable && sent < 2 * 1024 * 1024 * 1024) {
        sent += chunk.length
        if (!s.write(chunk)) { s.once('drain', pump); return }
      }
    }
    // The first byte says what this connection is: 'D' downloads, anything else uploads.
    s.once('data', (c: Buffer) => { if (c[0] === 0x44) pump() })
  })
  return Object.assign(server, { got: () => got })
}

async function byteExact (port: number, n = 3, size = 1024 * 1024): Promise<void> {
  await Promise.all(Array.from({ length: n }, async () => {
    const payload = randomPayload(size)
    expect(sha256(await exchangeWithTimeout(port, payload, 15_000))).to.equal(sha256(payload))
  }))
}

describe('faults: kill -9 of a tunnel client mid-transfer', function () {
  this.timeout(60_000)
  let server: TunnelServer
  let backend: TcpServer & { got: () => number }
  let echo: TcpServer
  const procs: CliProc[] = []

  before(async function () {
    server = await startServer()
    backend = await streamingBackend()
    echo = await echoServer()
  })
  after(async function () {
    await Promise.all(procs.map(async p => await p.kill()))
    await server.close()
    await backend.close()
    await echo.close()
  })

  /** Starts a CLI tunnel, puts 3 downloads and 3 uploads in flight, then kills it with SIGKILL. */
  async function killMidTransfer (muxer: MuxerName): Promise<{ endings: Ending[], killedAt: number, frontendPort: number }> {
    const frontendPort = await freePort()
    const tunnel = await startTunnelProc({ token: TOKEN, apiPort: server.port, frontendPort, backendPort: backend.port, serviceName: `kill-${muxer}`, fingerprint: server.fingerprint, muxer })
    procs.push(tunnel)
    const flows = [
      ...Array.from({ length: 3 }, () => transfer(frontendPort, 'download', Buffer.from('D'))),
      ...Array.from({ length: 3 }, () => transfer(frontendPort, 'upload', Buffer.from('U')))
    ]
    try {
      // Every connection has moved at least 1 MiB: they are mid-transfer.
      await eventually(() => { for (const f of flows) expect(f.progress()).to.be.above(1024 * 1024) }, 15_000)
      const killedAt = Date.now()
      await tunnel.kill('SIGKILL')
      const endings = await Promise.all(flows.map(async f => await Promise.race([
        f.ended,
        sleep(10_000).then((): Ending => ({ at: Infinity, how: 'open', received: 0 }))
      ])))
      return { endings, killedAt, frontendPort }
    } finally {
      for (const f of flows) f.socket.destroy()
    }
  }

  for (const muxer of MUXERS) {
    it(`frontend peers see a prompt close, and the service comes back when the client restarts (${muxer})`, async function () {
      const { endings, killedAt, frontendPort } = await killMidTransfer(muxer)
      for (const e of endings) {
        expect(e.how, 'a frontend connection stayed open after its tunnel client died').not.to.equal('open')
        expect(e.at - killedAt).to.be.below(2000)
      }
      // The server dropped the session; the port closes with its last session...
      await eventually(() => expect(server.registry.services.has(`kill-${muxer}`)).to.equal(false), 5000)
      // ...and a restarted client gets it back and carries data byte-exact.
      const again = await startTunnelProc({ token: TOKEN, apiPort: server.port, frontendPort, backendPort: echo.port, serviceName: `kill-${muxer}`, fingerprint: server.fingerprint, muxer })
      procs.push(again)
      await byteExact(frontendPort)
      await again.kill('SIGTERM')
    })
  }

  // BUG (protocol/relay.ts with the libp2p muxers): when the tunnel connection dies (client killed,
  // network gone), the muxer closes every stream *without* an error (AbstractStreamMuxer ignores the
  // transport's error and calls stream.onTransportClosed()), so relay() sees a clean 'end' and sends
  // the frontend peer a FIN: a download cut in the middle looks complete to it (silent truncation).
  // The same happens to the backend when the server dies. Fix in relay(): a stream that ends without
  // the remote having closed its write side (no 'remoteCloseWrite' before 'end'/'close') was cut, so
  // fail() it (socket.resetAndDestroy()) instead of socket.end().
  it.skip('a transfer cut by a dead tunnel client ends with a reset, never with a clean FIN (silent truncation)', async function () {
    const { endings } = await killMidTransfer('yamux')
    expect(endings.map(e => e.how)).to.deep.equal(Array(6).fill('reset'))
  })
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
    await Promise.all(procs.map(async p => await p.kill()))
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
    await once(inFlight, 'connect')
    await server.kill('SIGKILL')
    await Promise.race([once(inFlight, 'close'), sleep(2000).then(() => { throw new Error('in-flight connection not closed') })])

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
    it(`a backend that accepts but never reads: the writer is held back, memory stays bounded${muxer === 'yamux' ? ', other connections flow' : ''} (${muxer})`, async function () {
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
        await sleep(300)
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
          await Promise.race([once(writer, 'drain'), sleep(250)])
        }
        const stalledAt = written
        await sleep(1000)
        const grown = { server: procStats(server.pid).rss - base.server, tunnel: procStats(tunnel.pid).rss - base.tunnel }
        // Bounded by socket buffers and one stream window (yamux, 4 MiB) or the paused WebSocket (mplex).
        expect(stalledAt, `writer got ${stalledAt} bytes out`).to.be.below(48 * 1024 * 1024)
        expect(writer.writableLength, 'bytes held in the writer itself').to.be.below(64 * 1024 * 1024)
        expect(grown.server, 'server RSS growth').to.be.below(64 * 1024 * 1024)
        expect(grown.tunnel, 'tunnel client RSS growth').to.be.below(64 * 1024 * 1024)
        if (muxer === 'yamux') {
          // Per-stream flow control: the stalled stream does not hold the others back.
          await byteExact(frontendPort, 4, 256 * 1024)
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
        await Promise.all(procs.map(async p => await p.kill()))
        await backend.close()
        cert.remove()
      }
    })
  }

  it('a backend that resets mid-transfer: that frontend sees a reset promptly, concurrent transfers stay byte-exact', async function () {
    const server = await startServer()
    let resetAt: number[] = []
    // 'R' + n: read n bytes of upload then reset; 'W' + n: send n bytes then reset; else echo.
    const backend = await tcpServer((s) => {
      s.once('data', (c: Buffer) => {
        const n = c.length > 1 ? c.readUInt32BE(1) : 0
        if (c[0] === 0x52) {
          let got = c.length
          s.on('data', (d: Buffer) => { got += d.length; if (got >= n && !s.destroyed) { resetAt.push(Date.now()); s.resetAndDestroy() } })
        } else if (c[0] === 0x57) {
          s.write(seededBytes(4, n), () => { resetAt.push(Date.now()); s.resetAndDestroy() })
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
        const victims = Array.from({ length: 3 }, () => transfer(frontendPort, kind === 'R' ? 'upload' : 'download', header(kind, 2 * 1024 * 1024)))
        const bystanders = byteExact(frontendPort, 6, 512 * 1024)
        const endings = await Promise.all(victims.map(async v => await Promise.race([v.ended, sleep(10_000).then((): Ending => ({ at: Infinity, how: 'open', received: 0 }))])))
        await bystanders
        expect(resetAt).to.have.length(3)
        for (const e of endings) {
          expect(e.how, `${kind}: the backend's reset must reach the frontend as a reset`).to.equal('reset')
          expect(e.at - Math.max(...resetAt)).to.be.below(2000)
          if (kind === 'W') expect(e.received).to.be.at.most(2 * 1024 * 1024)
        }
      }
    } finally {
      await client.close()
      await server.close()
      await backend.close()
    }
  })
})
