import { expect } from 'chai'
import { once } from 'node:events'
import { connect } from 'node:net'
import { echoServer, eventually, exchange, freePort, freePortRange, randomPayload, tcpServer } from '../fixtures/net.js'
import { TOKEN, startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import { api, httpsGetPinned, parseMetrics, portIsClosed, sample } from './helpers.js'
import type { TunnelClient, TunnelServer } from '../../index.js'
import type { TcpServer } from '../fixtures/net.js'

const SERVICE_KEYS = ['name', 'frontend', 'instances', 'activeConnections', 'totalConnections', 'bytesIn', 'bytesOut', 'sessions']
const SESSION_KEYS = ['id', 'instance', 'clientAddress', 'muxer', 'connectedSince', 'closing', 'activeConnections', 'totalConnections', 'bytesIn', 'bytesOut', 'target', 'connection']

describe('endpoints: REST API', function () {
  this.timeout(30_000)
  let backend: TcpServer
  let server: TunnelServer
  let base: string
  const clients: TunnelClient[] = []

  before(async function () {
    backend = await echoServer()
    const httpPort = await freePort()
    // This suite fails authorization on purpose more often than the default rate limit allows.
    server = await startServer({ httpPort, dynPort: await freePortRange(3), dynPortCount: 3, limits: { authFailuresPerWindow: 1000 } })
    base = `http://127.0.0.1:${httpPort}`
  })
  afterEach(async function () {
    await Promise.all(clients.splice(0).map(async c => await c.close()))
    await eventually(() => expect(server.registry.services.size).to.equal(0))
  })
  after(async function () {
    await server.close()
    await backend.close()
  })

  it('serves /healthz and the dashboard shell without a token, and nothing else', async function () {
    const health = await api(base, '/healthz')
    expect(health.status).to.equal(200)
    expect(health.body).to.deep.equal({ status: 'ok' })
    const page = await api(base, '/')
    expect(page.status).to.equal(200)
    expect(page.headers.get('content-type')).to.match(/^text\/html/)
    expect(page.text).to.contain('<title>reverselb dashboard</title>')
    expect(page.headers.get('content-security-policy')).to.match(/script-src 'sha256-/)

    const protectedRoutes: Array<[string, string]> = [
      ['GET', '/help'], ['GET', '/services'], ['GET', '/services/x'], ['GET', '/events'], ['GET', '/metrics'],
      ['DELETE', '/services/x/sessions/y']
    ]
    for (const [method, path] of protectedRoutes) {
      for (const token of [undefined, 'not-the-token']) {
        const res = await api(base, path, { method, token })
        expect(res.status, `${method} ${path} with token ${String(token)}`).to.equal(401)
        expect(res.headers.get('www-authenticate')).to.match(/^Bearer/)
        expect(res.body.error).to.be.a('string')
      }
    }
    const metrics = parseMetrics((await api(base, '/metrics', { token: TOKEN })).text)
    expect(sample(metrics, 'reverselb_auth_failures_total', { endpoint: 'http' })).to.equal(protectedRoutes.length * 2)
  })

  it('lists its routes on /help and answers 404/405 as JSON', async function () {
    const help = await api(base, '/help', { token: TOKEN })
    expect(help.status).to.equal(200)
    const routes = (help.body.routes as Array<{ method: string, path: string, auth: boolean }>).map(r => `${r.method} ${r.path} ${String(r.auth)}`)
    expect(routes).to.include.members([
      'GET / false', 'GET /healthz false', 'GET /help true', 'GET /services true', 'GET /services/:name true',
      'DELETE /services/:name/sessions/:id true', 'GET /events true', 'GET /metrics true'
    ])
    const missing = await api(base, '/nothing-here', { token: TOKEN })
    expect(missing.status).to.equal(404)
    expect(missing.body.error).to.match(/\/help/)
    const wrongMethod = await api(base, '/services', { method: 'POST', token: TOKEN })
    expect(wrongMethod.status).to.equal(405)
    expect(wrongMethod.headers.get('allow')).to.equal('GET, HEAD')
    const unknown = await api(base, '/services/no-such-service', { token: TOKEN })
    expect(unknown.status).to.equal(404)
    expect(unknown.body).to.deep.equal({ error: 'no service named "no-such-service"' })
  })

  it('describes every service and session with the documented shape and counters', async function () {
    const a = startClient(server, tunnelData(backend.port, { serviceName: 'alpha', backendAcceptBacklog: 2 }))
    const b = startClient(server, tunnelData(backend.port, { serviceName: 'beta/with slash' }))
    clients.push(a, b)
    const { frontendPort: alphaPort } = await a.ready()
    const { frontendPort: betaPort } = await b.ready()
    await eventually(() => expect(a.connectedSessions).to.equal(2))
    const payload = randomPayload(1500)
    expect((await exchange(alphaPort, payload)).equals(payload)).to.equal(true)

    const before = Date.now()
    const res = await eventually(async () => {
      const r = await api(base, '/services', { token: TOKEN })
      expect(r.body.services[0].bytesOut).to.equal(1500)
      expect(r.body.services[0].sessions.reduce((n: number, s: { bytesOut: number }) => n + s.bytesOut, 0)).to.equal(1500)
      return r
    })
    expect(res.status).to.equal(200)
    expect(res.headers.get('content-type')).to.match(/^application\/json/)
    expect(res.text).not.to.contain(TOKEN)
    expect(Date.parse(res.body.time)).to.be.closeTo(before, 5000)
    const [alpha, beta] = res.body.services
    expect(Object.keys(alpha)).to.have.members(SERVICE_KEYS)
    expect(alpha).to.deep.include({
      name: 'alpha',
      frontend: { address: '127.0.0.1', port: alphaPort },
      instances: [{ name: '', sessions: 2 }],
      activeConnections: 0,
      totalConnections: 1,
      bytesIn: 1500,
      bytesOut: 1500
    })
    expect(alpha.sessions).to.have.length(2)
    for (const s of alpha.sessions) {
      expect(Object.keys(s)).to.have.members(SESSION_KEYS)
      expect(s.id).to.match(/^[0-9a-f-]{36}$/)
      expect(s).to.deep.include({ instance: '', clientAddress: '127.0.0.1', muxer: 'yamux', closing: false, activeConnections: 0, target: { port: backend.port, addresses: ['127.0.0.1'] } })
      expect(Date.parse(s.connectedSince)).to.be.within(before - 20_000, Date.now())
      expect(s.connection.id).to.match(/^[0-9a-f-]{36}$/)
      expect(s.connection.services).to.deep.equal(['alpha'])
      expect(s.connection).to.deep.include({ transport: 'websocket', e2e: false })
    }
    // The one connection went to exactly one of the two sessions.
    expect(alpha.sessions.map((s: { totalConnections: number }) => s.totalConnections).sort()).to.deep.equal([0, 1])
    expect(alpha.sessions.map((s: { bytesIn: number }) => s.bytesIn).sort((x: number, y: number) => x - y)).to.deep.equal([0, 1500])
    expect(beta).to.deep.include({ name: 'beta/with slash', frontend: { address: '127.0.0.1', port: betaPort }, totalConnections: 0, bytesIn: 0 })

    // One service by name (percent-encoded: names may hold '/').
    const one = await api(base, `/services/${encodeURIComponent('beta/with slash')}`, { token: TOKEN })
    expect(one.status).to.equal(200)
    expect(one.body.name).to.equal('beta/with slash')
    expect(one.body.sessions).to.have.length(1)
  })

  it('counts the bytes of a connection that is still open', async function () {
    const c = startClient(server, tunnelData(backend.port, { serviceName: 'live' }))
    clients.push(c)
    const { frontendPort } = await c.ready()
    const socket = connect({ port: frontendPort, host: '127.0.0.1' })
    await once(socket, 'connect')
    let echoed = 0
    socket.on('data', (chunk: Buffer) => { echoed += chunk.length })
    socket.write(randomPayload(5000))
    await eventually(() => expect(echoed).to.equal(5000))
    // Not closed yet: the relay has not reported its totals, the live counters already show them.
    const live = await api(base, '/services/live', { token: TOKEN })
    expect(live.body).to.deep.include({ activeConnections: 1, totalConnections: 1, bytesIn: 5000, bytesOut: 5000 })
    expect(live.body.sessions[0]).to.deep.include({ activeConnections: 1, bytesIn: 5000, bytesOut: 5000 })
    socket.end()
    await once(socket, 'close')
    // After the close the session's own counters take over: no double counting.
    await eventually(async () => {
      const after = await api(base, '/services/live', { token: TOKEN })
      expect(after.body).to.deep.include({ activeConnections: 0, bytesIn: 5000, bytesOut: 5000 })
      expect(after.body.sessions[0]).to.deep.include({ activeConnections: 0, bytesIn: 5000, bytesOut: 5000 })
    })
  })

  it('DELETE /services/:name/sessions/:id disconnects exactly that client session', async function () {
    const c = startClient(server, tunnelData(backend.port, { serviceName: 'gamma', backendAcceptBacklog: 2 }))
    clients.push(c)
    await c.ready()
    await eventually(() => expect(c.connectedSessions).to.equal(2))
    const listed = (await api(base, '/services/gamma', { token: TOKEN })).body.sessions.map((s: { id: string }) => s.id) as string[]
    expect(listed).to.have.length(2)
    const [victim, survivor] = listed
    const disconnected = new Promise<string>(resolve => c.on('disconnected', (r: { id: string }) => resolve(r.id)))

    const res = await api(base, `/services/gamma/sessions/${victim}`, { method: 'DELETE', token: TOKEN })
    expect(res.status).to.equal(202)
    expect(res.body).to.deep.equal({ service: 'gamma', session: victim, status: 'closing' })
    expect(await disconnected).to.equal(victim)
    await eventually(async () => {
      const ids = (await api(base, '/services/gamma', { token: TOKEN })).body.sessions.map((s: { id: string }) => s.id)
      expect(ids).not.to.include(victim)
      expect(ids).to.include(survivor)
    })
    expect((await api(base, `/services/gamma/sessions/${victim}`, { method: 'DELETE', token: TOKEN })).status).to.equal(404)
    expect((await api(base, `/services/nope/sessions/${survivor}`, { method: 'DELETE', token: TOKEN })).status).to.equal(404)
  })

  it('streams Server-Sent Events: a snapshot at once, lifecycle events and fresh snapshots as tunnels come and go', async function () {
    const ctrl = new AbortController()
    const res = await fetch(`${base}/events`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: ctrl.signal })
    try {
      expect(res.status).to.equal(200)
      expect(res.headers.get('content-type')).to.match(/^text\/event-stream/)
      const blocks: Array<{ event: string, data: any }> = []
      const reading = (async () => {
        let buf = ''
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += Buffer.from(chunk).toString('utf8')
          for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
            const block = buf.slice(0, i)
            buf = buf.slice(i + 2)
            const event = /^event: (.*)$/m.exec(block)?.[1]
            const data = /^data: (.*)$/m.exec(block)?.[1]
            if (event !== undefined && data !== undefined) blocks.push({ event, data: JSON.parse(data) })
          }
        }
      })().catch(() => {})
      await eventually(() => expect(blocks.filter(b => b.event === 'snapshot')).to.have.length.at.least(1))
      const first = blocks.find(b => b.event === 'snapshot')
      expect(first?.data.services).to.be.an('array')

      const c = startClient(server, tunnelData(backend.port, { serviceName: 'streamed' }))
      clients.push(c)
      const { id } = await c.ready()
      await eventually(() => {
        const join = blocks.find(b => b.event === 'session.join' && b.data.service.name === 'streamed')
        expect(join?.data.session.id).to.equal(id)
        const snap = blocks.filter(b => b.event === 'snapshot').at(-1)
        expect(snap?.data.services.map((s: { name: string }) => s.name)).to.include('streamed')
      })
      expect(blocks.map(b => b.event)).to.include('service.up')
      await c.close()
      await eventually(() => {
        expect(blocks.map(b => b.event)).to.include.members(['session.leave', 'service.down'])
        const snap = blocks.filter(b => b.event === 'snapshot').at(-1)
        expect(snap?.data.services.map((s: { name: string }) => s.name)).not.to.include('streamed')
      })
      // Per-connection events are not streamed (they show in the counters), and no token leaks.
      expect(blocks.map(b => b.event)).not.to.include('connection.open')
      expect(JSON.stringify(blocks)).not.to.contain(TOKEN)
      ctrl.abort()
      await reading
    } finally {
      ctrl.abort()
    }
  })

  it('refuses tokens restricted to some services (403) and rate-limits failed authorizations (429)', async function () {
    const httpPort = await freePort()
    const limited = await startServer({ httpPort, token: [TOKEN, { token: 'web-team-token', services: ['web-*'] }], limits: { authFailuresPerWindow: 3 } })
    const at = `http://127.0.0.1:${httpPort}`
    try {
      const forbidden = await api(at, '/services', { token: 'web-team-token' })
      expect(forbidden.status).to.equal(403)
      expect(forbidden.body.error).to.match(/token without a service list/)
      expect((await api(at, '/services', { token: TOKEN })).status).to.equal(200)
      for (let i = 0; i < 3; i++) expect((await api(at, '/services', { token: `guess-${i}` })).status).to.equal(401)
      // Over the limit the address is refused before its token is looked at, even a good one.
      const blocked = await api(at, '/services', { token: TOKEN })
      expect(blocked.status).to.equal(429)
      expect(Number(blocked.headers.get('retry-after'))).to.be.within(1, 60)
      expect((await api(at, '/healthz')).status).to.equal(200)
    } finally {
      await limited.close()
    }
  })

  it('serves HTTPS with the server certificate when httpsTls is set', async function () {
    const httpPort = await freePort()
    const tlsServer = await startServer({ httpPort, httpsTls: true })
    try {
      const res = await httpsGetPinned(httpPort, '/services', tlsServer.fingerprint, TOKEN)
      expect(res.status).to.equal(200)
      expect(JSON.parse(res.body).services).to.deep.equal([])
      // Plain HTTP is not served on that port.
      const plain = await api(`http://127.0.0.1:${httpPort}`, '/healthz').then(r => r.status, () => 'refused')
      expect(plain).not.to.equal(200)
    } finally {
      await tlsServer.close()
    }
    expect(await portIsClosed(httpPort)).to.equal(true)
  })

  it('fails listen() and releases the tunnel port when the HTTP port is taken', async function () {
    const squatter = await tcpServer(s => s.destroy())
    const apiPort = await freePort()
    try {
      let error: Error | undefined
      await startServer({ port: apiPort, httpPort: squatter.port }).catch((err: Error) => { error = err })
      expect(error?.message).to.match(new RegExp(`cannot listen on HTTP port ${squatter.port}: EADDRINUSE`))
      expect(await portIsClosed(apiPort)).to.equal(true)
    } finally {
      await squatter.close()
    }
  })
})
