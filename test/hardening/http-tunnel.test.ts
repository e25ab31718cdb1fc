import { request } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { expect } from 'chai'
import { HTTP_TUNNEL_HEADERS, HTTP_TUNNEL_PATHS, PROTOCOL_VERSION, REFUSAL_HEADER, subprotocolFor } from '../../protocol/index.js'
import { eventually, freePort } from '../fixtures/net.js'
import { TOKEN, startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import { transferBothWays, hashingBackend } from '../proxy/helpers.js'
import { openTunnels } from './helpers.js'
import type { IncomingHttpHeaders } from 'node:http'
import type { TunnelServer } from '../../index.js'

interface Answer { status: number, headers: IncomingHttpHeaders, body: Buffer }

/**
 * One request to the server: `port` its plain HTTP-transport port, or `{ tls: port }` its TLS
 * port (certificate not checked). The answer is read whole (bounded by the server's hold).
 */
async function ask (port: number | { tls: number }, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer): Promise<Answer> {
  return await new Promise<Answer>((resolve, reject) => {
    const options = { host: '127.0.0.1', method, path, headers, agent: false }
    const send = typeof port === 'number' ? request : httpsRequest
    const req = send({ ...options, port: typeof port === 'number' ? port : port.tls, rejectUnauthorized: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.setTimeout(10_000, () => req.destroy(new Error('no answer')))
    req.on('error', reject)
    req.end(body)
  })
}

/** A yamux ping (SYN) carrying `opaque`: the server's muxer answers it with a ping ACK (12 bytes). */
const yamuxPing = (opaque: number): Buffer => {
  const b = Buffer.alloc(12)
  b[1] = 2
  b.writeUInt16BE(1, 2)
  b.writeUInt32BE(opaque, 8)
  return b
}

describe('hardening: bad input on the HTTP transport endpoints', function () {
  this.timeout(60_000)
  let server: TunnelServer
  let port: number
  const refused: string[] = []

  before(async function () {
    server = await startServer({ httpTunnelPort: await freePort(), handshakeTimeoutMs: 1500 })
    port = server.httpTunnelPort ?? 0
    server.on('registrationRefused', (e) => refused.push(e.reason))
  })
  after(async function () { await server?.close() })

  const open = async (headers: Record<string, string> = {}): Promise<Answer> =>
    await ask({ tls: server.port }, 'POST', HTTP_TUNNEL_PATHS.open, { [HTTP_TUNNEL_HEADERS.protocol]: subprotocolFor('yamux'), authorization: `Bearer ${TOKEN}`, ...headers })
  const sessionOf = (a: Answer): string => String(a.headers[HTTP_TUNNEL_HEADERS.session])

  it('garbage and unknown paths are refused with a status, nothing else happens', async function () {
    expect((await ask(port, 'GET', '/')).status).to.equal(404)
    expect((await ask(port, 'GET', HTTP_TUNNEL_PATHS.open)).status).to.equal(405)
    const noProtocol = await ask({ tls: server.port }, 'POST', HTTP_TUNNEL_PATHS.open, { authorization: `Bearer ${TOKEN}` })
    expect(noProtocol.status).to.equal(400)
    expect(noProtocol.headers[REFUSAL_HEADER]).to.match(/no reverselb subprotocol offered/)
    expect((await ask(port, 'GET', `${HTTP_TUNNEL_PATHS.down}?from=0`)).status).to.equal(404)
    expect((await ask(port, 'POST', `${HTTP_TUNNEL_PATHS.up}?seq=0`, { [HTTP_TUNNEL_HEADERS.session]: 'AAAA', [HTTP_TUNNEL_HEADERS.ack]: '0' }, Buffer.from('x'))).status).to.equal(404)
    expect(server.registry.services.size).to.equal(0)
  })

  it('the plain-HTTP port opens no session without the end-to-end layer, before looking at the token', async function () {
    const failures: unknown[] = []
    const count = (e: unknown): void => { failures.push(e) }
    server.on('authFailure', count)
    try {
      for (const offer of [subprotocolFor('yamux'), `${subprotocolFor('yamux', PROTOCOL_VERSION, true)},${subprotocolFor('yamux')}`]) {
        const a = await ask(port, 'POST', HTTP_TUNNEL_PATHS.open, { [HTTP_TUNNEL_HEADERS.protocol]: offer, authorization: 'Bearer wrong' })
        expect(a.status).to.equal(400)
        expect(a.headers[REFUSAL_HEADER]).to.match(/only sessions with the end-to-end layer/)
      }
      expect(failures).to.deep.equal([])
    } finally {
      server.off('authFailure', count)
    }
  })

  it('a session id is unguessable (192 random bits) and works only with its own session', async function () {
    const [a, b] = [await open(), await open()]
    expect(a.status).to.equal(200)
    expect(sessionOf(a)).to.match(/^[A-Za-z0-9_-]{32}$/)
    expect(sessionOf(a)).not.to.equal(sessionOf(b))
    const forged = sessionOf(a).slice(0, -1) + (sessionOf(a).endsWith('A') ? 'B' : 'A')
    expect((await ask({ tls: server.port }, 'GET', `${HTTP_TUNNEL_PATHS.down}?from=0&hold=1000`, { [HTTP_TUNNEL_HEADERS.session]: forged })).status).to.equal(404)
  })

  it('a wrong token opens nothing and counts against the address; the limiter then refuses outright', async function () {
    // A server of its own: the limiter would refuse this address everything after.
    const own = await startServer({ httpTunnelPort: await freePort(), limits: { authFailuresPerWindow: 5 } })
    try {
      const openOwn = async (): Promise<Answer> => await ask({ tls: own.port }, 'POST', HTTP_TUNNEL_PATHS.open,
        { [HTTP_TUNNEL_HEADERS.protocol]: subprotocolFor('yamux'), authorization: 'Bearer nope' })
      const wrong = await openOwn()
      expect(wrong.status).to.equal(401)
      expect(wrong.body.toString()).not.to.contain('nope')
      let last = wrong
      for (let i = 0; i < 6 && last.status !== 429; i++) last = await openOwn()
      expect(last.status).to.equal(429)
    } finally {
      await own.close()
    }
  })

  describe('on an open session', function () {
    // Sessions that live long enough to be played with (5 s to register), without the layer (on the TLS port).
    let patient: TunnelServer
    let lport: { tls: number }
    before(async function () {
      patient = await startServer({ httpTunnelPort: await freePort(), handshakeTimeoutMs: 5000 })
      lport = { tls: patient.port }
    })
    after(async function () { await patient?.close() })
    const openL = async (): Promise<string> => {
      const a = await ask(lport, 'POST', HTTP_TUNNEL_PATHS.open, { [HTTP_TUNNEL_HEADERS.protocol]: subprotocolFor('yamux'), authorization: `Bearer ${TOKEN}` })
      expect(a.status).to.equal(200)
      return sessionOf(a)
    }
    const up = async (session: string, seq: string, body: Buffer, ack = '0', extra: Record<string, string> = {}): Promise<Answer> =>
      await ask(lport, 'POST', `${HTTP_TUNNEL_PATHS.up}?seq=${seq}`, { [HTTP_TUNNEL_HEADERS.session]: session, [HTTP_TUNNEL_HEADERS.ack]: ack, ...extra }, body)

    it('a replayed upload is acknowledged again and dropped; out-of-order and bad offsets are refused', async function () {
      const s = await openL()
      const ping = yamuxPing(42)
      const first = await up(s, '0', ping)
      expect([first.status, first.headers[HTTP_TUNNEL_HEADERS.ack]]).to.deep.equal([200, '12'])
      const replay = await up(s, '0', ping)
      expect([replay.status, replay.headers[HTTP_TUNNEL_HEADERS.ack]]).to.deep.equal([200, '12'])
      const gap = await up(s, '100', ping)
      expect(gap.status).to.equal(416)
      expect(gap.headers[REFUSAL_HEADER]).to.match(/out of order/)
      expect((await up(s, '-1', ping)).status).to.equal(400)
      expect((await up(s, 'x', ping)).status).to.equal(400)
      expect((await up(s, '12', Buffer.alloc(0), '999')).status).to.equal(416)
      // Not over the plain-HTTP port: this session has no end-to-end layer.
      expect((await ask(patient.httpTunnelPort ?? 0, 'GET', `${HTTP_TUNNEL_PATHS.down}?from=0&hold=1000`, { [HTTP_TUNNEL_HEADERS.session]: s })).status).to.equal(404)
      // One ping went through, once: the download holds exactly one answer (12 bytes).
      const down = await ask(lport, 'GET', `${HTTP_TUNNEL_PATHS.down}?from=0&hold=1000`, { [HTTP_TUNNEL_HEADERS.session]: s })
      expect(down.status).to.equal(200)
      expect(down.headers['cache-control']).to.match(/no-transform/)
      expect(down.body.length).to.equal(12)
      expect(down.body.readUInt32BE(8)).to.equal(42)
      // Resuming from before what was acknowledged, or past what was sent, is refused.
      expect((await ask(lport, 'GET', `${HTTP_TUNNEL_PATHS.down}?from=13&hold=1000`, { [HTTP_TUNNEL_HEADERS.session]: s })).status).to.equal(416)
    })

    it('oversized bodies and bodies of no stated length are refused before they are read', async function () {
      const s = await openL()
      const big = await new Promise<number>((resolve, reject) => {
        const req = httpsRequest({ host: '127.0.0.1', port: lport.tls, rejectUnauthorized: false, method: 'POST', path: `${HTTP_TUNNEL_PATHS.up}?seq=0`, agent: false,
          headers: { [HTTP_TUNNEL_HEADERS.session]: s, [HTTP_TUNNEL_HEADERS.ack]: '0', 'content-length': String(64 * 1024 * 1024) } }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
        req.on('error', reject)
        // Headers only: the 64 MiB never come, the answer must come anyway.
        req.flushHeaders()
      })
      expect(big).to.equal(413)
      const chunked = await new Promise<number>((resolve, reject) => {
        const req = httpsRequest({ host: '127.0.0.1', port: lport.tls, rejectUnauthorized: false, method: 'POST', path: `${HTTP_TUNNEL_PATHS.up}?seq=0`, agent: false,
          headers: { [HTTP_TUNNEL_HEADERS.session]: s, [HTTP_TUNNEL_HEADERS.ack]: '0', 'transfer-encoding': 'chunked' } }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
        req.on('error', reject)
        req.write('abc')
      })
      expect(chunked).to.equal(411)
    })

    it('a flood of downloads of one session: each new one ends the one before, one is left', async function () {
      const s = await openL()
      const started = Date.now()
      const answers = await Promise.all(Array.from({ length: 40 }, async () => {
        const a = await ask(lport, 'GET', `${HTTP_TUNNEL_PATHS.down}?from=0&hold=3000`, { [HTTP_TUNNEL_HEADERS.session]: s })
        return { ...a, ms: Date.now() - started }
      }))
      expect(answers.every(a => a.status === 200)).to.equal(true)
      // Only the last one was held for its 3 s; the 39 before it ended as soon as the next came.
      expect(answers.filter(a => a.ms < 2500).length).to.equal(39)
    })

    it('a session that never registers is closed after the handshake time, then unknown', async function () {
      const s = await openL()
      await eventually(async () => {
        const a = await ask(lport, 'GET', `${HTTP_TUNNEL_PATHS.down}?from=0&hold=1000`, { [HTTP_TUNNEL_HEADERS.session]: s })
        if (a.status !== 404 && a.status !== 410) throw new Error(`still there (${a.status})`)
      }, 30_000, 500)
      await eventually(() => expect(openTunnels(patient)).to.equal(0), 10_000)
    })
  })

  it('an e2e session (no token at the open) that never completes its inner TLS is closed after the handshake time', async function () {
    const a = await ask(port, 'POST', HTTP_TUNNEL_PATHS.open, { [HTTP_TUNNEL_HEADERS.protocol]: subprotocolFor('yamux', PROTOCOL_VERSION, true) })
    expect(a.status).to.equal(200)
    const started = Date.now()
    await eventually(async () => {
      const d = await ask(port, 'GET', `${HTTP_TUNNEL_PATHS.down}?from=0&hold=1000`, { [HTTP_TUNNEL_HEADERS.session]: sessionOf(a) })
      if (d.status !== 404) throw new Error(`still there (${d.status})`)
    }, 20_000, 300)
    // handshakeTimeoutMs 1.5 s; 5x margin.
    expect(Date.now() - started).to.be.below(7500 + 1000)
  })

  it('after all this, a real client still gets through', async function () {
    const backend = await hashingBackend()
    try {
      const c = startClient(server, tunnelData(backend.port), { transport: 'http' })
      try {
        const { frontendPort } = await c.ready()
        await transferBothWays(frontendPort, backend)
      } finally {
        await c.close()
      }
    } finally {
      await backend.close()
    }
  })
})
