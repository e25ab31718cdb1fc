import { expect } from 'chai'
import { once } from 'node:events'
import { WebSocket } from 'ws'
import { AuthorizationError, TunnelClient } from '../../index.js'
import { MUXERS, subprotocolFor, PROTOCOL_VERSION } from '../../protocol/index.js'
import { captureLogger } from '../fixtures/proxies.js'
import { echoServer, exchange, randomPayload, sha256 } from '../fixtures/net.js'
import { hashingBackend, transferBothWays } from '../proxy/helpers.js'
import { TOKEN, loggedClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import type { TunnelClientOptions, TunnelServer } from '../../index.js'
import type { HashingBackend } from '../proxy/helpers.js'

/** The end-to-end layer (inner TLS inside the WebSocket) on a direct connection; through proxies see test/proxy/e2e-inspection. */
describe('end-to-end layer: inner TLS, token inside it', function () {
  this.timeout(60_000)
  let server: TunnelServer
  let backend: HashingBackend
  const clients: TunnelClient[] = []
  const authFailures: string[] = []

  before(async function () {
    backend = await hashingBackend()
    server = await startServer({ handshakeTimeoutMs: 1000 })
    server.on('authFailure', (e) => authFailures.push(e.remoteAddress))
  })
  afterEach(async function () {
    await Promise.all(clients.splice(0).map(async c => await c.close()))
  })
  after(async function () {
    await server?.close()
    await backend?.close()
  })

  const client = (opts: TunnelClientOptions, token = TOKEN): { c: TunnelClient, lines: string[] } => {
    const made = loggedClient(`127.0.0.1:${server.port}`, tunnelData(backend.port, { token }), opts)
    clients.push(made.c)
    return made
  }
  const e2eLine = (lines: string[]): string | undefined => lines.find(l => /end-to-end layer on/.test(l))

  for (const muxer of MUXERS) {
    it(`--e2e always carries data byte-exactly both ways (${muxer})`, async function () {
      const { c, lines } = client({ fingerprint: server.fingerprint, e2e: 'always', muxer })
      const { frontendPort } = await c.ready()
      expect(e2eLine(lines)).to.match(/--e2e always/)
      await transferBothWays(frontendPort, backend)
    })
  }

  it('--e2e always: many concurrent connections stay byte-exact', async function () {
    const echo = await echoServer()
    try {
      const { logger } = captureLogger()
      const c = new TunnelClient(`127.0.0.1:${server.port}`, tunnelData(echo.port), { proxy: 'none', fingerprint: server.fingerprint, e2e: 'always', logger })
      clients.push(c)
      const { frontendPort } = await c.ready()
      const payloads = Array.from({ length: 24 }, () => randomPayload(256 * 1024))
      const answers = await Promise.all(payloads.map(async p => await exchange(frontendPort, p)))
      expect(answers.map(sha256)).to.deep.equal(payloads.map(sha256))
    } finally {
      await echo.close()
    }
  })

  it('auto: off when the pinned fingerprint matches the outer certificate (the common case stays as it was)', async function () {
    const { c, lines } = client({ fingerprint: server.fingerprint })
    const { frontendPort } = await c.ready()
    await transferBothWays(frontendPort, backend)
    expect(e2eLine(lines)).to.equal(undefined)
  })

  it('auto: on with --insecuretls, where the outer certificate is not checked', async function () {
    const { c, lines } = client({ insecureTls: true })
    const { frontendPort } = await c.ready()
    await transferBothWays(frontendPort, backend)
    expect(e2eLine(lines)).to.match(/--insecuretls/)
  })

  it('a wrong token sent inside is refused before registering, as an authorization failure counted against the address', async function () {
    const before = authFailures.length
    const { c } = client({ fingerprint: server.fingerprint, e2e: 'always' }, 'wrong-token-123')
    const err = await c.ready().then(() => undefined, (e: Error) => e)
    expect(err).to.be.instanceOf(AuthorizationError)
    expect(err?.message).to.match(/authorization failed/)
    expect(err?.message).not.to.contain('wrong-token-123')
    expect(authFailures.length).to.be.greaterThan(before)
    expect(server.registry.services.size).to.equal(0)
  })

  it('the inner layer pins the fingerprint too: a wrong pin is refused (the token is not sent)', async function () {
    const before = authFailures.length
    // --e2e always with a pin that matches neither layer: the outer mismatch alone switches the layer on.
    const { c } = client({ fingerprint: 'AA:'.repeat(31) + 'AA' })
    const err = await c.ready().then(() => undefined, (e: Error) => e)
    expect(err?.name).to.equal('TlsVerificationError')
    expect(err?.message).to.match(/certificate fingerprint mismatch: the server certificate inside the end-to-end layer .* is not the pinned one/)
    expect(authFailures.length).to.equal(before)
  })

  it('an upgrade asking for the layer that never completes its inner handshake is dropped after the handshake time', async function () {
    const ws = new WebSocket(`wss://127.0.0.1:${server.port}/tunnel`, subprotocolFor('yamux', PROTOCOL_VERSION, true), { rejectUnauthorized: false })
    await once(ws, 'open')
    const started = Date.now()
    const [code] = await once(ws, 'close') as [number]
    // handshakeTimeoutMs is 1 s; 5x margin for a busy machine.
    expect(Date.now() - started).to.be.lessThan(5000)
    expect(code).to.be.a('number')
  })

  it('garbage instead of the inner TLS closes that connection and nothing else', async function () {
    const { c } = client({ fingerprint: server.fingerprint, e2e: 'always' })
    const { frontendPort } = await c.ready()
    const ws = new WebSocket(`wss://127.0.0.1:${server.port}/tunnel`, subprotocolFor('yamux', PROTOCOL_VERSION, true), { rejectUnauthorized: false })
    await once(ws, 'open')
    ws.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
    await once(ws, 'close')
    await transferBothWays(frontendPort, backend)
  })
})
