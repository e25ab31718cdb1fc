import { once } from 'node:events'
import { randomBytes, randomInt } from 'node:crypto'
import { createServer } from 'node:http'
import { connect } from 'node:net'
import { expect } from 'chai'
import { openLink } from '../../protocol/link/link.js'
import { acceptHandshake, handshakeProblem, upgrade } from '../../protocol/link/websocket/handshake.js'
import { MAX_WS_PAYLOAD } from '../../protocol/limits.js'
import { wrapOurs } from './peers.js'
import { sha } from './scenarios.js'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Link } from '../../protocol/link/link.js'
import type { MuxStream } from '../../protocol/mux/index.js'
import type { MuxerName } from '../../protocol/version.js'
import type { TestStream } from './peers.js'

/**
 * Both ends of the product's link (openLink: WebSocketTransport writing its own WebSocket frames,
 * our frame reader parsing them) on loopback, without TLS; the frames against `ws` itself are in
 * websocket-connection.test.ts. A wrong length, mask or split would show as an error or a wrong byte.
 */
async function linkPair (muxer: MuxerName, mask: 'zero' | 'random'): Promise<{ client: Link, server: Link, incoming: TestStream[], onStream: { cb?: (s: TestStream) => void }, close: () => void }> {
  const http = createServer()
  const incoming: TestStream[] = []
  const onStream: { cb?: (s: TestStream) => void } = {}
  const errors: Error[] = []
  const base = {
    muxer,
    keepaliveMs: 60_000,
    onDead: () => errors.push(new Error('link declared dead')),
    onProtocolError: (e: Error) => errors.push(e),
    onStreamOverflow: () => errors.push(new Error('overflow'))
  }
  const serverLink = new Promise<Link>(resolve => {
    http.on('upgrade', (req, socket: Duplex, head: Buffer) => {
      const ws = handshakeProblem(req) === undefined ? acceptHandshake(req, socket, head, PROTOCOL, MAX_WS_PAYLOAD) : undefined
      if (ws === undefined) { errors.push(new Error('upgrade refused')); socket.destroy(); return }
      resolve(openLink(ws, {
        ...base,
        side: 'server',
        accept: (s: MuxStream) => { const w = wrapOurs(s); incoming.push(w); onStream.cb?.(w); return true }
      }))
    })
  })
  http.listen(0, '127.0.0.1')
  await once(http, 'listening')
  const { port } = http.address() as AddressInfo
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  const answer = await upgrade({ socket, host: `127.0.0.1:${port}`, path: '/', protocol: PROTOCOL, headers: {}, mask, maxPayload: MAX_WS_PAYLOAD })
  if (!('open' in answer)) throw new Error(`upgrade answered ${String(answer.response.statusCode)}`)
  const client = openLink(answer.open, { ...base, side: 'client', accept: () => false })
  const server = await serverLink
  return {
    client,
    server,
    incoming,
    onStream,
    close: () => {
      expect(errors.map(e => e.message)).to.deep.equal([])
      client.close()
      server.close()
      http.close()
    }
  }
}

/** Writes `data` in pieces of random sizes (1 B .. 100 KiB), waiting when the stream is full. */
async function sendRandomPieces (s: TestStream, data: Buffer): Promise<void> {
  let off = 0
  while (off < data.length) {
    const n = Math.min(data.length - off, randomInt(0, 4) === 0 ? randomInt(1, 100 * 1024) : randomInt(1, 5000))
    await s.send(data.subarray(off, off + n), n)
    off += n
  }
  await s.end()
}

const PROTOCOL = 'reverselb.v1.yamux'

describe('interop: the WebSocket link (openLink) on our WebSocket connection at both ends', function () {
  this.timeout(60_000)
  for (const muxer of ['yamux', 'mplex'] as MuxerName[]) {
    for (const mask of ['random', 'zero'] as const) {
      it(`${muxer}, client masks ${mask}: 20 streams, writes of 1 B to 100 KiB, byte-exact both ways`, async function () {
        const p = await linkPair(muxer, mask)
        try {
          const far: Array<Promise<string>> = []
          p.onStream.cb = (s) => {
            const out = randomBytes(randomInt(0, 600 * 1024))
            far.push(Promise.all([s.all, sendRandomPieces(s, out)]).then(([got]) => `${sha(got)}>${sha(out)}`))
          }
          const near = await Promise.all(Array.from({ length: 20 }, async () => {
            const s = wrapOurs(p.client.mux.open())
            const out = randomBytes(randomInt(0, 600 * 1024))
            const [got] = await Promise.all([s.all, sendRandomPieces(s, out)])
            expect(await s.closed).to.equal(undefined)
            return `${sha(out)}>${sha(got)}`
          }))
          expect(far).to.have.length(20)
          expect((await Promise.all(far)).sort()).to.deep.equal(near.sort())
          expect(p.client.mux.streamCount + p.server.mux.streamCount).to.equal(0)
        } finally {
          p.close()
        }
      })
    }
  }

  it('closing the link sends what is still queued before the close frame', async function () {
    // mplex has no window: the whole 8 MiB is queued in the transport at once, far more than the
    // kernel takes, when the close is asked for.
    const p = await linkPair('mplex', 'zero')
    try {
      const arrived = new Promise<Buffer>((resolve, reject) => {
        p.onStream.cb = (s) => { s.all.then(resolve, reject) }
        // Data after the close frame is never read: the stream then never completes.
        void p.server.closed.then(() => { reject(new Error('the link closed before the stream completed')) })
      })
      const out = randomBytes(8 * 1024 * 1024)
      const s = p.client.mux.open()
      s.write(out)
      s.end()
      p.client.close()
      expect(sha(await arrived)).to.equal(sha(out))
    } finally {
      p.close()
    }
  })
})
