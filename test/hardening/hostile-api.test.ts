import { expect } from 'chai'
import { once } from 'node:events'
import { connect } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { echoServer, eventually } from '../fixtures/net.js'
import { TOKEN, startServer } from '../fixtures/tunnel.js'
import { assertStillServes, seededBytes, socketClosedWithin } from './helpers.js'
import type { TunnelServer } from '../../index.js'
import type { TcpServer } from '../fixtures/net.js'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'

const HANDSHAKE_MS = 1000

async function tcp (port: number): Promise<Socket> {
  const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  s.on('error', () => {})
  await once(s, 'connect')
  return s
}

async function tls (port: number): Promise<TLSSocket> {
  const s = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, servername: 'localhost' })
  s.on('error', () => {})
  await once(s, 'secureConnect')
  return s
}

const collect = (s: Socket): { text: () => string } => {
  const chunks: Buffer[] = []
  s.on('data', (c: Buffer) => chunks.push(c))
  return { text: () => Buffer.concat(chunks).toString('latin1') }
}

/** `count` TLS connections, each with the first lines of an upgrade request that never ends. */
async function slowloris (port: number, count: number): Promise<TLSSocket[]> {
  const sockets: TLSSocket[] = []
  try {
    // In batches: TLS handshakes are CPU work for both ends.
    for (let i = 0; i < count; i += 20) {
      const batch = await Promise.all(Array.from({ length: Math.min(20, count - i) }, async () => await tls(port)))
      for (const s of batch) s.write('GET /tunnel HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n')
      sockets.push(...batch)
    }
  } catch (err) {
    for (const s of sockets) s.destroy()
    throw err
  }
  return sockets
}

describe('hostile input on the API port', function () {
  this.timeout(60_000)
  let server: TunnelServer
  let backend: TcpServer
  let n = 0

  before(async function () {
    backend = await echoServer()
    server = await startServer({ dynPortCount: 4, handshakeTimeoutMs: HANDSHAKE_MS })
  })
  after(async function () {
    await server.close()
    await backend.close()
  })
  afterEach(async function () {
    await assertStillServes(server, backend.port, `api-after-${++n}`)
  })

  it('plain HTTP on the TLS port: closed promptly', async function () {
    const s = await tcp(server.port)
    s.write(`GET /tunnel HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`)
    expect(await socketClosedWithin(s, 2000)).to.be.below(1000)
  })

  it('random bytes instead of a TLS ClientHello: closed promptly', async function () {
    for (let seed = 1; seed <= 5; seed++) {
      const s = await tcp(server.port)
      s.write(seededBytes(seed, 500 * seed))
      await socketClosedWithin(s, 2000)
    }
    // A TLS record header announcing a record that never comes: the TLS handshake timeout ends it.
    const s = await tcp(server.port)
    s.write(Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, 0x01]))
    expect(await socketClosedWithin(s, HANDSHAKE_MS * 6)).to.be.below(HANDSHAKE_MS * 5)
  })

  it('random bytes after a completed TLS handshake: answered 400 and closed', async function () {
    for (let seed = 1; seed <= 3; seed++) {
      const s = await tls(server.port)
      const got = collect(s)
      s.write(Buffer.concat([seededBytes(seed, 300), Buffer.from('\r\n\r\n')]))
      await socketClosedWithin(s, 2000)
      expect(got.text()).to.match(/^(HTTP\/1\.1 400 Bad Request|$)/)
    }
  })

  it('a valid upgrade followed by garbage instead of WebSocket frames: closed', async function () {
    const s = await tls(server.port)
    const got = collect(s)
    s.write('GET /tunnel HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${Buffer.alloc(16, 1).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
      `Sec-WebSocket-Protocol: reverselb.v1.yamux\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`)
    await eventually(() => expect(got.text()).to.match(/^HTTP\/1\.1 101 /), 3000)
    // Unmasked client frame with reserved bits and opcode 0xB: a protocol error for any WebSocket server.
    s.write(Buffer.concat([Buffer.from([0xff, 0x7f]), seededBytes(9, 200)]))
    await socketClosedWithin(s, 2000)
  })

  it('half-open connections: TCP without TLS is closed by the TLS handshake timeout, a FIN after TLS at once', async function () {
    const tcpOnly = await tcp(server.port)
    const finAfterTls = await tls(server.port)
    finAfterTls.end()
    const finTcp = await tcp(server.port)
    finTcp.end()
    const times = await Promise.all([tcpOnly, finAfterTls, finTcp].map(async s => await socketClosedWithin(s, HANDSHAKE_MS * 6)))
    expect(times[0]).to.be.below(HANDSHAKE_MS * 5)
    expect(times[1]).to.be.below(1000)
    expect(times[2]).to.be.below(1000)
  })

  it('slowloris: 200 sockets that never finish the upgrade do not stop service', async function () {
    const sockets = await slowloris(server.port, 200)
    try {
      await assertStillServes(server, backend.port, 'despite-slowloris')
      expect(sockets.filter(s => !s.destroyed).length).to.be.greaterThan(0)
    } finally {
      for (const s of sockets) s.destroy()
    }
  })

  it('slowloris: the sockets are closed by the handshake timeout (and an idle TLS connection too)', async function () {
    const sockets = await slowloris(server.port, 200)
    sockets.push(await tls(server.port)) // TLS done, not one byte of HTTP
    const opened = Date.now()
    // Trickle one more header byte on each every 300 ms, as a slowloris does (bounded by the test).
    const trickle = setInterval(() => { for (const s of sockets) if (!s.destroyed) s.write('X') }, 300)
    try {
      const times = await Promise.all(sockets.map(async s => await socketClosedWithin(s, 35_000).then(ms => ms, () => Infinity)))
      expect(times.filter(t => t === Infinity), 'sockets never closed').to.have.length(0)
      expect(Date.now() - opened, `last one closed after ${Math.max(...times)} ms`).to.be.below(HANDSHAKE_MS * 5)
    } finally {
      clearInterval(trickle)
      for (const s of sockets) s.destroy()
    }
  })

  it('a flood of 300 TCP connections that never start TLS is closed by the TLS handshake timeout', async function () {
    const sockets = await Promise.all(Array.from({ length: 300 }, async () => await tcp(server.port)))
    try {
      const opened = Date.now()
      await assertStillServes(server, backend.port, 'despite-tcp-flood')
      await Promise.all(sockets.map(async s => await socketClosedWithin(s, HANDSHAKE_MS + 5000)))
      expect(Date.now() - opened).to.be.below(HANDSHAKE_MS + 5000)
    } finally {
      for (const s of sockets) s.destroy()
    }
  })
})
