import { expect } from 'chai'
import { once } from 'node:events'
import { connect } from 'node:net'
import { WebSocket } from 'ws'
import { RegistrationRefusedError, UpgradeRefusedError } from '../../index.js'
import { echoServer, eventually, exchange } from '../fixtures/net.js'
import { TOKEN, startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import type { TunnelServer } from '../../index.js'
import type { TcpServer } from '../fixtures/net.js'
import type { Socket } from 'node:net'

async function refusal (promise: Promise<unknown>): Promise<Error | undefined> {
  return await promise.then(() => undefined, (e: Error) => e)
}

/** One raw upgrade attempt; resolves with the HTTP status. */
async function upgradeStatus (server: TunnelServer, token: string): Promise<number> {
  const ws = new WebSocket(`wss://127.0.0.1:${server.port}/tunnel`, 'reverselb.v1.yamux', { rejectUnauthorized: false, headers: { authorization: `Bearer ${token}` } })
  return await new Promise((resolve, reject) => {
    ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate() })
    ws.on('open', () => { resolve(101); ws.terminate() })
    ws.on('error', reject)
  })
}

describe('operator limits', function () {
  this.timeout(30_000)
  let backend: TcpServer
  before(async function () { backend = await echoServer() })
  after(async function () { await backend.close() })

  it('refuses explicit ports outside the allowed ranges, and the server\'s own ports', async function () {
    const server = await startServer({ limits: { allowedPorts: '30000-30010' } })
    const outside = startClient(server, tunnelData(backend.port, { serviceName: 'far', frontendData: { port: 40000 } }))
    const err = await refusal(outside.ready())
    await outside.close()
    expect(err).to.be.instanceOf(RegistrationRefusedError)
    expect(err?.message).to.contain('port 40000 is not allowed; allowed: 30000-30010')
    const api = startClient(server, tunnelData(backend.port, { serviceName: 'api', frontendData: { port: server.port } }))
    expect((await refusal(api.ready()))?.message).to.match(/reserved for the server/)
    await api.close()
    await server.close()
  })

  it('binds tokens to the services they may register', async function () {
    const server = await startServer({ token: [TOKEN, { token: 'web-only', services: ['web*'] }], dynPortCount: 2 })
    const ok = startClient(server, tunnelData(backend.port, { serviceName: 'web1', token: 'web-only' }))
    await ok.ready()
    const hijack = startClient(server, tunnelData(backend.port, { serviceName: 'db', token: 'web-only' }))
    expect((await refusal(hijack.ready()))?.message).to.contain('this token may not register service "db"')
    await hijack.close()
    await ok.close()
    await server.close()
  })

  it('limits services per client address', async function () {
    const server = await startServer({ dynPortCount: 3, limits: { maxServicesPerAddress: 2 } })
    const a = startClient(server, tunnelData(backend.port, { serviceName: 's1' }))
    const b = startClient(server, tunnelData(backend.port, { serviceName: 's2' }))
    await a.ready(); await b.ready()
    const c = startClient(server, tunnelData(backend.port, { serviceName: 's3' }))
    expect((await refusal(c.ready()))?.message).to.match(/already registered 2 services/)
    await Promise.all([a.close(), b.close(), c.close()])
    await server.close()
  })

  it('limits sessions per client address', async function () {
    const server = await startServer({ limits: { maxSessionsPerAddress: 2 } })
    const a = startClient(server, tunnelData(backend.port, { serviceName: 'x', backendAcceptBacklog: 2 }))
    await a.ready()
    await eventually(() => expect(server.registry.services.get('x')?.sessions).to.have.length(2))
    const b = startClient(server, tunnelData(backend.port, { serviceName: 'x' }))
    const err = await refusal(b.ready())
    expect(err).to.be.instanceOf(UpgradeRefusedError)
    expect(err?.message).to.contain('already holds 2 tunnel sessions')
    await Promise.all([a.close(), b.close()])
    await server.close()
  })

  it('limits concurrent connections per session and per service', async function () {
    const server = await startServer({ limits: { maxStreamsPerSession: 1, maxStreamsPerService: 2 } })
    const hold = await echoServer()
    const a = startClient(server, tunnelData(hold.port, { serviceName: 'busy' }))
    const b = startClient(server, tunnelData(hold.port, { serviceName: 'busy' }))
    const port = (await a.ready()).frontendPort
    await b.ready()
    const open = []
    for (let i = 0; i < 2; i++) {
      const s = connect({ port, host: '127.0.0.1' })
      s.write('hold')
      await once(s, 'data')
      open.push(s)
    }
    // Both sessions are at their limit of one, and the service at its limit of two.
    expect((await exchange(port, Buffer.from('third'))).length).to.equal(0)
    open[0].destroy()
    await eventually(async () => expect((await exchange(port, Buffer.from('third'))).toString()).to.equal('third'))
    open[1].destroy()
    await Promise.all([a.close(), b.close()])
    await server.close()
    await hold.close()
  })

  it('applies the per-session limit to each service of a connection that carries several', async function () {
    const server = await startServer({ dynPortCount: 2, limits: { maxStreamsPerSession: 1 } })
    const hold = await echoServer()
    const client = startClient(server, tunnelData(hold.port, { serviceName: 'one' }))
    const open: Socket[] = []
    try {
      const ports = [(await client.ready()).frontendPort, (await client.addService(tunnelData(hold.port, { serviceName: 'two' }))).frontendPort]
      // One connection held on each service: each registration has its own limit of one.
      for (const port of ports) {
        const s = connect({ port, host: '127.0.0.1' })
        s.write('hold')
        await once(s, 'data')
        open.push(s)
      }
      for (const port of ports) expect((await exchange(port, Buffer.from('over'))).length).to.equal(0)
      expect(client.connectedSessions).to.equal(1)
    } finally {
      for (const s of open) s.destroy()
      await client.close()
      await server.close()
      await hold.close()
    }
  })

  it('closes idle frontend connections when an idle timeout is set', async function () {
    const server = await startServer({ limits: { idleTimeoutMs: 300 } })
    const client = startClient(server, tunnelData(backend.port, { serviceName: 'idle' }))
    const port = (await client.ready()).frontendPort
    const idle = connect({ port, host: '127.0.0.1' })
    idle.write('x')
    await once(idle, 'data')
    const started = Date.now()
    await new Promise(resolve => idle.once('close', resolve))
    expect(Date.now() - started).to.be.within(200, 2000)
    // A busy one survives past the timeout.
    const busy = connect({ port, host: '127.0.0.1' })
    for (let i = 0; i < 8; i++) {
      busy.write(`tick${i}`)
      await once(busy, 'data')
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    expect(busy.destroyed).to.equal(false)
    busy.destroy()
    await client.close()
    await server.close()
  })

  it('refuses an address after too many failed authorizations, even with the right token', async function () {
    const server = await startServer({ limits: { authFailuresPerWindow: 3, authFailureWindowMs: 60_000 } })
    for (let i = 0; i < 3; i++) expect(await upgradeStatus(server, 'guess' + i)).to.equal(401)
    // Now even the right token is not looked at from this address.
    expect(await upgradeStatus(server, TOKEN)).to.equal(429)
    await server.close()
  })

  it('drains open connections on close, refusing new ones meanwhile', async function () {
    const server = await startServer()
    const client = startClient(server, tunnelData(backend.port, { serviceName: 'drain' }))
    const port = (await client.ready()).frontendPort
    const open = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    open.write('before ')
    await once(open, 'data')
    const closing = server.close({ drainMs: 5000 })
    await new Promise(resolve => setTimeout(resolve, 200))
    const late = connect({ port, host: '127.0.0.1' })
    const lateErr = await new Promise<Error | undefined>(resolve => { late.on('error', resolve); late.on('connect', () => resolve(undefined)) })
    expect(lateErr).to.have.property('code', 'ECONNREFUSED')
    // The open connection still works, and its end lets the close finish early.
    const chunks: Buffer[] = []
    open.on('data', (c: Buffer) => chunks.push(c))
    open.end('after')
    await once(open, 'end')
    expect(Buffer.concat(chunks).toString()).to.equal('after')
    const started = Date.now()
    await closing
    expect(Date.now() - started).to.be.below(3000)
    await client.close()
  })
})

