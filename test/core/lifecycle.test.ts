import { expect } from 'chai'
import { once } from 'node:events'
import { TunnelClient, TunnelServer } from '../../index.js'
import { echoServer, eventually, exchange, freePort, freePortRange, nothingListens, tcpServer } from '../fixtures/net.js'
import { TOKEN, startClient, startServer, testLogger, tunnelData } from '../fixtures/tunnel.js'
import type { TcpServer } from '../fixtures/net.js'

describe('service lifecycle', function () {
  let backend: TcpServer
  before(async function () { backend = await echoServer() })
  after(async function () { await backend.close() })

  it('runs the docs/library.md example as written', async function () {
    const apiPort = await freePort()
    const web = await tcpServer((s) => s.end('HTTP/1.0 200 OK\r\n\r\nfrom 8080'), '127.0.0.2')
    const server = new TunnelServer({ port: apiPort, token: '1234', autoCertSubjectName: 'localhost', dynPort: await freePortRange(1), dynPortCount: 1, logger: testLogger })
    await server.listen()
    const tc = new TunnelClient(`localhost:${apiPort}`, {
      serviceName: 'web8888', token: '1234', backendAcceptBacklog: 1,
      frontendData: { port: 0 },
      targetPort: 80, targetAddresses: ['127.0.0.1']
    }, { insecureTls: true, logger: testLogger })
    const { frontendPort } = await tc.ready()
    tc.updateTargetAddresses(['127.0.0.2']); tc.updateTargetPort(web.port)
    // New connections go to the updated target, through the same tunnel.
    expect((await exchange(frontendPort, Buffer.alloc(0), '127.0.0.1')).toString()).to.equal('HTTP/1.0 200 OK\r\n\r\nfrom 8080')
    expect(tc.connectedSessions).to.equal(1)
    await tc.close(); await server.close()
    await web.close()
  })

  it('shares one frontend port between clients of a service and closes it with the last one', async function () {
    const server = await startServer({ dynPortCount: 1 })
    const other = await tcpServer((s) => s.end('second backend'))
    const a = startClient(server, tunnelData(backend.port, { serviceName: 'shared' }))
    const { frontendPort } = await a.ready()
    const b = startClient(server, tunnelData(other.port, { serviceName: 'shared' }))
    expect((await b.ready()).frontendPort).to.equal(frontendPort)
    // Round robin: consecutive connections alternate between the two clients' backends.
    const answers = []
    for (let i = 0; i < 6; i++) answers.push((await exchange(frontendPort, Buffer.from('echo'))).toString())
    expect(answers.filter(x => x === 'echo')).to.have.length(3)
    expect(answers.filter(x => x === 'second backend')).to.have.length(3)
    await a.close()
    expect((await exchange(frontendPort, Buffer.from('x'))).toString()).to.equal('second backend')
    await b.close()
    await eventually(async () => expect(await nothingListens(frontendPort)).to.equal(true))
    // The port went back to the pool: the next service gets it again.
    const c = startClient(server, tunnelData(backend.port, { serviceName: 'next' }))
    expect((await c.ready()).frontendPort).to.equal(frontendPort)
    await c.close()
    await server.close()
    await other.close()
  })

  it('keeps backendAcceptBacklog parallel sessions', async function () {
    const server = await startServer()
    const client = startClient(server, tunnelData(backend.port, { serviceName: 'multi', backendAcceptBacklog: 3 }))
    await client.ready()
    await eventually(() => expect(server.registry.services.get('multi')?.sessions).to.have.length(3))
    await client.close()
    await server.close()
  })

  it('re-registers on the same frontend port after a server restart', async function () {
    this.timeout(30_000)
    const apiPort = await freePort()
    const dynPort = await freePortRange(10)
    const opts = { port: apiPort, host: '127.0.0.1', frontendHost: '127.0.0.1', token: TOKEN, dynPort, dynPortCount: 10, logger: testLogger }
    let server = new TunnelServer(opts)
    await server.listen()
    const client = new TunnelClient(`127.0.0.1:${apiPort}`, tunnelData(backend.port, { serviceName: 'phoenix' }), { insecureTls: true, logger: testLogger, maxBackoffMs: 1000 })
    const { frontendPort } = await client.ready()
    await server.close()
    server = new TunnelServer(opts)
    await server.listen()
    await eventually(async () => {
      expect(server.registry.services.get('phoenix')?.port).to.equal(frontendPort)
      expect((await exchange(frontendPort, Buffer.from('back again'))).toString()).to.equal('back again')
    }, 15_000, 200)
    await client.close()
    await server.close()
  })

  it('a client with no server keeps retrying and connects when the server appears', async function () {
    this.timeout(20_000)
    const apiPort = await freePort()
    const client = new TunnelClient(`127.0.0.1:${apiPort}`, tunnelData(backend.port, { serviceName: 'late' }), { insecureTls: true, logger: testLogger, maxBackoffMs: 500 })
    // It tried, failed, and tries again.
    for (let i = 0; i < 2; i++) await once(client, 'error')
    const server = new TunnelServer({ port: apiPort, host: '127.0.0.1', frontendHost: '127.0.0.1', token: TOKEN, dynPort: await freePortRange(1), dynPortCount: 1, logger: testLogger })
    await server.listen()
    const { frontendPort } = await client.ready()
    expect((await exchange(frontendPort, Buffer.from('late hello'))).toString()).to.equal('late hello')
    await client.close()
    await server.close()
  })
})
