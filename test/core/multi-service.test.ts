import { expect } from 'chai'
import { TunnelClient, TunnelServer, ServiceError } from '../../index.js'
import { connectionsTo, echoServer, eventually, exchange, freePort, freePortRange, nothingListens, openTransfer, randomPayload, sha256, tcpServer } from '../fixtures/net.js'
import { captureLogger } from '../fixtures/proxies.js'
import { TOKEN, startClient, startServer, testLogger, tunnelData } from '../fixtures/tunnel.js'
import type { TcpServer } from '../fixtures/net.js'

describe('many services from one client (library)', function () {
  this.timeout(60_000)
  let echo: TcpServer
  let web: TcpServer
  before(async function () {
    echo = await echoServer()
    web = await tcpServer((s) => s.end('HTTP/1.0 200 OK\r\n\r\nweb'))
  })
  after(async function () { await echo.close(); await web.close() })

  it('runs the docs/library.md multi-service example (backend ports replaced by local ones)', async function () {
    const apiPort = await freePort()
    const server = new TunnelServer({ port: apiPort, token: '1234', dynPort: await freePortRange(3), dynPortCount: 3, logger: testLogger })
    await server.listen()
    const tc = new TunnelClient(`localhost:${apiPort}`, [], { token: '1234', insecureTls: true, logger: testLogger })
    const webReady = await tc.addService({ serviceName: 'web', backendAcceptBacklog: 1, frontendData: { port: 0 }, targetPort: web.port, targetAddresses: ['127.0.0.1'] })
    const echoReady = await tc.addService({ serviceName: 'echo', backendAcceptBacklog: 1, frontendData: { port: 0 }, targetPort: echo.port, targetAddresses: ['127.0.0.1'] })
    console.assert(tc.services().length === 2)
    tc.removeService('web')   // its frontend closes; echo's connections are not touched
    expect(tc.services().map(s => s.name)).to.deep.equal(['echo'])
    expect((await exchange(echoReady.frontendPort, Buffer.from('hi'))).toString()).to.equal('hi')
    await eventually(async () => { expect(await nothingListens(webReady.frontendPort)).to.equal(true) })
    await tc.close(); await server.close()
  })

  it('carries every service over one WebSocket per session, each on its own frontend port', async function () {
    const server = await startServer({ dynPortCount: 4 })
    const client = startClient(server, tunnelData(web.port, { serviceName: 'web' }), { connections: 2 })
    try {
      const echoPort = (await client.addService(tunnelData(echo.port, { serviceName: 'echo' }))).frontendPort
      const [a, b] = await Promise.all([
        client.addService(tunnelData(echo.port, { serviceName: 'multi', instanceName: 'a' })),
        client.addService(tunnelData(web.port, { serviceName: 'multi', instanceName: 'b' }))
      ])
      expect(a.frontendPort).to.equal(b.frontendPort)
      const webPort = client.services().find(s => s.name === 'web')?.frontendPorts[`127.0.0.1:${server.port}`]
      expect((await exchange(webPort ?? 0, Buffer.alloc(0))).toString()).to.equal('HTTP/1.0 200 OK\r\n\r\nweb')
      const payload = randomPayload(1 << 20)
      expect(sha256(await exchange(echoPort, payload))).to.equal(sha256(payload))
      // Two sessions (connections: 2), four services: two WebSockets.
      expect(await connectionsTo(server.port)).to.equal(2)
      const services = [...server.registry.services.values()]
      expect(services.map(s => s.name).sort()).to.deep.equal(['echo', 'multi', 'web'])
      for (const s of services) for (const session of s.sessions) expect(session.connection.services().sort()).to.deep.equal(['echo', 'multi:a', 'multi:b', 'web'])
    } finally {
      await client.close(); await server.close()
    }
  })

  it('adds and removes services at run time without touching the connections of the others', async function () {
    const server = await startServer({ dynPortCount: 3 })
    const client = startClient(server, tunnelData(echo.port, { serviceName: 'keep' }))
    try {
      const keepPort = (await client.ready()).frontendPort
      const goner = await client.addService(tunnelData(web.port, { serviceName: 'goner' }))
      const transfer = await openTransfer(keepPort)
      const first = randomPayload(4 << 20)
      await transfer.send(first)
      client.removeService('goner')
      const late = await client.addService(tunnelData(web.port, { serviceName: 'late' }))
      await eventually(async () => { expect(await nothingListens(goner.frontendPort)).to.equal(true) })
      expect((await exchange(late.frontendPort, Buffer.alloc(0))).toString()).to.match(/web$/)
      const second = randomPayload(4 << 20)
      await transfer.send(second)
      expect(sha256(await transfer.finish())).to.equal(sha256(Buffer.concat([first, second])))
      expect(client.connectedSessions).to.equal(1)
    } finally {
      await client.close(); await server.close()
    }
  })

  it('changes a service\'s backends for new connections; a duplicate or unknown name is a ServiceError', async function () {
    const server = await startServer({ dynPortCount: 1 })
    const client = startClient(server, tunnelData(echo.port, { serviceName: 'svc' }))
    try {
      const { frontendPort } = await client.ready()
      await client.updateService(tunnelData(web.port, { serviceName: 'svc' }))
      expect((await exchange(frontendPort, Buffer.alloc(0))).toString()).to.match(/web$/)
      const dup = await client.addService(tunnelData(web.port, { serviceName: 'svc' })).catch((e: unknown) => e)
      expect(dup).to.be.instanceOf(ServiceError).and.to.have.property('code', 'ERR_REVERSELB_SERVICE_EXISTS')
      expect(() => client.removeService('nope')).to.throw(ServiceError).with.property('code', 'ERR_REVERSELB_SERVICE_UNKNOWN')
      const bad = await client.addService(tunnelData(web.port, { serviceName: 'bad\n' })).catch((e: unknown) => e)
      expect(bad).to.be.instanceOf(ServiceError).and.to.have.property('code', 'ERR_REVERSELB_SERVICE_INVALID')
    } finally {
      await client.close(); await server.close()
    }
  })

  it('a service the token may not register is refused alone; the others stay', async function () {
    const server = await startServer({ dynPortCount: 2, token: [{ token: TOKEN, services: ['ok*'] }] })
    const { logger, lines } = captureLogger()
    const client = startClient(server, tunnelData(echo.port, { serviceName: 'ok1' }), { logger })
    try {
      const { frontendPort } = await client.ready()
      const err = await client.addService(tunnelData(web.port, { serviceName: 'forbidden' })).catch((e: Error) => e)
      expect(err).to.be.instanceOf(Error).with.property('message').that.matches(/may not register service "forbidden"/)
      expect(lines.join('')).to.match(/tunnel forbidden: registration refused/)
      await client.addService(tunnelData(web.port, { serviceName: 'ok2' }))
      expect((await exchange(frontendPort, Buffer.from('still'))).toString()).to.equal('still')
    } finally {
      await client.close(); await server.close()
    }
  })

  it('a refused first service does not keep the others out: the session opens with the next one', async function () {
    const server = await startServer({ dynPortCount: 2, token: [{ token: TOKEN, services: ['ok*'] }] })
    const { logger, lines } = captureLogger()
    const client = new TunnelClient(`127.0.0.1:${server.port}`, [tunnelData(web.port, { serviceName: 'forbidden' }), tunnelData(echo.port, { serviceName: 'ok1' })],
      { token: TOKEN, fingerprint: server.fingerprint, proxy: 'none', logger, maxBackoffMs: 500 })
    try {
      const { frontendPort } = await client.ready()
      expect((await exchange(frontendPort, Buffer.from('in'))).toString()).to.equal('in')
      expect(lines.join('')).to.match(/tunnel forbidden: registration refused: this token may not register service "forbidden"/)
      expect([...server.registry.services.keys()]).to.deep.equal(['ok1'])
    } finally {
      await client.close(); await server.close()
    }
  })

  it('removing the last service closes the session; adding one opens a new one', async function () {
    const server = await startServer({ dynPortCount: 1 })
    const client = startClient(server, tunnelData(echo.port, { serviceName: 'only' }))
    try {
      const { frontendPort } = await client.ready()
      client.removeService('only')
      await eventually(() => { expect(client.connectedSessions).to.equal(0) })
      await eventually(async () => { expect(await nothingListens(frontendPort)).to.equal(true) })
      const again = await client.addService(tunnelData(echo.port, { serviceName: 'again' }))
      expect((await exchange(again.frontendPort, Buffer.from('x'))).toString()).to.equal('x')
    } finally {
      await client.close(); await server.close()
    }
  })
})
