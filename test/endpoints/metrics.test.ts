import { expect } from 'chai'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { connect } from 'node:net'
import { eventually, exchange, freePort, freePortRange, randomPayload, tcpServer } from '../fixtures/net.js'
import { TOKEN, startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import { api, parseMetrics, sample } from './helpers.js'
import type { TunnelServer } from '../../index.js'
import type { TcpServer } from '../fixtures/net.js'

/** Reads everything, then answers with the SHA-256 (64 hex bytes) of it: in and out differ. */
async function hashServer (): Promise<TcpServer> {
  return await tcpServer((socket) => {
    const h = createHash('sha256')
    socket.on('data', (c: Buffer) => h.update(c))
    socket.on('end', () => socket.end(h.digest('hex')))
  })
}

async function scrape (base: string): Promise<Map<string, number>> {
  const res = await api(base, '/metrics', { token: TOKEN })
  expect(res.status).to.equal(200)
  expect(res.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/)
  return parseMetrics(res.text)
}

describe('endpoints: Prometheus /metrics', function () {
  this.timeout(30_000)
  let backend: TcpServer
  let server: TunnelServer
  let base: string

  before(async function () {
    backend = await hashServer()
    const httpPort = await freePort()
    server = await startServer({ httpPort, dynPort: await freePortRange(2), dynPortCount: 2 })
    base = `http://127.0.0.1:${httpPort}`
  })
  after(async function () {
    await server.close()
    await backend.close()
  })

  it('counts sessions, services, connections and bytes that actually went through a tunnel', async function () {
    const empty = await scrape(base)
    expect(sample(empty, 'reverselb_services')).to.equal(0)
    expect(sample(empty, 'reverselb_registration_duration_seconds_count')).to.equal(0)

    const client = startClient(server, tunnelData(backend.port, { serviceName: 'm1', backendAcceptBacklog: 2 }))
    try {
      const { frontendPort } = await client.ready()
      await eventually(() => expect(client.connectedSessions).to.equal(2))
      const sizes = [1, 1000, 65_536, 300_000]
      for (const n of sizes) {
        const payload = randomPayload(n)
        const answer = await exchange(frontendPort, payload)
        expect(answer.toString()).to.equal(createHash('sha256').update(payload).digest('hex'))
      }
      const sent = sizes.reduce((a, b) => a + b, 0)
      const m = await eventually(async () => {
        const s = await scrape(base)
        expect(sample(s, 'reverselb_frontend_bytes_total', { service: 'm1', direction: 'in' })).to.equal(sent)
        return s
      })
      expect(sample(m, 'reverselb_frontend_bytes_total', { service: 'm1', direction: 'out' })).to.equal(64 * sizes.length)
      expect(sample(m, 'reverselb_frontend_connections_total', { service: 'm1' })).to.equal(sizes.length)
      expect(sample(m, 'reverselb_frontend_connections_active', { service: 'm1' })).to.equal(0)
      expect(sample(m, 'reverselb_services')).to.equal(1)
      expect(sample(m, 'reverselb_sessions', { service: 'm1' })).to.equal(2)
      expect(sample(m, 'reverselb_client_connections', { transport: 'websocket', e2e: 'false' })).to.equal(2)
      expect(sample(m, 'reverselb_sessions_opened_total')).to.equal(2)
      expect(sample(m, 'reverselb_registration_duration_seconds_count')).to.equal(2)
      expect(sample(m, 'reverselb_registration_duration_seconds_bucket', { le: '+Inf' })).to.equal(2)
      expect(sample(m, 'reverselb_registration_duration_seconds_sum')).to.be.within(0, 20)
      for (const q of ['0.5', '0.9', '0.99', '1']) {
        const lag = sample(m, 'reverselb_event_loop_lag_seconds', { quantile: q })
        expect(lag, `lag quantile ${q}`).to.be.a('number').and.to.be.within(0, 10)
      }

      // An open connection is active until it closes.
      const open = connect({ port: frontendPort, host: '127.0.0.1' })
      await once(open, 'connect')
      open.resume()
      open.write('x')
      await eventually(async () => expect(sample(await scrape(base), 'reverselb_frontend_connections_active', { service: 'm1' })).to.equal(1))
      open.end()
      await once(open, 'close')
      await eventually(async () => expect(sample(await scrape(base), 'reverselb_frontend_connections_active', { service: 'm1' })).to.equal(0))
    } finally {
      await client.close()
    }
    await eventually(async () => {
      const s = await scrape(base)
      expect(sample(s, 'reverselb_services')).to.equal(0)
      expect(sample(s, 'reverselb_sessions', { service: 'm1' })).to.equal(undefined)
    })
  })

  it('counts dial failures, rejected connections, refused registrations and tunnel auth failures', async function () {
    const deadPort = await freePort()
    const client = startClient(server, tunnelData(deadPort, { serviceName: 'dead' }))
    const wrong = startClient(server, tunnelData(backend.port, { serviceName: 'intruder', token: 'wrong-token' }))
    let bad: ReturnType<typeof startClient> | undefined
    try {
      const { frontendPort } = await client.ready()
      // Another service asking for a port that is taken is refused.
      bad = startClient(server, tunnelData(backend.port, { serviceName: 'bad', frontendData: { port: frontendPort } }))
      // The only session cannot reach its backend: the connection is refused.
      await exchange(frontendPort, Buffer.from('hello')).catch(() => Buffer.alloc(0))
      await wrong.ready().catch(() => {})
      await bad.ready().catch(() => {})
      await eventually(async () => {
        const s = await scrape(base)
        expect(sample(s, 'reverselb_dial_failures_total', { service: 'dead' })).to.equal(1)
        expect(sample(s, 'reverselb_frontend_connections_rejected_total', { service: 'dead' })).to.equal(1)
        expect(sample(s, 'reverselb_auth_failures_total', { endpoint: 'tunnel' })).to.be.at.least(1)
        expect(sample(s, 'reverselb_registrations_refused_total')).to.be.at.least(1)
      })
    } finally {
      await Promise.all([client.close(), wrong.close(), bad?.close()])
    }
  })

  it('keeps two servers in one process apart (a registry each)', async function () {
    const otherPort = await freePort()
    const other = await startServer({ httpPort: otherPort })
    try {
      const client = startClient(server, tunnelData(backend.port, { serviceName: 'only-on-first' }))
      try {
        const { frontendPort } = await client.ready()
        await exchange(frontendPort, randomPayload(10))
        await eventually(async () => expect(sample(await scrape(base), 'reverselb_frontend_bytes_total', { service: 'only-on-first', direction: 'in' })).to.equal(10))
        const theirs = await scrape(`http://127.0.0.1:${otherPort}`)
        expect(sample(theirs, 'reverselb_services')).to.equal(0)
        expect(sample(theirs, 'reverselb_frontend_bytes_total', { service: 'only-on-first', direction: 'in' })).to.equal(undefined)
        expect(sample(theirs, 'reverselb_sessions_opened_total')).to.equal(0)
      } finally {
        await client.close()
      }
    } finally {
      await other.close()
    }
  })
})
