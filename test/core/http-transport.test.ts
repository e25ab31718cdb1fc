import { expect } from 'chai'
import { MUXERS } from '../../protocol/index.js'
import { connect } from 'node:net'
import { echoServer, eventually, exchange, freePort, freePortRange, randomPayload, sha256, tcpServer } from '../fixtures/net.js'
import { hashingBackend, transferBothWays } from '../proxy/helpers.js'
import { TOKEN, loggedClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import { api, parseMetrics, sample } from '../endpoints/helpers.js'
import type { TunnelClient, TunnelClientOptions, TunnelServer } from '../../index.js'
import type { HashingBackend } from '../proxy/helpers.js'
import type { TcpServer } from '../fixtures/net.js'
import type { Socket } from 'node:net'

/** The HTTP transport on direct connections; through proxies see test/proxy/http-transport. */
describe('HTTP transport: the muxer over a streaming GET and POSTs', function () {
  this.timeout(60_000)
  let server: TunnelServer
  let backend: HashingBackend
  let echo: TcpServer
  let httpPort: number
  const clients: TunnelClient[] = []

  before(async function () {
    backend = await hashingBackend()
    echo = await echoServer()
    httpPort = await freePort()
    server = await startServer({ httpTunnelPort: await freePort(), httpPort, dynPortCount: 2 })
  })
  afterEach(async function () {
    await Promise.all(clients.splice(0).map(async c => await c.close()))
  })
  after(async function () {
    await server?.close()
    await backend?.close()
    await echo?.close()
  })

  const client = (endpoint: string, opts: TunnelClientOptions, backendPort = backend.port): { c: TunnelClient, lines: string[] } => {
    const made = loggedClient(endpoint, tunnelData(backendPort), opts)
    clients.push(made.c)
    return made
  }

  for (const muxer of MUXERS) {
    for (const e2e of ['never', 'always'] as const) {
      it(`--transport http carries data byte-exactly both ways (${muxer}, e2e ${e2e})`, async function () {
        const { c, lines } = client(`127.0.0.1:${server.port}`, { fingerprint: server.fingerprint, transport: 'http', muxer, e2e })
        const { frontendPort } = await c.ready()
        expect(lines.some(l => /carried by the HTTP transport/.test(l))).to.equal(true)
        await transferBothWays(frontendPort, backend)
        // REST and /metrics say what carries the client.
        const base = `http://127.0.0.1:${httpPort}`
        const [svc] = (await api(base, '/services', { token: TOKEN })).body.services
        expect(svc.sessions[0].connection).to.deep.include({ transport: 'http', e2e: e2e === 'always' })
        const metrics = parseMetrics((await api(base, '/metrics', { token: TOKEN })).text)
        expect(sample(metrics, 'reverselb_client_connections', { transport: 'http', e2e: String(e2e === 'always') })).to.equal(1)
        expect(sample(metrics, 'reverselb_client_connections', { transport: 'websocket', e2e: 'false' })).to.equal(undefined)
      })
    }
  }

  it('many concurrent connections stay byte-exact', async function () {
    const { c } = client(`127.0.0.1:${server.port}`, { fingerprint: server.fingerprint, transport: 'http' }, echo.port)
    const { frontendPort } = await c.ready()
    const payloads = Array.from({ length: 24 }, () => randomPayload(256 * 1024))
    const answers = await Promise.all(payloads.map(async p => await exchange(frontendPort, p)))
    expect(answers.map(sha256)).to.deep.equal(payloads.map(sha256))
  })

  it('a relay that cuts connections in the middle of downloads and uploads: nothing is lost or repeated', async function () {
    // Every connection is cut after 300 KiB toward the client or 1.5 MiB toward the server,
    // wherever that falls (inside a response, inside an upload body).
    let cuts = 0
    const relay = await tcpServer((inbound) => {
      const outbound = connect({ host: '127.0.0.1', port: server.httpTunnelPort ?? 0 })
      const pipeCutting = (from: Socket, to: Socket, limit: number): void => {
        let passed = 0
        from.on('data', (d: Buffer) => {
          if (passed + d.length <= limit) { passed += d.length; to.write(d); return }
          cuts++
          to.end(d.subarray(0, limit - passed))
          from.destroy()
        })
        from.on('close', () => to.destroy())
        from.on('error', () => {})
      }
      pipeCutting(outbound, inbound, 300 * 1024)
      pipeCutting(inbound, outbound, 1536 * 1024)
    })
    try {
      // The plain endpoint: the end-to-end layer's TLS fails on any byte lost or repeated.
      const { c } = client(`http://127.0.0.1:${relay.port}`, { fingerprint: server.fingerprint })
      const { frontendPort } = await c.ready()
      await transferBothWays(frontendPort, backend, 4 * 1024 * 1024)
      expect(cuts).to.be.at.least(4)
      // Closed while the relay still carries its goodbye (else the server waits out its idle time).
      await c.close()
    } finally {
      await relay.close()
    }
  })

  it('reconnects after a server restart and registers the same frontend port again', async function () {
    const apiPort = await freePort()
    const plainPort = await freePort()
    const dynPort = await freePortRange(2)
    const opts = { port: apiPort, httpTunnelPort: plainPort, dynPort, dynPortCount: 2 }
    let own = await startServer(opts)
    try {
      const { c } = client(`http://127.0.0.1:${plainPort}`, { insecureTls: true }, echo.port)
      const { frontendPort } = await c.ready()
      await own.close()
      own = await startServer(opts)
      await eventually(async () => {
        expect(own.registry.services.get('svc')?.port).to.equal(frontendPort)
        expect((await exchange(frontendPort, Buffer.from('back again'))).toString()).to.equal('back again')
      }, 30_000, 200)
    } finally {
      await own.close()
    }
  })

  it('an http:// endpoint uses the plain port with the end-to-end layer, pinned by --fingerprint', async function () {
    const { c, lines } = client(`http://127.0.0.1:${server.httpTunnelPort ?? 0}`, { fingerprint: server.fingerprint })
    const { frontendPort } = await c.ready()
    expect(lines.some(l => /carried by the HTTP transport.*end-to-end layer on: plain http/.test(l))).to.equal(true)
    await transferBothWays(frontendPort, backend)
    // Closing ends the session on the server at once (not after its idle time): the port is free for failover.
    await c.close()
    await eventually(() => expect(server.registry.services.size).to.equal(0), 5000)
  })
})
