import { expect } from 'chai'
import { connect } from 'node:net'
import { TunnelClient } from '../../index.js'
import { echoServer, eventually, exchange, freePort, tcpServer } from '../fixtures/net.js'
import { startClient, startServer, testLogger, tunnelData } from '../fixtures/tunnel.js'
import type { LbPolicy } from '../../server/balancer.js'
import type { TcpServer } from '../fixtures/net.js'

/** A backend that answers with its name, so the frontend can tell who served it. */
async function namedBackend (name: string): Promise<TcpServer> {
  return await tcpServer((s) => { s.on('data', () => {}); s.on('end', () => s.end(name)) })
}

async function countAnswers (port: number, n: number, concurrency: number): Promise<Map<string, number>> {
  const counts = new Map<string, number>()
  let next = 0
  const worker = async (): Promise<void> => {
    while (next++ < n) {
      const who = (await exchange(port, Buffer.from('hi'))).toString()
      counts.set(who, (counts.get(who) ?? 0) + 1)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return counts
}

describe('load balancing across clients', function () {
  this.timeout(60_000)

  for (const policy of ['roundrobin', 'leastconn'] as LbPolicy[]) {
    it(`spreads connections evenly over 3 clients (${policy})`, async function () {
      const server = await startServer({ lbPolicy: policy })
      const backends = await Promise.all(['a', 'b', 'c'].map(namedBackend))
      const clients = backends.map(b => startClient(server, tunnelData(b.port, { serviceName: 'even' })))
      const ports = await Promise.all(clients.map(async c => (await c.ready()).frontendPort))
      expect(new Set(ports).size).to.equal(1)
      const counts = await countAnswers(ports[0], 600, 12)
      const shares = ['a', 'b', 'c'].map(n => (counts.get(n) ?? 0) / 600)
      console.log(`      ${policy} distribution over 600 connections: ${['a', 'b', 'c'].map(n => `${n}=${counts.get(n) ?? 0}`).join(' ')}`)
      for (const share of shares) expect(share).to.be.within(1 / 3 - 0.05, 1 / 3 + 0.05)
      await Promise.all(clients.map(async c => await c.close()))
      await server.close()
      await Promise.all(backends.map(async b => await b.close()))
    })
  }

  it('leastconn sends new connections to the client with the fewest open ones', async function () {
    const server = await startServer({ lbPolicy: 'leastconn' })
    const held: string[] = []
    const a = await tcpServer(() => held.push('a'))
    const b = await tcpServer(() => held.push('b'))
    const ca = startClient(server, tunnelData(a.port, { serviceName: 'lc' }))
    const port = (await ca.ready()).frontendPort
    // Three long-lived connections land on a while it is alone...
    const open = await Promise.all([1, 2, 3].map(async () => { const s = connect({ port, host: '127.0.0.1' }); s.write('x'); return s }))
    await eventually(() => expect(held).to.have.length(3))
    const cb = startClient(server, tunnelData(b.port, { serviceName: 'lc' }))
    await cb.ready()
    // ...so the next three go to b.
    open.push(...await Promise.all([1, 2, 3].map(async () => { const s = connect({ port, host: '127.0.0.1' }); s.write('x'); return s })))
    await eventually(() => expect(held).to.have.length(6))
    expect(held.slice(3)).to.deep.equal(['b', 'b', 'b'])
    for (const s of open) s.destroy()
    await ca.close(); await cb.close(); await server.close(); await a.close(); await b.close()
  })

  it('fails over before the first byte when a client cannot reach its backend, and marks it unhealthy', async function () {
    const server = await startServer()
    const good = await namedBackend('good')
    const deadPort = await freePort()
    const cGood = startClient(server, tunnelData(good.port, { serviceName: 'fo' }))
    const cDead = startClient(server, tunnelData(deadPort, { serviceName: 'fo' }))
    const port = (await cGood.ready()).frontendPort
    await cDead.ready()
    let dialFailures = 0
    server.on('dialFailure', () => { dialFailures++ })
    const counts = await countAnswers(port, 200, 8)
    console.log(`      failover: 200 requests, ${counts.get('good') ?? 0} answered, ${dialFailures} backend dial failures absorbed`)
    expect(counts.get('good')).to.equal(200)
    // After a few failures the dead client sits out instead of costing every request a round trip.
    expect(dialFailures).to.be.within(3, 10)
    await cGood.close(); await cDead.close(); await server.close(); await good.close()
  })

  it('an unhealthy client recovers by itself when its backend returns', async function () {
    const server = await startServer()
    const good = await namedBackend('good')
    const latePort = await freePort()
    const cGood = startClient(server, tunnelData(good.port, { serviceName: 'rec' }))
    const cLate = startClient(server, tunnelData(latePort, { serviceName: 'rec' }))
    const port = (await cGood.ready()).frontendPort
    await cLate.ready()
    await countAnswers(port, 20, 1)
    const late = await tcpServer((s) => { s.on('data', () => {}); s.on('end', () => s.end('late')) })
    // Re-point the late client at its now-running backend (the real one took a new port).
    cLate.updateTargetPort(late.port)
    await eventually(async () => {
      const counts = await countAnswers(port, 10, 1)
      expect(counts.get('late') ?? 0).to.be.greaterThan(0)
    }, 20_000, 500)
    await cGood.close(); await cLate.close(); await server.close(); await good.close(); await late.close()
  })

  it('closes the frontend connection only when every client fails', async function () {
    const server = await startServer()
    const c1 = startClient(server, tunnelData(await freePort(), { serviceName: 'allbad' }))
    const c2 = startClient(server, tunnelData(await freePort(), { serviceName: 'allbad' }))
    const port = (await c1.ready()).frontendPort
    await c2.ready()
    const socket = connect({ port, host: '127.0.0.1' })
    let received = 0
    socket.on('data', (c: Buffer) => { received += c.length })
    socket.on('error', () => {})
    socket.write('anyone?')
    await new Promise(resolve => socket.once('close', resolve))
    expect(received).to.equal(0)
    await c1.close(); await c2.close(); await server.close()
  })

  it('balances across several backends on the client side, skipping a dead one', async function () {
    const server = await startServer()
    const live = await echoServer()
    // 127.0.0.3 has nothing listening on this port; 127.0.0.1 has the echo server.
    const client = startClient(server, tunnelData(live.port, { serviceName: 'multi', targetAddresses: ['127.0.0.3', '127.0.0.1'] }))
    const port = (await client.ready()).frontendPort
    for (let i = 0; i < 10; i++) expect((await exchange(port, Buffer.from(`n${i}`))).toString()).to.equal(`n${i}`)
    await client.close(); await server.close(); await live.close()
  })

  it('keeps the service reachable through a second server when the first one dies', async function () {
    const s1 = await startServer()
    const s2 = await startServer()
    const backend = await echoServer()
    const client = new TunnelClient([`127.0.0.1:${s1.port}`, `127.0.0.1:${s2.port}`], tunnelData(backend.port, { serviceName: 'ha', backendAcceptBacklog: 2 }),
      { insecureTls: true, logger: testLogger })
    await client.ready()
    await eventually(() => {
      expect(s1.registry.services.get('ha')?.sessions).to.have.length(2)
      expect(s2.registry.services.get('ha')?.sessions).to.have.length(2)
    })
    const p2 = s2.registry.services.get('ha')?.port ?? 0
    await s1.close()
    for (let i = 0; i < 20; i++) expect((await exchange(p2, Buffer.from(`ha${i}`))).toString()).to.equal(`ha${i}`)
    await client.close(); await s2.close(); await backend.close()
  })
})
