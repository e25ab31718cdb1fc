import { expect } from 'chai'
import { connect } from '@nats-io/transport-node'
import { echoServer, eventually, exchange, randomPayload, sha256, tcpServer } from '../fixtures/net.js'
import { TOKEN, startClient, tunnelData } from '../fixtures/tunnel.js'
import { api, parseMetrics, sample } from '../endpoints/helpers.js'
import { frontendHostOf, useCluster } from './helpers.js'
import type { TunnelClient, TunnelData, TunnelServer } from '../../index.js'

/** Sessions of `service` each node sees (its own and the other nodes'). */
const sessionsOn = (node: TunnelServer, service: string): number => node.registry.services.get(service)?.sessions.length ?? 0

describe('cluster: three servers on a three-server NATS JetStream cluster', function () {
  this.timeout(120_000)
  const f = useCluster(3)

  const attach = (node: TunnelServer, backendPort: number, serviceName: string, over: Partial<TunnelData> = {}): TunnelClient => {
    const c = startClient(node, tunnelData(backendPort, { serviceName, ...over }), { maxBackoffMs: 1000 })
    f.clients.push(c)
    return c
  }

  it('every node sees the others', async function () {
    for (const n of f.nodes) await eventually(() => expect(n.cluster.membership.nodes.size).to.equal(3), 10_000)
  })

  it('serves every service through every node, byte-exact, whichever node its client is on', async function () {
    const echo = await echoServer()
    f.backends.push(echo)
    const ports = await Promise.all(['a', 'b', 'c'].map(async (name, i) => (await attach(f.nodes[i], echo.port, `svc-${name}`).ready()).frontendPort))
    for (const name of ['a', 'b', 'c']) {
      for (const n of f.nodes) await eventually(() => expect(sessionsOn(n, `svc-${name}`)).to.equal(1), 10_000)
    }
    const payload = randomPayload(1024 * 1024)
    for (const [s, port] of ports.entries()) {
      for (let i = 0; i < f.nodes.length; i++) {
        const back = await exchange(port, payload, frontendHostOf(i))
        expect(sha256(back), `service ${s} through node ${i + 1}`).to.equal(sha256(payload))
      }
    }
  })

  it('REST, /metrics and NATS events of any node show the whole cluster', async function () {
    for (const [i, httpPort] of f.httpPorts.entries()) {
      const base = `http://127.0.0.1:${httpPort}`
      const cluster = await api(base, '/cluster', { token: TOKEN })
      expect(cluster.status).to.equal(200)
      expect(cluster.body.node).to.equal(`node${i + 1}`)
      expect(cluster.body.registryReachable).to.equal(true)
      expect(cluster.body.nodes.map((x: { name: string }) => x.name).sort()).to.deep.equal(['node1', 'node2', 'node3'])
      for (const x of cluster.body.nodes) expect(x.linked, x.name).to.equal(true)
      const services = await api(base, '/services', { token: TOKEN })
      const byName = new Map<string, any>(services.body.services.map((x: { name: string }) => [x.name, x]))
      for (const [k, name] of ['a', 'b', 'c'].entries()) expect(byName.get(`svc-${name}`)?.sessions[0].node).to.equal(`node${k + 1}`)
      const metrics = parseMetrics((await api(base, '/metrics', { token: TOKEN })).text)
      for (const [k, name] of ['a', 'b', 'c'].entries()) expect(sample(metrics, 'reverselb_cluster_sessions', { node: `node${k + 1}`, service: `svc-${name}` })).to.equal(1)
    }
    const nc = await connect({ servers: f.nats.nodes[1].url })
    try {
      const events: any[] = []
      nc.subscribe('reverselb.>', { callback: (_e, m) => { events.push(m.json()) } })
      await nc.flush()
      const echo = await echoServer()
      f.backends.push(echo)
      await attach(f.nodes[2], echo.port, 'evented').ready()
      await eventually(() => expect(events.find(e => e.event === 'session.join' && e.service?.name === 'evented')?.node).to.equal('node3'), 10_000)
    } finally {
      await nc.close()
    }
  })

  it('spreads connections evenly over clients of one service attached to different nodes', async function () {
    const named = await Promise.all(['x', 'y', 'z'].map(async name => await tcpServer((s) => { s.on('data', () => {}); s.on('end', () => s.end(name)) })))
    f.backends.push(...named)
    const ports = await Promise.all(named.map(async (b, i) => (await attach(f.nodes[i], b.port, 'even').ready()).frontendPort))
    expect(new Set(ports).size).to.equal(1)
    for (const n of f.nodes) await eventually(() => expect(sessionsOn(n, 'even')).to.equal(3), 10_000)
    for (let i = 0; i < f.nodes.length; i++) {
      const counts = new Map<string, number>()
      for (let k = 0; k < 60; k++) {
        const who = (await exchange(ports[0], Buffer.from('hi'), frontendHostOf(i))).toString()
        counts.set(who, (counts.get(who) ?? 0) + 1)
      }
      // eslint-disable-next-line no-console
      console.log(`      through node ${i + 1}: ${['x', 'y', 'z'].map(n => `${n}=${counts.get(n) ?? 0}`).join(' ')}`)
      for (const name of ['x', 'y', 'z']) expect(counts.get(name) ?? 0, `${name} through node ${i + 1}`).to.be.within(15, 25)
    }
  })

  it('spreads the sessions of one client (--connections 3) over the nodes, from the one address it was given', async function () {
    const echo = await echoServer()
    f.backends.push(echo)
    await attach(f.nodes[0], echo.port, 'spread', { backendAcceptBacklog: 3 }).ready()
    await eventually(() => {
      const nodesOfSessions = f.nodes[0].registry.services.get('spread')?.sessions.map(s => s.node).sort()
      expect(nodesOfSessions).to.deep.equal(['node1', 'node2', 'node3'])
    }, 15_000)
  })

  it('never gives one port twice when many clients register dynamic ports on every node at once', async function () {
    const echo = await echoServer()
    f.backends.push(echo)
    const perNode = 8
    const racing = f.nodes.flatMap((n, i) => Array.from({ length: perNode }, (_, k) => attach(n, echo.port, `race-${i}-${k}`)))
    const ports = await Promise.all(racing.map(async c => (await c.ready()).frontendPort))
    expect(new Set(ports).size, `ports ${ports.join(',')}`).to.equal(ports.length)
    // And each service has the same port on every node.
    for (const n of f.nodes) {
      await eventually(() => {
        for (const [j, port] of ports.entries()) {
          const name = `race-${Math.floor(j / perNode)}-${j % perNode}`
          expect(n.registry.services.get(name)?.port, name).to.equal(port)
        }
      }, 15_000)
    }
  })
})
