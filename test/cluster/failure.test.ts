import { expect } from 'chai'
import { echoServer, eventually, exchange, randomPayload, sha256 } from '../fixtures/net.js'
import { loggedClient, startClient, testLogger, tunnelData } from '../fixtures/tunnel.js'
import { TunnelClient } from '../../index.js'
import { frontendHostOf, namedEcho, startNodeProcess, useCluster } from './helpers.js'
import { LiveConnection } from './live-connection.js'

const say = (line: string): void => console.log(`      ${line}`) // eslint-disable-line no-console

describe('cluster: failures (kill -9 of a node, loss of NATS servers)', function () {
  this.timeout(180_000)
  const f = useCluster(2)

  it('kill -9 of a node: connections through it are reset at once, its client is back through another node within seconds, the others lose nothing', async function () {
    const { proc, port: apiPort } = await startNodeProcess(f.setup, 2)
    try {
      const [onDead, onLive] = await Promise.all([namedEcho('dead'), namedEcho('live')])
      f.backends.push(onDead, onLive)
      // One client on the node that dies, one on node 1; one service.
      const doomed = new TunnelClient(`127.0.0.1:${apiPort}`, tunnelData(onDead.port, { serviceName: 'kill' }), { fingerprint: f.cert.fingerprint, logger: testLogger, proxy: 'none', maxBackoffMs: 1000 })
      f.clients.push(doomed, startClient(f.nodes[0], tunnelData(onLive.port, { serviceName: 'kill' }), { maxBackoffMs: 1000 }))
      const port = (await doomed.ready()).frontendPort
      expect((await f.clients[f.clients.length - 1].ready()).frontendPort).to.equal(port)
      for (const n of f.nodes) await eventually(() => expect(n.registry.services.get('kill')?.sessions.length).to.equal(2), 10_000)

      // Load through the two surviving nodes: round robin sends half to each session.
      const live = await Promise.all(Array.from({ length: 12 }, async (_, k) => await LiveConnection.open(port, frontendHostOf(k % 2))))
      const crossing = live.filter(c => c.who === 'dead')
      const safe = live.filter(c => c.who === 'live')
      expect(crossing.length).to.be.greaterThan(0)
      expect(safe.length).to.be.greaterThan(0)
      await Promise.all(live.map(async c => await c.advance(5)))

      const killedAt = Date.now()
      proc.child.kill('SIGKILL')
      await Promise.all(crossing.map(async c => await Promise.race([c.finished, new Promise(resolve => setTimeout(resolve, 10_000))])))
      const resetMs = crossing.map(c => (c.closedAt ?? Infinity) - killedAt)
      say(`kill -9: ${crossing.length} forwarded connections through the dead node closed after ${Math.min(...resetMs)}-${Math.max(...resetMs)} ms (${[...new Set(crossing.map(c => c.error))].join(', ')})`)
      for (const ms of resetMs) expect(ms).to.be.below(5000)
      // Reset, never an orderly end that could pass for the complete answer.
      for (const c of crossing) expect(c.error).to.match(/ECONNRESET|EPIPE/)

      // Its client comes back through another node and gets the same port.
      const before = onDead.connections()
      await eventually(async () => {
        const got = await exchange(port, Buffer.from('ping'), frontendHostOf(0))
        expect(onDead.connections()).to.be.greaterThan(before, `answered by ${got.toString().split('\n')[0]}`)
      }, 15_000, 20)
      const backMs = Date.now() - killedAt
      say(`kill -9: the dead node's client served again through the others after ${(backMs / 1000).toFixed(2)} s, same port ${port}`)
      expect(backMs).to.be.below(10_000)

      // Nothing lost on the connections that did not cross it.
      for (const c of safe) {
        const before = c.rounds
        expect(await c.advance(20)).to.be.at.least(before + 20)
        expect(c.closedAt).to.equal(undefined)
        expect(c.mismatches).to.equal(0)
      }
      await Promise.all(live.map(async c => await c.stop()))
    } finally {
      await proc.stop('SIGKILL')
    }
  })

  it('loss of one NATS server changes nothing: relaying goes on and new services register', async function () {
    const echo = await echoServer()
    f.backends.push(echo)
    const first = startClient(f.nodes[0], tunnelData(echo.port, { serviceName: 'before-nats-loss' }))
    f.clients.push(first)
    const port = (await first.ready()).frontendPort
    for (const n of f.nodes) await eventually(() => expect(n.registry.services.get('before-nats-loss')?.port).to.equal(port), 10_000)
    const payload = randomPayload(256 * 1024)
    const victim = f.nats.nodes[0]
    const killedAt = Date.now()
    await victim.stop('SIGKILL')
    try {
      // Registration right after the loss (the registry's stream may have had its leader there).
      const started = Date.now()
      const next = startClient(f.nodes[1], tunnelData(echo.port, { serviceName: 'after-nats-loss' }))
      f.clients.push(next)
      const newPort = (await next.ready()).frontendPort
      say(`one NATS server killed: a new dynamic registration took ${Date.now() - started} ms (${Date.now() - killedAt} ms after the kill)`)
      expect(newPort).to.not.equal(port)
      // Every node serves it (a watch whose consumer was on the lost server is restarted).
      for (const n of f.nodes) await eventually(() => expect(n.registry.services.get('after-nats-loss')?.port).to.equal(newPort), 20_000)
      say(`one NATS server killed: the new service served by every node ${Date.now() - started} ms after its registration began`)
      for (let i = 0; i < 2; i++) {
        expect(sha256(await exchange(port, payload, frontendHostOf(i)))).to.equal(sha256(payload))
        expect(sha256(await exchange(newPort, payload, frontendHostOf(i)))).to.equal(sha256(payload))
      }
    } finally {
      await victim.start()
    }
  })

  it('loss of all of NATS: known services keep relaying and registering, new ones are refused with a clear message, and it catches up when NATS is back', async function () {
    const echo = await echoServer()
    f.backends.push(echo)
    const known = startClient(f.nodes[0], tunnelData(echo.port, { serviceName: 'known' }))
    f.clients.push(known)
    const port = (await known.ready()).frontendPort
    await eventually(() => expect(f.nodes[1].registry.services.get('known')?.sessions.length).to.equal(1), 10_000)

    await Promise.all(f.nats.nodes.map(async n => await n.stop('SIGKILL')))
    const payload = randomPayload(64 * 1024)
    for (let i = 0; i < 2; i++) expect(sha256(await exchange(port, payload, frontendHostOf(i)))).to.equal(sha256(payload))

    // A new service needs the registry: refused, saying why.
    const { c: refused, lines } = loggedClient(`127.0.0.1:${f.nodes[1].port}`, tunnelData(echo.port, { serviceName: 'new-while-down' }), { fingerprint: f.cert.fingerprint })
    f.clients.push(refused)
    let message = ''
    await eventually(async () => {
      message = await refused.ready().then(() => 'registered', (err: Error) => err.message)
      expect(message).to.match(/cluster registry \(NATS\) cannot be reached/)
    }, 15_000, 100)
    expect(lines.join('\n')).to.match(/NATS\) cannot be reached/)
    await refused.close()
    // A known service still takes new sessions, on the port it has.
    const second = startClient(f.nodes[1], tunnelData(echo.port, { serviceName: 'known' }))
    f.clients.push(second)
    expect((await second.ready()).frontendPort).to.equal(port)

    const back = Date.now()
    await Promise.all(f.nats.nodes.map(async n => await n.start()))
    // Refused (a clear message, as above) until the node has NATS again.
    const laterPort = await eventually(async () => {
      const later = startClient(f.nodes[1], tunnelData(echo.port, { serviceName: 'after-nats-back' }))
      f.clients.push(later)
      try { return (await later.ready()).frontendPort } catch (err) { await later.close(); throw err }
    }, 30_000, 100)
    for (const n of f.nodes) await eventually(() => expect(n.registry.services.get('after-nats-back')?.port).to.equal(laterPort), 10_000)
    say(`all of NATS back: a new service registered ${Date.now() - back} ms after the restart`)
    // Caught up: both nodes list both sessions of the known service, and serve the new one.
    for (const n of f.nodes) await eventually(() => expect(n.registry.services.get('known')?.sessions.length).to.equal(2), 20_000)
    for (let i = 0; i < 2; i++) expect(sha256(await exchange(laterPort, payload, frontendHostOf(i)))).to.equal(sha256(payload))
  })
})
