import { once } from 'node:events'
import { createServer as createTlsServer } from 'node:tls'
import { expect } from 'chai'
import { TunnelClient, UpgradeRefusedError } from '../../index.js'
import { selfSignedCertificate } from '../../server/certificate.js'
import { connectLines, requireTools, startTinyproxy } from '../fixtures/proxies.js'
import { captureLogger } from '../fixtures/logger.js'
import { freePort, tcpServer } from '../fixtures/net.js'
import { startServer, testLogger, tunnelData } from '../fixtures/tunnel.js'
import { firstError } from './helpers.js'
import type { TunnelClientOptions, TunnelServer } from '../../index.js'
import type { ProxyProcess } from '../fixtures/proxies.js'
import type { AddressInfo, Socket } from 'node:net'

/** Each failure on the way out names what failed, where, and why; retries go on meanwhile. */
describe('proxy: errors on the way out', function () {
  let server: TunnelServer
  let proxy: ProxyProcess
  let only443: ProxyProcess
  const clients: TunnelClient[] = []

  before(async function () {
    requireTools(this, ['tinyproxy'])
    server = await startServer()
    proxy = await startTinyproxy()
    only443 = await startTinyproxy({ connectPorts: [443] })
  })
  afterEach(async function () {
    await Promise.all(clients.splice(0).map(async c => await c.close()))
  })
  after(async function () {
    await proxy?.close()
    await only443?.close()
    await server?.close()
  })

  const client = (endpoint: string, opts: TunnelClientOptions): TunnelClient => {
    const c = new TunnelClient(endpoint, tunnelData(1), {
      fingerprint: server.fingerprint, maxBackoffMs: 1000, connectTimeoutMs: 3000, logger: testLogger, ...opts
    })
    clients.push(c)
    return c
  }

  it('proxy unreachable: names the proxy and the refused connection', async function () {
    const port = await freePort()
    const err = await firstError(client(`127.0.0.1:${server.port}`, { proxy: `http://127.0.0.1:${port}` }))
    expect(err.message).to.equal(`proxy 127.0.0.1:${port} is unreachable: connect ECONNREFUSED 127.0.0.1:${port}`)
  })

  it('proxy not answering: times out naming the proxy', async function () {
    // A TCP server that accepts and never says a word.
    const silent = await tcpServer(() => {})
    try {
      const started = Date.now()
      const err = await firstError(client(`127.0.0.1:${server.port}`, { proxy: `http://127.0.0.1:${silent.port}`, connectTimeoutMs: 1000 }))
      expect(err.message).to.equal(`proxy 127.0.0.1:${silent.port} did not open a tunnel to 127.0.0.1:${server.port} within 1000 ms`)
      expect(Date.now() - started).to.be.below(5000)
    } finally {
      await silent.close()
    }
  })

  it('CONNECT refused: shows the status and reason, and gives up (ready rejects)', async function () {
    const err = await client(`127.0.0.1:${server.port}`, { proxy: only443.url }).ready().then(() => undefined, (e: Error) => e)
    expect(err).to.be.instanceOf(UpgradeRefusedError)
    expect(err?.message).to.match(new RegExp(`^proxy 127\\.0\\.0\\.1:${only443.port} refused CONNECT to 127\\.0\\.0\\.1:${server.port}: HTTP 403 \\S+`))
    expect(err?.message).to.match(/only to port 443/)
    expect(connectLines(only443.accessLog(), `127.0.0.1:${server.port}`)).to.have.length.at.least(1)
  })

  it('DNS failure of the server host, direct', async function () {
    const err = await firstError(client('reverselb-no-such-host.invalid:443', { proxy: 'none' }))
    expect(err.message).to.match(/^cannot resolve the server host "reverselb-no-such-host\.invalid" \(DNS lookup failed: (ENOTFOUND|EAI_AGAIN)\)$/)
  })

  it('DNS failure of the proxy host', async function () {
    const err = await firstError(client(`127.0.0.1:${server.port}`, { proxy: 'http://proxy.reverselb-no-such-host.invalid:3128' }))
    expect(err.message).to.match(/^cannot resolve the proxy host "proxy\.reverselb-no-such-host\.invalid" \(DNS lookup failed: (ENOTFOUND|EAI_AGAIN)\)$/)
  })

  it('DNS failure of the server host at the proxy: the proxy\'s status is shown', async function () {
    const err = await firstError(client('reverselb-no-such-host.invalid:443', { proxy: proxy.url }))
    expect(err.message).to.match(new RegExp(`^proxy 127\\.0\\.0\\.1:${proxy.port} refused CONNECT to reverselb-no-such-host\\.invalid:443: HTTP 5\\d\\d \\S+`))
    expect(connectLines(proxy.accessLog(), 'reverselb-no-such-host.invalid:443')).to.have.length.at.least(1)
  })

  it('TLS failure: the proxy reaches something that does not speak TLS', async function () {
    const plain = await tcpServer((s: Socket) => s.end('SSH-2.0-OpenSSH_9.2\r\n'))
    try {
      const err = await firstError(client(`127.0.0.1:${plain.port}`, { proxy: proxy.url }))
      expect(err.message).to.match(new RegExp(`^TLS handshake with 127\\.0\\.0\\.1:${plain.port} through proxy 127\\.0\\.0\\.1:${proxy.port} failed: .+ \\(does the proxy forward to a reverselb server\\?\\)$`))
    } finally {
      await plain.close()
    }
  })

  it('the 101 never comes: a TLS peer that swallows the upgrade request', async function () {
    const cert = await selfSignedCertificate('localhost')
    const held: Socket[] = []
    const sink = createTlsServer({ cert: cert.cert, key: cert.key }, (s) => { held.push(s); s.resume() })
    sink.listen(0, '127.0.0.1')
    await once(sink, 'listening')
    const port = (sink.address() as AddressInfo).port
    try {
      // --transport websocket: auto would fall back to the HTTP transport (test/proxy/http-transport).
      const err = await firstError(client(`127.0.0.1:${port}`, { proxy: proxy.url, fingerprint: cert.fingerprint, connectTimeoutMs: 1500, transport: 'websocket' }))
      expect(err.message).to.equal(`no answer to the WebSocket upgrade from 127.0.0.1:${port} through proxy 127.0.0.1:${proxy.port} within 1500 ms: ` +
        'a proxy or middlebox may be holding back the upgrade (HTTP 101 never came)')
    } finally {
      for (const s of held) s.destroy()
      sink.close()
    }
  })

  it('a bad proxy URL is rejected without echoing it', async function () {
    const err = await firstError(client(`127.0.0.1:${server.port}`, { proxy: 'socks5://u:secretpw@127.0.0.1:1080' }))
    expect(err.message).to.match(/proxy scheme "socks5:" is not supported/)
    expect(err.message).not.to.include('secretpw')
  })

  it('logs each failure at error level while retrying with backoff', async function () {
    const port = await freePort()
    const { logger, lines } = captureLogger()
    const c = client(`127.0.0.1:${server.port}`, { proxy: `http://127.0.0.1:${port}`, logger })
    await firstError(c)
    await firstError(c)
    expect(lines.filter(l => l.startsWith('error ') && l.includes(`proxy 127.0.0.1:${port} is unreachable`)).length).to.be.at.least(2)
  })
})
