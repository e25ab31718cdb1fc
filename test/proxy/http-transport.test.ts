import { once } from 'node:events'
import { connect } from 'node:net'
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls'
import { selfSignedCertificate } from '../../server/certificate.js'
import { rmSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { expect } from 'chai'
import { UpgradeBlockedError } from '../../index.js'
import { makeTestCa, requireTools, startSquid } from '../fixtures/proxies.js'
import { echoServer, eventually, exchange, freePort, randomPayload, sha256, tcpServer } from '../fixtures/net.js'
import { loggedClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import { pacServer } from '../fixtures/pac-server.js'
import { routeConnector } from '../../client/proxy-route.js'
import { hashingBackend, transferBothWays } from './helpers.js'
import type { TunnelClient, TunnelClientOptions, TunnelServer } from '../../index.js'
import type { ProxyProcess, TestCa } from '../fixtures/proxies.js'
import type { TcpServer } from '../fixtures/net.js'
import type { PacServer } from '../fixtures/pac-server.js'
import type { AddressInfo, Socket } from 'node:net'
import type { HashingBackend } from './helpers.js'

/** Lines of squid's access log for the HTTP transport's requests of `method` on `path`. */
const transportLines = (log: string, method: string, path: string): string[] => log.split('\n').filter(l => l.includes(` ${method} `) && l.includes(path))

describe('proxy: the HTTP transport through squid', function () {
  this.timeout(120_000)
  let server: TunnelServer
  let backend: HashingBackend
  let echo: TcpServer
  let ca: TestCa
  const clients: TunnelClient[] = []

  before(async function () {
    requireTools(this, ['squid', 'certgen', 'openssl'])
    ca = makeTestCa()
    server = await startServer({ httpTunnelPort: await freePort(), dynPortCount: 1 })
    backend = await hashingBackend()
    echo = await echoServer()
  })
  afterEach(async function () {
    await Promise.all(clients.splice(0).map(async c => await c.close()))
  })
  after(async function () {
    await server?.close()
    await backend?.close()
    await echo?.close()
    if (ca !== undefined) rmSync(ca.dir, { recursive: true, force: true })
  })

  const client = (endpoint: string, proxy: ProxyProcess, opts: TunnelClientOptions, backendPort = backend.port): { c: TunnelClient, lines: string[] } => {
    const made = loggedClient(endpoint, tunnelData(backendPort), { proxy: proxy.url, ...opts })
    clients.push(made.c)
    return made
  }

  describe('a TLS-inspecting squid that refuses WebSocket upgrades', function () {
    let squid: ProxyProcess
    before(async function () { squid = await startSquid({ sslBump: ca, allowWebSocket: false }) })
    after(async function () { await squid?.close() })
    const tls = (): string => `127.0.0.1:${server.port}`

    it('--transport websocket fails, saying the upgrade was stripped', async function () {
      const { c } = client(tls(), squid, { ca: ca.pem, transport: 'websocket' })
      const err = await c.ready().then(() => undefined, (e: Error) => e)
      expect(err).to.be.instanceOf(UpgradeBlockedError)
      expect(err?.message).to.match(/strips the Upgrade\/Connection headers/)
    })

    it('--transport auto falls back to HTTP by itself, says so, and carries data byte-exactly both ways (10 MB upload)', async function () {
      // Short downloads (keepalive 2 s): squid logs each one when it ends.
      const { c, lines } = client(tls(), squid, { ca: ca.pem, keepaliveMs: 2000 })
      const { frontendPort } = await c.ready()
      expect(lines.some(l => /strips the Upgrade.*falling back to the HTTP transport/.test(l)), 'log says why').to.equal(true)
      expect(lines.some(l => /carried by the HTTP transport.*end-to-end layer on/.test(l)), 'log says which').to.equal(true)
      await transferBothWays(frontendPort, backend, 10 * 1024 * 1024, 90_000)
      // squid decrypted and forwarded plain requests: the download and the uploads.
      await eventually(() => {
        const log = squid.accessLog()
        expect(transportLines(log, 'GET', '/tunnel/http/down')).to.have.length.at.least(1)
        expect(transportLines(log, 'POST', '/tunnel/http/up')).to.have.length.at.least(1)
      }, 30_000, 200)
    })

    it('many concurrent connections and a slow reader stay byte-exact', async function () {
      const { c } = client(tls(), squid, { ca: ca.pem }, echo.port)
      const { frontendPort } = await c.ready()
      const payloads = Array.from({ length: 16 }, () => randomPayload(128 * 1024))
      const slow = slowEcho(frontendPort, randomPayload(1024 * 1024))
      const answers = await Promise.all(payloads.map(async p => await exchange(frontendPort, p)))
      expect(answers.map(sha256)).to.deep.equal(payloads.map(sha256))
      await slow
    })
  })

  it('a TLS middlebox that holds WebSocket upgrades without an answer: auto falls back after a few seconds', async function () {
    // It terminates TLS with a certificate of its own (as an inspecting proxy does), forwards
    // ordinary requests to the server, and never answers an upgrade.
    const cert = await selfSignedCertificate('middlebox')
    const held: Socket[] = []
    const middlebox = createTlsServer({ cert: cert.cert, key: cert.key }, (inbound) => {
      inbound.on('error', () => {})
      inbound.once('data', (head: Buffer) => {
        if (/^upgrade: websocket/im.test(head.toString('latin1'))) { held.push(inbound); return }
        const outbound = tlsConnect({ host: '127.0.0.1', port: server.port, rejectUnauthorized: false }, () => {
          outbound.write(head)
          inbound.pipe(outbound).pipe(inbound)
        })
        outbound.on('error', () => inbound.destroy())
        inbound.on('close', () => outbound.destroy())
      })
    })
    middlebox.listen(0, '127.0.0.1')
    await once(middlebox, 'listening')
    try {
      const port = (middlebox.address() as AddressInfo).port
      // Pinned to the server: the middlebox's certificate does not match, so the end-to-end layer proves the server inside.
      const { c, lines } = loggedClient(`127.0.0.1:${port}`, tunnelData(backend.port), { fingerprint: server.fingerprint })
      clients.push(c)
      const started = Date.now()
      const { frontendPort } = await c.ready()
      expect(lines.some(l => /no answer to the WebSocket upgrade .* within 5000 ms.*falling back to the HTTP transport/.test(l))).to.equal(true)
      // 5 s for the upgrade, then the fallback; 5x margin on the rest.
      expect(Date.now() - started).to.be.below(5000 + 10_000)
      await transferBothWays(frontendPort, backend)
    } finally {
      for (const s of held) s.destroy()
      middlebox.close()
    }
  })

  describe('a squid that allows no CONNECT', function () {
    let squid: ProxyProcess
    before(async function () { squid = await startSquid({ denyConnect: true }) })
    after(async function () { await squid?.close() })

    it('the WebSocket cannot pass (CONNECT refused)', async function () {
      const { c } = client(`127.0.0.1:${server.port}`, squid, { fingerprint: server.fingerprint })
      const err = await c.ready().then(() => undefined, (e: Error) => e)
      expect(err?.message).to.match(/403|refused|denied/i)
    })

    it('-e http://host:httptunnelport carries the tunnel as plain HTTP requests, end-to-end secured', async function () {
      const plain = `http://127.0.0.1:${server.httpTunnelPort ?? 0}`
      const { c, lines } = client(plain, squid, { fingerprint: server.fingerprint, keepaliveMs: 2000 })
      const { frontendPort } = await c.ready()
      expect(lines.some(l => /carried by the HTTP transport.*end-to-end layer on: plain http/.test(l))).to.equal(true)
      await transferBothWays(frontendPort, backend)
      await eventually(() => {
        const log = squid.accessLog()
        expect(transportLines(log, 'GET', `${plain}/tunnel/http/down`)).to.have.length.at.least(1)
        expect(transportLines(log, 'POST', `${plain}/tunnel/http/up`)).to.have.length.at.least(1)
        expect(log).not.to.match(/CONNECT 127\.0\.0\.1:\d+ .*200/)
      }, 30_000, 200)
    })
  })

  describe('plain http:// through squids that allow no CONNECT and want the user authenticated', function () {
    let ntlm: ProxyProcess
    let basic: ProxyProcess
    let pac: PacServer | undefined
    before(async function () {
      requireTools(this, ['ntlmFakeAuth', 'htpasswd', 'ncsaAuth'])
      ntlm = await startSquid({ denyConnect: true, windowsAuth: { ntlm: 'fake' } })
      basic = await startSquid({ denyConnect: true, auth: { user: 'carol', password: 'basicpw' } })
    })
    afterEach(async function () { await pac?.close(); pac = undefined })
    after(async function () { await ntlm?.close(); await basic?.close() })
    const plain = (): string => `http://127.0.0.1:${server.httpTunnelPort ?? 0}`
    /** squid's lines for the transport's requests, each naming the user it authenticated. */
    const userLines = (proxy: ProxyProcess, user: RegExp): string[] => proxy.accessLog().split('\n').filter(l => l.includes(`${plain()}/tunnel/http/`) && user.test(l))

    it('NTLM: authenticates each connection with the proxy once, then carries the tunnel byte-exactly; squid logs the user on the downloads and uploads', async function () {
      const { c, lines } = client(plain(), { ...ntlm, url: `http://CORP%5Cbob:s3cret@127.0.0.1:${ntlm.port}` }, { fingerprint: server.fingerprint, keepaliveMs: 2000 })
      const { frontendPort } = await c.ready()
      await transferBothWays(frontendPort, backend)
      await eventually(() => {
        expect(userLines(ntlm, / GET /).filter(l => / CORP.?\\\\bob.? /.test(l) && l.includes('/tunnel/http/down'))).to.have.length.at.least(1)
        expect(userLines(ntlm, / POST /).filter(l => / CORP.?\\\\bob.? /.test(l) && l.includes('/tunnel/http/up'))).to.have.length.at.least(1)
      }, 30_000, 200)
      expect(ntlm.accessLog()).not.to.match(/ CONNECT /)
      expect(lines.join('\n')).not.to.include('s3cret')
    })

    it('Basic: every request carries the credentials', async function () {
      const { c } = client(plain(), { ...basic, url: `http://carol:basicpw@127.0.0.1:${basic.port}` }, { fingerprint: server.fingerprint, keepaliveMs: 2000 })
      const { frontendPort } = await c.ready()
      await transferBothWays(frontendPort, backend)
      await eventually(() => {
        const ok = userLines(basic, / carol /)
        expect(ok.filter(l => / GET .*\/tunnel\/http\/down/.test(l))).to.have.length.at.least(1)
        expect(ok.filter(l => / POST .*\/tunnel\/http\/up/.test(l))).to.have.length.at.least(1)
      }, 30_000, 200)
      expect(basic.accessLog()).not.to.match(/TCP_DENIED\/407 .*\/tunnel\/http\/(down|up)/)
    })

    it('a wrong password: a clear error naming the user and the scheme, never the password', async function () {
      // (ntlm_fake_auth takes any password: the Basic squid is the one that can refuse.)
      const { c } = client(plain(), { ...basic, url: `http://carol:wrong-pw@127.0.0.1:${basic.port}` }, { fingerprint: server.fingerprint })
      const err = await c.ready().then(() => undefined, (e: Error) => e)
      expect(err?.message).to.match(/proxy 127\.0\.0\.1:\d+ rejected the credentials of user "carol" \(Basic\)/)
      expect(err?.message).not.to.include('wrong-pw')
    })

    it('a PAC file choosing the proxy for http:// URLs routes the plain requests through it', async function () {
      pac = await pacServer(`function FindProxyForURL(url, host) { return url.substring(0, 5) === 'http:' ? 'PROXY 127.0.0.1:${ntlm.port}' : 'DIRECT'; }`)
      const { c, lines } = loggedClient(plain(), tunnelData(backend.port), {
        fingerprint: server.fingerprint,
        keepaliveMs: 2000,
        connect: routeConnector({ pac: pac.url, credentials: { user: 'CORP\\erin', password: 'pw' } })
      })
      clients.push(c)
      const { frontendPort } = await c.ready()
      await transferBothWays(frontendPort, backend)
      expect(lines.join('\n')).to.include(`through proxy 127.0.0.1:${ntlm.port} carried by the HTTP transport`)
      await eventually(() => expect(userLines(ntlm, / CORP.?\\\\erin.? /)).to.have.length.at.least(2), 30_000, 200)
    })
  })

  describe('a squid that cuts responses silent for 5 s (read_timeout)', function () {
    let squid: ProxyProcess
    before(async function () { squid = await startSquid({ denyConnect: true, readTimeoutSec: 5 }) })
    after(async function () { await squid?.close() })

    it('bursts separated by longer silences arrive byte-exactly across the cuts', async function () {
      const bursts = [randomPayload(300 * 1024), randomPayload(300 * 1024), randomPayload(300 * 1024)]
      // A backend that sends each burst after 7 s of silence, then closes.
      const bursty = await tcpServer((socket) => {
        void (async () => {
          for (const b of bursts) { await sleep(7000); if (!socket.destroyed) socket.write(b) }
          socket.end()
        })()
        socket.on('error', () => {})
      })
      try {
        // keepalive 60 s: the server holds downloads longer than squid lets them sit silent.
        const { c } = client(`http://127.0.0.1:${server.httpTunnelPort ?? 0}`, squid, { fingerprint: server.fingerprint, keepaliveMs: 60_000 }, bursty.port)
        const { frontendPort } = await c.ready()
        const got = await exchange(frontendPort, Buffer.alloc(0))
        expect(sha256(got)).to.equal(sha256(Buffer.concat(bursts)))
        // squid cut the silent downloads: several GETs, each ended by its read_timeout.
        expect(transportLines(squid.accessLog(), 'GET', '/tunnel/http/down').length).to.be.at.least(3)
      } finally {
        await bursty.close()
      }
    })
  })
})

/** Sends `payload` to an echo through `port` and reads the answer slowly (64 KiB, then a pause); checks it. */
async function slowEcho (port: number, payload: Buffer): Promise<void> {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  await once(socket, 'connect')
  socket.end(payload)
  const chunks: Buffer[] = []
  let got = 0
  const deadline = Date.now() + 60_000
  for await (const chunk of socket) {
    chunks.push(chunk as Buffer)
    got += (chunk as Buffer).length
    if (got % (64 * 1024) < (chunk as Buffer).length) await sleep(50)
    if (Date.now() > deadline) throw new Error('slow reader timed out')
  }
  expect(sha256(Buffer.concat(chunks))).to.equal(sha256(payload))
}
