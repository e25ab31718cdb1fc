import { expect } from 'chai'
import { TunnelClient } from '../../index.js'
import { connectLines, requireTools, startTinyproxy } from '../fixtures/proxies.js'
import { eventually } from '../fixtures/net.js'
import { startServer, testLogger, tunnelData } from '../fixtures/tunnel.js'
import { hashingBackend, transferBothWays } from './helpers.js'
import type { TunnelClientOptions, TunnelServer } from '../../index.js'
import type { ProxyProcess } from '../fixtures/proxies.js'
import type { HashingBackend } from './helpers.js'

describe('proxy: tinyproxy (plain CONNECT, idle timeout, restarts)', function () {
  let server: TunnelServer
  let backend: HashingBackend
  const proxies: ProxyProcess[] = []
  const clients: TunnelClient[] = []

  before(async function () {
    requireTools(this, ['tinyproxy'])
    server = await startServer()
    backend = await hashingBackend()
  })
  afterEach(async function () {
    await Promise.all(clients.splice(0).map(async c => await c.close()))
    await Promise.all(proxies.splice(0).map(async p => await p.close()))
  })
  after(async function () {
    await server?.close()
    await backend?.close()
  })

  const client = (proxy: ProxyProcess, opts: TunnelClientOptions = {}): TunnelClient => {
    const c = new TunnelClient(`127.0.0.1:${server.port}`, tunnelData(backend.port), {
      fingerprint: server.fingerprint, proxy: proxy.url, maxBackoffMs: 1000, logger: testLogger, ...opts
    })
    clients.push(c)
    return c
  }

  it('carries a tunnel through CONNECT byte-exactly, as the proxy log shows', async function () {
    const proxy = await startTinyproxy()
    proxies.push(proxy)
    const { frontendPort } = await client(proxy).ready()
    await transferBothWays(frontendPort, backend)
    expect(connectLines(proxy.accessLog(), `127.0.0.1:${server.port}`)).to.have.length(1)
  })

  it('stays up across a 3 s proxy idle timeout with a 1 s keepalive; without it the proxy cuts the tunnel', async function () {
    this.timeout(30_000)
    const proxy = await startTinyproxy({ idleTimeoutSec: 3 })
    proxies.push(proxy)
    // Control: a keepalive longer than the proxy's timeout (and the server's own 20 s pings) loses the tunnel.
    const lazy = client(proxy, { keepaliveMs: 30_000 })
    const lazyLost = new Promise<number>(resolve => lazy.once('disconnected', () => resolve(Date.now())))
    await lazy.ready()
    const registeredAt = Date.now()
    const lostAt = await Promise.race([lazyLost, new Promise<number>(resolve => setTimeout(() => resolve(-1), 8000))])
    expect(lostAt, 'the proxy idle timeout must cut a tunnel without keepalive').to.be.greaterThan(0)
    expect(lostAt - registeredAt).to.be.within(2000, 7000)
    await lazy.close()
    clients.splice(clients.indexOf(lazy), 1)

    const busy = client(proxy, { keepaliveMs: 1000 })
    let drops = 0
    busy.on('disconnected', () => { drops++ })
    const { frontendPort } = await busy.ready()
    const before = connectLines(proxy.accessLog(), `127.0.0.1:${server.port}`).length
    await new Promise(resolve => setTimeout(resolve, 7000))
    expect(drops, 'tunnel dropped despite keepalive').to.equal(0)
    expect(busy.connectedSessions).to.equal(1)
    await transferBothWays(frontendPort, backend)
    // Same session, no new CONNECT: the tunnel itself stayed up.
    expect(connectLines(proxy.accessLog(), `127.0.0.1:${server.port}`)).to.have.length(before)
  })

  it('reconnects and re-registers on its own when the proxy is killed and restarted', async function () {
    this.timeout(30_000)
    const proxy = await startTinyproxy()
    proxies.push(proxy)
    const c = client(proxy, { keepaliveMs: 1000 })
    const first = await c.ready()
    await transferBothWays(first.frontendPort, backend)
    const lost = new Promise(resolve => c.once('disconnected', resolve))
    await proxy.stop('SIGKILL')
    await lost
    // While the proxy is down, the client keeps trying and says why it fails.
    const err = await new Promise<Error>(resolve => c.once('error', resolve))
    expect(err.message).to.match(/proxy 127\.0\.0\.1:\d+ is unreachable/)
    const back = new Promise<{ frontendPort?: number }>(resolve => c.once('connected', resolve))
    await proxy.start()
    const again = await back
    expect(again.frontendPort, 'the same frontend port is registered again').to.equal(first.frontendPort)
    await eventually(async () => { await transferBothWays(first.frontendPort, backend) }, 10_000, 200)
    expect(connectLines(proxy.accessLog(), `127.0.0.1:${server.port}`).length).to.be.at.least(2)
  })
})
