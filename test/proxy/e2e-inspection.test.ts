import { randomBytes } from 'node:crypto'
import { expect } from 'chai'
import { TlsVerificationError, TunnelClient } from '../../index.js'
import { requireTools, startMitmdump } from '../fixtures/proxies.js'
import { captureLogger } from '../fixtures/logger.js'
import { echoServer, eventually, exchange } from '../fixtures/net.js'
import { TOKEN, startServer, tunnelData } from '../fixtures/tunnel.js'
import type { TunnelClientOptions, TunnelServer } from '../../index.js'
import type { MitmdumpProcess } from '../fixtures/proxies.js'
import type { TcpServer } from '../fixtures/net.js'

/**
 * mitmproxy decrypts the client's TLS with its own CA and writes down everything it reads
 * (mitmdump -w). With the end-to-end layer it must find neither the token nor what went through
 * the tunnel; with --e2e never it finds both, which shows the dump would catch a leak.
 */
describe('proxy: end-to-end layer through a recording TLS-inspecting proxy (mitmdump)', function () {
  this.timeout(60_000)
  let server: TunnelServer
  let echo: TcpServer
  let mitm: MitmdumpProcess | undefined
  let client: TunnelClient | undefined

  before(async function () {
    requireTools(this, ['mitmdump'])
    server = await startServer()
    echo = await echoServer()
  })
  beforeEach(async function () { mitm = await startMitmdump() })
  afterEach(async function () {
    await client?.close()
    client = undefined
    await mitm?.close()
  })
  after(async function () {
    await server?.close()
    await echo?.close()
  })

  /** Registers through mitmdump, echoes a marker both ways, closes, and returns what mitmdump recorded and the client logged. */
  const tunnelMarker = async (opts: TunnelClientOptions): Promise<{ dump: Buffer, marker: string, lines: string[] }> => {
    const proxy = mitm as MitmdumpProcess
    const { logger, lines } = captureLogger()
    client = new TunnelClient(`127.0.0.1:${server.port}`, tunnelData(echo.port), { proxy: proxy.url, maxBackoffMs: 1000, logger, ...opts })
    const { frontendPort } = await client.ready()
    const marker = `MARKER-${randomBytes(8).toString('hex')}`
    const payload = Buffer.from(marker.repeat(64))
    expect((await exchange(frontendPort, payload)).equals(payload)).to.equal(true)
    await client.close()
    client = undefined
    // mitmdump writes a WebSocket flow once it has ended.
    await eventually(() => { if (!proxy.dump().includes('/tunnel')) throw new Error('mitmdump has not written the tunnel flow yet') }, 10_000)
    await proxy.stop()
    return { dump: proxy.dump(), marker, lines }
  }

  it('with its CA (--ca) the layer is on: the dump holds the upgrade but neither the token nor the tunneled bytes', async function () {
    const { dump, marker, lines } = await tunnelMarker({ ca: mitm?.caPem })
    expect(lines.some(l => /end-to-end layer on .*--ca/.test(l)), 'client logs the layer and why').to.equal(true)
    expect(dump.includes(`127.0.0.1:${server.port}`)).to.equal(true)
    expect(dump.includes(TOKEN), 'token in the dump').to.equal(false)
    expect(dump.includes(marker), 'marker in the dump').to.equal(false)
  })

  it('with --e2e never the same dump holds both the token and the tunneled bytes', async function () {
    const { dump, marker } = await tunnelMarker({ ca: mitm?.caPem, e2e: 'never' })
    expect(dump.includes(TOKEN), 'token in the dump').to.equal(true)
    expect(dump.includes(marker), 'marker in the dump').to.equal(true)
  })

  it('--fingerprint pins the server inside the layer and works through the inspection (no --ca)', async function () {
    const { dump, marker, lines } = await tunnelMarker({ fingerprint: server.fingerprint })
    expect(lines.some(l => /end-to-end layer on .*TLS interception detected/.test(l))).to.equal(true)
    expect(dump.includes(TOKEN)).to.equal(false)
    expect(dump.includes(marker)).to.equal(false)
  })

  it('--fingerprint with --e2e never still refuses the re-signed certificate before sending the token', async function () {
    const { logger } = captureLogger()
    client = new TunnelClient(`127.0.0.1:${server.port}`, tunnelData(echo.port), { proxy: mitm?.url, fingerprint: server.fingerprint, e2e: 'never', logger })
    const err = await client.ready().then(() => undefined, (e: Error) => e)
    expect(err).to.be.instanceOf(TlsVerificationError)
    expect(err?.message).to.match(/TLS interception detected/)
  })
})
