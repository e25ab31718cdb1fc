import { expect } from 'chai'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { once } from 'node:events'
import { join } from 'node:path'
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls'
import { selfSignedCertificate } from '../../server/certificate.js'
import { WebSocket } from 'ws'
import { AuthorizationError, RegistrationRefusedError, TlsVerificationError, TunnelClient } from '../../index.js'
import { encodeFrame, readFrame } from '../../protocol/index.js'
import { rawSession } from '../hardening/helpers.js'
import { echoServer, exchange, randomPayload } from '../fixtures/net.js'
import { TOKEN, startClient, startServer, testLogger, tunnelData } from '../fixtures/tunnel.js'
import type { TunnelClientOptions, TunnelServer } from '../../index.js'
import type { AddressInfo } from 'node:net'
import type { TcpServer } from '../fixtures/net.js'

describe('handshake: token, TLS, protocol version, registration', function () {
  let server: TunnelServer
  let backend: TcpServer

  before(async function () {
    backend = await echoServer()
    server = await startServer({ dynPortCount: 4 })
  })
  after(async function () {
    await server.close()
    await backend.close()
  })

  it('refuses a wrong token with 401 and the client says "authorization failed"', async function () {
    const failures: string[] = []
    server.on('authFailure', (e) => failures.push(e.remoteAddress))
    const client = startClient(server, tunnelData(backend.port, { token: 'wrong' }))
    const err = await client.ready().then(() => undefined, (e: Error) => e)
    await client.close()
    expect(err).to.be.instanceOf(AuthorizationError)
    expect(err?.message).to.match(/authorization failed/)
    expect(err?.message).not.to.contain('wrong')
    expect(failures.length).to.be.greaterThan(0)
  })

  it('backs off after an authorization failure instead of hammering', async function () {
    this.timeout(10_000)
    let failures = 0
    const count = (): void => { failures++ }
    server.on('authFailure', count)
    const client = startClient(server, tunnelData(backend.port, { token: 'wrong' }))
    await new Promise(resolve => setTimeout(resolve, 3000))
    await client.close()
    server.off('authFailure', count)
    expect(failures).to.equal(1)
  })

  it('refuses an unverifiable self-signed certificate by default', async function () {
    const client = new TunnelClient(`localhost:${server.port}`, tunnelData(backend.port), { logger: testLogger })
    const err = await client.ready().then(() => undefined, (e: Error) => e)
    await client.close()
    expect(err).to.be.instanceOf(TlsVerificationError)
    expect(err?.message).to.match(/not trusted/)
  })

  it('accepts the server by its pinned fingerprint and refuses a wrong pin', async function () {
    const good = startClient(server, tunnelData(backend.port, { serviceName: 'pinned' }))
    const { frontendPort } = await good.ready()
    expect((await exchange(frontendPort, Buffer.from('pinned ok'))).toString()).to.equal('pinned ok')
    await good.close()
    const bad = startClient(server, tunnelData(backend.port), { fingerprint: 'AA:'.repeat(31) + 'AA' })
    const err = await bad.ready().then(() => undefined, (e: Error) => e)
    await bad.close()
    expect(err).to.be.instanceOf(TlsVerificationError)
    expect(err?.message).to.match(/fingerprint mismatch/)
  })

  it('masks its frames unless a pinned fingerprint proves TLS ends at the server or the end-to-end layer encrypts them', async function () {
    this.timeout(20_000)
    // A TLS tap holding the server's own certificate and key reads each client frame's masking key.
    const dir = await mkdtemp(join(tmpdir(), 'reverselb-cert-'))
    const own = await selfSignedCertificate('localhost')
    await writeFile(join(dir, 'cert.pem'), own.cert)
    await writeFile(join(dir, 'key.pem'), own.key, { mode: 0o600 })
    const behind = await startServer({ tlsCert: join(dir, 'cert.pem'), tlsKey: join(dir, 'key.pem') })
    const masks = new Set<string>()
    const tap = createTlsServer({ cert: own.cert, key: own.key }, (c) => {
      const up = tlsConnect({ host: '127.0.0.1', port: behind.port, rejectUnauthorized: false })
      c.on('error', () => up.destroy()).pipe(up).on('error', () => c.destroy()).pipe(c)
      c.on('data', frameMasks(key => masks.add(key)))
    })
    tap.listen(0, '127.0.0.1')
    await once(tap, 'listening')
    const tapPort = (tap.address() as AddressInfo).port
    const masksOf = async (opts: TunnelClientOptions, name: string): Promise<Set<string>> => {
      masks.clear()
      const client = new TunnelClient(`127.0.0.1:${tapPort}`, tunnelData(backend.port, { serviceName: name }), { logger: testLogger, proxy: 'none', ...opts })
      try {
        const { frontendPort } = await client.ready()
        const payload = randomPayload(200_000)
        expect((await exchange(frontendPort, payload)).equals(payload)).to.equal(true)
      } finally {
        await client.close()
      }
      return new Set(masks)
    }
    try {
      const pinned = await masksOf({ fingerprint: own.fingerprint }, 'pinned-masks')
      expect([...pinned]).to.deep.equal(['00000000'])
      const insecure = await masksOf({ insecureTls: true, e2e: 'never' }, 'insecure-masks')
      expect(insecure.size).to.be.above(1)
      expect(insecure.has('00000000')).to.equal(false)
      // With the layer (on by default with --insecuretls) a proxy could read only ciphertext no script chose.
      const layered = await masksOf({ insecureTls: true }, 'e2e-masks')
      expect([...layered]).to.deep.equal(['00000000'])
    } finally {
      tap.close()
      await behind.close()
      await rm(dir, { recursive: true })
    }
  })

  it('trusts the server through --ca with the certificate as CA', async function () {
    const pem = (server as unknown as { certificate: { cert: string } }).certificate.cert
    const client = new TunnelClient(`localhost:${server.port}`, tunnelData(backend.port, { serviceName: 'ca' }), { ca: pem, logger: testLogger })
    const { frontendPort } = await client.ready()
    expect(frontendPort).to.be.a('number')
    await client.close()
  })

  it('serves an operator\'s own certificate (--tls-cert/--tls-key), trusted through --ca', async function () {
    const dir = await mkdtemp(join(tmpdir(), 'reverselb-cert-'))
    const own = await selfSignedCertificate('tunnel.example.test')
    await writeFile(join(dir, 'cert.pem'), own.cert)
    await writeFile(join(dir, 'key.pem'), own.key, { mode: 0o600 })
    const mine = await startServer({ tlsCert: join(dir, 'cert.pem'), tlsKey: join(dir, 'key.pem') })
    expect(mine.fingerprint).to.equal(own.fingerprint)
    const client = startClient(mine, tunnelData(backend.port, { serviceName: 'owncert' }), { fingerprint: undefined, ca: own.cert, insecureTls: false })
    const err = await client.ready().then(() => undefined, (e: Error) => e)
    await client.close()
    // 127.0.0.1 is not a name in that certificate: refused even though the CA is trusted.
    expect(err?.message).to.match(/not trusted/)
    const byPin = startClient(mine, tunnelData(backend.port, { serviceName: 'owncert' }))
    const { frontendPort } = await byPin.ready()
    expect((await exchange(frontendPort, Buffer.from('own cert'))).toString()).to.equal('own cert')
    await byPin.close()
    await mine.close()
    await rm(dir, { recursive: true })
  })

  it('refuses an unknown protocol version with a reason the client can print', async function () {
    const ws = new WebSocket(`wss://127.0.0.1:${server.port}/tunnel`, 'reverselb.v99.yamux', {
      rejectUnauthorized: false, headers: { authorization: `Bearer ${TOKEN}` }
    })
    const res = await new Promise<{ status?: number, reason?: string | string[] }>((resolve, reject) => {
      ws.on('unexpected-response', (_req, r) => resolve({ status: r.statusCode, reason: r.headers['x-reverselb-error'] }))
      ws.on('open', () => reject(new Error('upgrade should have been refused')))
      ws.on('error', reject)
    })
    expect(res.status).to.equal(400)
    expect(res.reason).to.match(/unsupported protocol version v99.*speaks v1/)
  })

  describe('malformed registrations are refused with a reason, and the server keeps serving', function () {
    async function register (raw: Uint8Array): Promise<unknown> {
      const { ws, muxer } = await rawSession(server, 'yamux')
      const control = muxer.open()
      control.write(Buffer.from(raw))
      const frame = await readFrame(control, { maxBytes: 16384, timeoutMs: 5000, what: 'response' })
      ws.terminate()
      return frame.message
    }
    const frameOf = (body: string): Uint8Array => {
      const b = Buffer.from(body)
      const out = Buffer.alloc(4 + b.length)
      out.writeUInt32BE(b.length, 0)
      b.copy(out, 4)
      return out
    }

    it('not JSON', async function () {
      expect(await register(frameOf('{nope'))).to.deep.equal({ error: 'registration is not valid JSON' })
    })
    it('oversized', async function () {
      const head = Buffer.alloc(4)
      head.writeUInt32BE(50_000_000, 0)
      expect(await register(head)).to.have.property('error').that.matches(/exceeds the limit/)
    })
    it('wrong types', async function () {
      expect(await register(encodeFrame({ serviceName: 12, targetAddresses: [] }))).to.have.property('error').that.matches(/serviceName/)
      expect(await register(encodeFrame({ serviceName: 'x', targetAddresses: 'a' }))).to.have.property('error').that.matches(/targetAddresses/)
      expect(await register(encodeFrame({ serviceName: 'x', targetAddresses: [], frontendData: { port: 70000 } }))).to.have.property('error').that.matches(/frontendData.port/)
    })
    it('control characters in names', async function () {
      expect(await register(encodeFrame({ serviceName: 'evil\nname', targetAddresses: [] }))).to.have.property('error').that.matches(/printable/)
    })
    it('deeply nested JSON', async function () {
      expect(await register(frameOf('['.repeat(5000) + ']'.repeat(5000)))).to.have.property('error').that.matches(/must be an object/)
    })
    after(async function () {
      const client = startClient(server, tunnelData(backend.port, { serviceName: 'after-garbage' }))
      const { frontendPort } = await client.ready()
      expect((await exchange(frontendPort, Buffer.from('still serving'))).toString()).to.equal('still serving')
      await client.close()
    })
  })

  it('refuses a port held by another service, clearly', async function () {
    const a = startClient(server, tunnelData(backend.port, { serviceName: 'holder' }))
    const { frontendPort } = await a.ready()
    const b = startClient(server, tunnelData(backend.port, { serviceName: 'intruder', frontendData: { port: frontendPort } }))
    const err = await b.ready().then(() => undefined, (e: Error) => e)
    await b.close()
    expect(err).to.be.instanceOf(RegistrationRefusedError)
    expect(err?.message).to.contain(`port ${frontendPort} is already used by service "holder"`)
    // The holder is unaffected.
    expect((await exchange(frontendPort, Buffer.from('mine'))).toString()).to.equal('mine')
    await a.close()
  })
})

/**
 * Reads a client's byte stream (HTTP upgrade, then WebSocket frames) and reports each frame's
 * masking key (hex): a walk over frame headers only, payload skipped.
 */
function frameMasks (onKey: (key: string) => void): (chunk: Buffer) => void {
  let inHttp = true
  let http = ''
  let head: number[] = []
  let skip = 0
  return (chunk) => {
    let pos = 0
    if (inHttp) {
      http += chunk.toString('latin1')
      const end = http.indexOf('\r\n\r\n')
      if (end < 0) return
      inHttp = false
      pos = chunk.length - (http.length - end - 4)
    }
    while (pos < chunk.length) {
      if (skip > 0) { const n = Math.min(skip, chunk.length - pos); skip -= n; pos += n; continue }
      head.push(chunk[pos++])
      const code = (head[1] ?? 0) & 0x7f
      const size = 2 + (code === 126 ? 2 : code === 127 ? 8 : 0) + 4
      if (head.length < 2 || head.length < size) continue
      const h = Buffer.from(head)
      onKey(h.subarray(size - 4, size).toString('hex'))
      skip = code === 126 ? h.readUInt16BE(2) : code === 127 ? Number(h.readBigUInt64BE(2)) : code
      head = []
    }
  }
}
