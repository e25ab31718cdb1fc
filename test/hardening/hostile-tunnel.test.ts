import { expect } from 'chai'
import { WebSocket } from 'ws'
import { MAX_CONTROL_MESSAGE_BYTES, MUXERS, encodeFrame } from '../../protocol/index.js'
import { echoServer, eventually, randomPayload, sha256 } from '../fixtures/net.js'
import { captureLogger } from '../fixtures/logger.js'
import { TOKEN, startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import {
  assertStillServes, closedWithin, exchangeWithTimeout, openTunnels, rawSession, rawTunnel,
  registerRaw, seededBytes, sleep
} from './helpers.js'
import type { TunnelServer } from '../../index.js'
import type { TcpServer } from '../fixtures/net.js'

const HANDSHAKE_MS = 1500
/** Raw bytes of a libp2p frame header, by muxer. */
const yamuxHeader = (type: number, flags: number, streamId: number, length: number): Buffer => {
  const b = Buffer.alloc(12)
  b[0] = 0; b[1] = type; b.writeUInt16BE(flags, 2); b.writeUInt32BE(streamId, 4); b.writeUInt32BE(length, 8)
  return b
}
const varint = (n: number): Buffer => {
  const out: number[] = []
  while (n >= 0x80) { out.push((n % 0x80) | 0x80); n = Math.floor(n / 0x80) }
  out.push(n)
  return Buffer.from(out)
}
/** mplex: varint(id << 3 | type), varint(length), data. Type 0 opens a stream. */
const mplexHeader = (id: number, type: number, length: number): Buffer => Buffer.concat([varint(id * 8 + type), varint(length)])
const frameOf = (body: string | Buffer): Buffer => {
  const b = Buffer.from(body)
  const out = Buffer.alloc(4 + b.length)
  out.writeUInt32BE(b.length, 0)
  b.copy(out, 4)
  return out
}
const registration = (serviceName: string, over: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ serviceName, frontendData: { port: 0 }, backendAcceptBacklog: 1, targetPort: 1, targetAddresses: ['127.0.0.1'], ...over })

describe('hostile input inside the tunnel', function () {
  this.timeout(60_000)
  let server: TunnelServer
  let backend: TcpServer
  const log = captureLogger()
  let n = 0
  const fresh = (what: string): string => `${what}-${++n}`

  before(async function () {
    backend = await echoServer()
    server = await startServer({ dynPortCount: 16, handshakeTimeoutMs: HANDSHAKE_MS, logger: log.logger })
  })
  after(async function () {
    await server.close()
    await backend.close()
  })
  afterEach(async function () {
    // Nothing hostile may leave a tunnel behind on the server, and it serves a normal client after.
    await eventually(() => expect(openTunnels(server)).to.equal(0), HANDSHAKE_MS * 3)
    await assertStillServes(server, backend.port, fresh('after'))
  })

  for (const muxer of MUXERS) {
    describe(`garbage and truncated frames (${muxer})`, function () {
      it('random bytes instead of muxer frames: the connection is closed', async function () {
        await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map(async (seed) => {
          const ws = await rawTunnel(server, muxer)
          ws.on('error', () => {})
          for (let i = 0; i < 4; i++) ws.send(seededBytes(seed * 100 + i, 64 + seed * 300))
          // Closed at once when the garbage is recognised as such, at the latest by the handshake timeout.
          await closedWithin(ws, HANDSHAKE_MS * 5)
        }))
      })

      it('a well-formed header announcing an absurd length: closed, nothing waits for 4 GiB', async function () {
        const ws = await rawTunnel(server, muxer)
        ws.on('error', () => {})
        const head = muxer === 'yamux'
          ? yamuxHeader(0, 0x1, 1, 0xffff_fff0) // Data | SYN on stream 1
          : mplexHeader(0, 0, 2 ** 40) // NEW_STREAM of 1 TiB
        ws.send(Buffer.concat([head, seededBytes(7, 1000)]))
        const ms = await closedWithin(ws, HANDSHAKE_MS * 5)
        // mplex refuses the length outright; yamux waits for the body until the handshake timeout.
        if (muxer === 'mplex') expect(ms).to.be.below(1000)
      })

      it('truncated frames, then the client goes away: the server forgets the connection', async function () {
        const cuts = muxer === 'yamux'
          ? [yamuxHeader(1, 0x1, 1, 256 * 1024).subarray(0, 7), Buffer.concat([yamuxHeader(0, 0x1, 1, 100), Buffer.alloc(10)])]
          : [mplexHeader(0, 0, 5).subarray(0, 1), Buffer.concat([mplexHeader(0, 0, 100), Buffer.alloc(3)])]
        for (const [i, cut] of cuts.entries()) {
          const ws = await rawTunnel(server, muxer)
          ws.on('error', () => {})
          ws.send(cut)
          await sleep(50)
          if (i === 0) ws.close(); else ws.terminate()
          await closedWithin(ws, 3000)
        }
      })

      it('a registration frame cut short: refused with a reason', async function () {
        const { ws, muxer: mux } = await rawSession(server, muxer)
        const control = mux.open()
        const whole = encodeFrame(registration(fresh('cut')))
        control.write(whole.subarray(0, whole.length - 5))
        control.end()
        const answer = await new Promise<string>((resolve) => {
          const chunks: Buffer[] = []
          control.attach({
            onData: (chunk) => chunks.push(chunk),
            onEnd: () => {},
            onDrain: () => {},
            onClose: () => resolve(Buffer.concat(chunks).subarray(4).toString())
          })
        })
        expect(answer).to.match(/stream ended before the registration was complete/)
        await closedWithin(ws, 3000)
      })

      it('an authenticated WebSocket that never registers is closed by the handshake timeout', async function () {
        const { ws } = await rawSession(server, muxer)
        const ms = await closedWithin(ws, HANDSHAKE_MS * 6)
        expect(ms).to.be.within(HANDSHAKE_MS - 200, HANDSHAKE_MS * 5)
      })

      it('oversized and deeply nested registrations are refused with a reason', async function () {
        const cases: Array<[Buffer, RegExp]> = [
          // A body one byte over the limit, really sent (not only announced).
          [frameOf(JSON.stringify({ ...registration('big'), pad: 'x'.repeat(MAX_CONTROL_MESSAGE_BYTES) }).slice(0, MAX_CONTROL_MESSAGE_BYTES + 1)), /exceeds the limit/],
          // Deeply nested but within the limit.
          [frameOf('{"a":'.repeat(2500) + '1' + '}'.repeat(2500)), /serviceName/],
          [frameOf('['.repeat(MAX_CONTROL_MESSAGE_BYTES / 2) + ']'.repeat(MAX_CONTROL_MESSAGE_BYTES / 2)), /must be an object/],
          // Nesting inside a field the server reads.
          [frameOf(JSON.stringify({ serviceName: 'nest', targetAddresses: [JSON.parse('['.repeat(2000) + ']'.repeat(2000))] })), /targetAddresses\[0\]/],
          [frameOf(JSON.stringify(registration('many', { targetAddresses: Array(1000).fill('127.0.0.1') }))), /at most 64/],
          [frameOf('{"serviceName":"dup","serviceName":"' + 'd'.repeat(200) + '","targetAddresses":[]}'), /serviceName/],
          [frameOf('\ufeff{}'), /not valid JSON/],
          [frameOf(Buffer.from([0xc3, 0x28, 0xff, 0xfe])), /not valid JSON/]
        ]
        await Promise.all(cases.map(async ([raw, reason]) => {
          const { ws, muxer: mux } = await rawSession(server, muxer)
          const { message } = await registerRaw(mux, raw)
          expect(message).to.have.property('error').that.matches(reason)
          await closedWithin(ws, 3000)
        }))
      })

      it('a flood of stream opens from a client: disconnected after a few refusals; other sessions keep working', async function () {
        this.timeout(60_000)
        const service = fresh(`flood-${muxer}`)
        const { ws, muxer: mux } = await rawSession(server, muxer)
        const { message } = await registerRaw(mux, registration(service, { targetPort: backend.port }))
        expect(message).to.have.property('frontendPort')
        // A normal client of another service, to show the flood does not hurt anyone else.
        const bystander = startClient(server, tunnelData(backend.port, { serviceName: fresh('bystander') }), { muxer })
        const { frontendPort } = await bystander.ready()
        try {
          // Opens as fast as one turn of the event loop can write them (the attack sent ~870k a second).
          let opened = 0
          while (ws.readyState === WebSocket.OPEN && opened < 5000) {
            for (let i = 0; i < 500 && !mux.isClosed; i++, opened++) mux.open().write(Buffer.from('hello?'))
            await new Promise(resolve => setImmediate(resolve))
          }
          await closedWithin(ws, 5000)
          expect(opened, 'opens sent before the server cut the client off').to.be.below(5000)
          await eventually(() => expect(server.registry.services.has(service)).to.equal(false), 3000)
          const payload = randomPayload(1024 * 1024)
          const started = Date.now()
          const echo = await exchangeWithTimeout(frontendPort, payload, 5000)
          expect(sha256(echo)).to.equal(sha256(payload))
          expect(Date.now() - started, '1 MB echo right after the flood (ms)').to.be.below(5000)
        } finally {
          ws.terminate()
          await bystander.close()
        }
      })
    })
  }

  it('wrong protocol versions and subprotocols are refused with 400 and a reason', async function () {
    const offers: Array<[string | undefined, RegExp]> = [
      ['reverselb.v0.yamux', /unsupported protocol version v0/],
      ['reverselb.v2.yamux', /unsupported protocol version v2.*speaks v1/],
      ['reverselb.v999999.mplex', /unsupported protocol version/],
      ['reverselb.v1.spdy', /unsupported muxer "spdy"/],
      ['reverselb.v1', /unrecognised subprotocol/],
      ['reverselb.v1.yamux.extra', /unrecognised subprotocol/],
      ['x'.repeat(2000), /unrecognised subprotocol/],
      [undefined, /no reverselb subprotocol offered/]
    ]
    for (const [offer, reason] of offers) {
      const ws = new WebSocket(`wss://127.0.0.1:${server.port}/tunnel`, offer === undefined ? [] : [offer], {
        rejectUnauthorized: false, headers: { authorization: `Bearer ${TOKEN}` }
      })
      const res = await new Promise<{ status?: number, reason?: string | string[] }>((resolve, reject) => {
        ws.on('unexpected-response', (_req, r) => { resolve({ status: r.statusCode, reason: r.headers['x-reverselb-error'] }); r.destroy() })
        ws.on('open', () => reject(new Error(`upgrade with ${String(offer).slice(0, 40)} should have been refused`)))
        ws.on('error', reject)
      })
      expect(res.status, String(offer).slice(0, 40)).to.equal(400)
      expect(res.reason).to.match(reason)
      // The reason echoes at most a bounded part of what was offered.
      expect(String(res.reason).length).to.be.below(200)
    }
  })

  it('names with control characters are refused, and never reach a log line raw', async function () {
    const bad = ['evil\nname', 'nul\u0000', 'esc\u001b[2J', 'del\u007f', 'cr\rINFO forged', 'tab\there', 'line\u2028sep', 'caf\u00e9']
    const before = log.lines.length
    for (const name of bad) {
      for (const reg of [
        registration(name),
        registration('ok-name', { instanceName: name }),
        registration('ok-name', { targetAddresses: [name] })
      ]) {
        const { ws, muxer } = await rawSession(server, 'yamux')
        const { message } = await registerRaw(muxer, reg)
        const error = (message as { error?: string }).error ?? ''
        expect(error, JSON.stringify(reg)).to.match(/printable|host name/)
        expect(error).not.to.match(/[\x00-\x1f\x7f]/)
        ws.terminate()
      }
    }
    expect(server.registry.services.has('ok-name')).to.equal(false)
    const lines = log.lines.slice(before)
    expect(lines.length).to.be.greaterThan(0)
    for (const line of lines) expect(line.replace(/\n$/, ''), line).not.to.match(/[\x00-\x1f\x7f\u2028]/)
  })

  it('a registered session whose client then sends garbage is dropped and its service goes down', async function () {
    for (const muxer of MUXERS) {
      const service = fresh(`garbled-${muxer}`)
      const { ws, muxer: mux } = await rawSession(server, muxer)
      const { message } = await registerRaw(mux, registration(service))
      expect(message).to.have.property('frontendPort')
      expect(server.registry.services.has(service)).to.equal(true)
      // An invalid frame version (yamux) or a 2 MiB message (over mplex's 1 MiB cap).
      ws.send(muxer === 'yamux' ? Buffer.from([7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]) : mplexHeader(9, 2, 2 * 1024 * 1024))
      await closedWithin(ws, 2000)
      await eventually(() => expect(server.registry.services.has(service)).to.equal(false), 3000)
    }
  })

  it('yamux: a Data frame longer than any window is refused before its body is buffered (registered session)', async function () {
    this.timeout(40_000)
    const { ws, muxer: mux } = await rawSession(server, 'yamux')
    const { message } = await registerRaw(mux, registration(fresh('hog')))
    expect(message).to.have.property('frontendPort')
    // Stream 3 (ours, odd), SYN, announced 4 GiB; then pump: the server must give up long before 64 MiB.
    ws.send(yamuxHeader(0, 0x1, 3, 0xffff_fff0))
    const chunk = seededBytes(3, 1024 * 1024)
    let sent = 0
    const started = Date.now()
    try {
      while (ws.readyState === WebSocket.OPEN && sent < 64 * 1024 * 1024 && Date.now() - started < 20_000) {
        if (ws.bufferedAmount > 8 * 1024 * 1024) { await sleep(5); continue }
        ws.send(chunk)
        sent += chunk.length
      }
      await closedWithin(ws, 5000)
      expect(sent).to.be.below(16 * 1024 * 1024)
    } finally {
      ws.terminate()
    }
  })
})
