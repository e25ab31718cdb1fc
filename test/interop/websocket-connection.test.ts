import { expect } from 'chai'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { connect } from 'node:net'
import { WebSocket, WebSocketServer } from 'ws'
import { acceptHandshake, handshakeProblem, refuseHandshake, upgrade } from '../../protocol/link/websocket/handshake.js'
import { eventually } from '../fixtures/net.js'
import type { WebSocketConnection } from '../../protocol/link/websocket/connection.js'
import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import type { Duplex } from 'node:stream'

const PROTOCOL = 'reverselb.v1.yamux'
const MAX = 4 * 1024 * 1024
const SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537, 300_000, 2 * 1024 * 1024]

/** Every byte of binary payload a connection of ours delivers, in order. */
function received (conn: WebSocketConnection): () => Buffer {
  const pieces: Buffer[] = []
  conn.on('data', (p) => pieces.push(Buffer.from(p)))
  return () => Buffer.concat(pieces)
}

async function listen (server: Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as AddressInfo).port
}

describe('interop: our WebSocket connection against the ws package', function () {
  this.timeout(30_000)

  describe('a ws client against our server side', function () {
    let http: Server
    let port: number
    let accepted: Array<{ conn: WebSocketConnection, data: () => Buffer }>
    beforeEach(async function () {
      accepted = []
      http = createServer()
      http.on('upgrade', (req, socket: Duplex, head: Buffer) => {
        const problem = handshakeProblem(req)
        if (problem !== undefined) { refuseHandshake(socket, problem); return }
        const conn = acceptHandshake(req, socket, head, PROTOCOL, MAX)
        if (conn !== undefined) accepted.push({ conn, data: received(conn) })
      })
      port = await listen(http)
    })
    afterEach(function () { http.close() })

    async function open (): Promise<{ ws: WebSocket, conn: WebSocketConnection, data: () => Buffer }> {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/tunnel`, PROTOCOL)
      await once(ws, 'open')
      expect(ws.protocol).to.equal(PROTOCOL)
      await eventually(() => expect(accepted).to.have.length(1))
      return { ws, ...accepted[0] }
    }

    it('binary both ways byte-exact across sizes (random masks from ws), fragmented messages too', async function () {
      const { ws, conn, data } = await open()
      const toUs = SIZES.map(n => randomBytes(n))
      for (const b of toUs) ws.send(b)
      // One message in three fragments, with a ping between them.
      const frag = randomBytes(100_000)
      ws.send(frag.subarray(0, 10), { fin: false })
      ws.ping(Buffer.from('mid'))
      ws.send(frag.subarray(10, 70_000), { fin: false })
      ws.send(frag.subarray(70_000), { fin: true })
      const want = Buffer.concat([...toUs, frag])
      await eventually(() => expect(data().length).to.equal(want.length))
      expect(data().equals(want)).to.equal(true)

      const fromUs = SIZES.map(n => randomBytes(n))
      const got: Buffer[] = []
      ws.on('message', (m: Buffer) => got.push(m))
      for (const b of fromUs) conn.send(b)
      await eventually(() => expect(got).to.have.length(fromUs.length))
      expect(got.map(m => m.toString('hex'))).to.deep.equal(fromUs.map(b => b.toString('hex')))
      ws.terminate()
    })

    it('ping/pong both ways, and the close handshake from either side with its code', async function () {
      const a = await open()
      const pinged = once(a.conn, 'ping')
      a.ws.ping(Buffer.from('hello'))
      expect((await pinged)[0].toString()).to.equal('hello')
      const ponged = once(a.ws, 'pong')
      a.conn.pong(Buffer.from('back'))
      expect((await ponged)[0].toString()).to.equal('back')
      const autoPong = once(a.conn, 'pong')
      a.conn.ping(Buffer.from('ours'))
      expect((await autoPong)[0].toString()).to.equal('ours')
      const wsClosed = once(a.ws, 'close')
      const ourClosed = once(a.conn, 'close')
      a.conn.close(1001, 'going')
      const [code, reason] = await wsClosed
      expect([code, reason.toString()]).to.deep.equal([1001, 'going'])
      expect((await ourClosed)[0]).to.equal(1001)
      expect(a.conn.readyState).to.equal(a.conn.CLOSED)

      accepted = []
      const b = await open()
      const closed = once(b.conn, 'close')
      b.ws.close(4000, 'bye')
      expect(await closed).to.deep.equal([4000, 'bye'])
      expect((await once(b.ws, 'close'))[0]).to.equal(4000)
    })

    it('a text message from ws: closed with 1003', async function () {
      const { ws } = await open()
      ws.send('text')
      expect((await once(ws, 'close'))[0]).to.equal(1003)
    })

    it('bad handshakes are refused as ws refused them', async function () {
      const ask = async (headers: string): Promise<string> => {
        const s = connect(port, '127.0.0.1')
        s.end(`GET /tunnel HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n${headers}\r\n`)
        const chunks: Buffer[] = []
        s.on('data', (c: Buffer) => chunks.push(c))
        await once(s, 'close')
        return Buffer.concat(chunks).toString()
      }
      const key = `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n`
      expect(await ask(`Upgrade: websocket\r\n${key}`)).to.match(/^HTTP\/1\.1 400 .*Sec-WebSocket-Version: 13, 8.*Missing or invalid Sec-WebSocket-Version/s)
      expect(await ask('Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n')).to.match(/^HTTP\/1\.1 400 .*invalid Sec-WebSocket-Key/s)
      expect(await ask(`Upgrade: h2c\r\nSec-WebSocket-Version: 13\r\n${key}`)).to.match(/^HTTP\/1\.1 400 .*Invalid Upgrade header/s)
    })
  })

  for (const mask of ['random', 'zero'] as const) {
    it(`our client side against a ws server, masks ${mask}: binary both ways byte-exact, ping/pong, fragments, close`, async function () {
      const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false, handleProtocols: (p) => [...p][0] ?? false })
      await once(wss, 'listening')
      const port = (wss.address() as AddressInfo).port
      const serverWs = new Promise<WebSocket>(resolve => wss.once('connection', resolve))
      try {
        const socket = connect(port, '127.0.0.1')
        await once(socket, 'connect')
        const answer = await upgrade({ socket, host: `127.0.0.1:${port}`, path: '/', protocol: PROTOCOL, headers: {}, mask, maxPayload: MAX })
        if (!('open' in answer)) throw new Error(`answered ${String(answer.response.statusCode)}`)
        const conn = answer.open
        expect(conn.protocol).to.equal(PROTOCOL)
        const data = received(conn)
        const peer = await serverWs
        const got: Buffer[] = []
        peer.on('message', (m: Buffer) => got.push(m))
        const fromUs = SIZES.map(n => randomBytes(n))
        for (const b of fromUs) conn.send(b)
        await eventually(() => expect(got).to.have.length(fromUs.length))
        expect(got.map(m => m.toString('hex'))).to.deep.equal(fromUs.map(b => b.toString('hex')))

        const toUs = SIZES.map(n => randomBytes(n))
        for (const b of toUs) peer.send(b)
        const frag = randomBytes(70_000)
        peer.send(frag.subarray(0, 5), { fin: false })
        peer.send(frag.subarray(5), { fin: true })
        const want = Buffer.concat([...toUs, frag])
        await eventually(() => expect(data().length).to.equal(want.length))
        expect(data().equals(want)).to.equal(true)

        const ponged = once(conn, 'pong')
        conn.ping(Buffer.from('p'))
        expect((await ponged)[0].toString()).to.equal('p')
        const pinged = once(conn, 'ping')
        peer.ping(Buffer.from('q'))
        expect((await pinged)[0].toString()).to.equal('q')

        const peerClosed = once(peer, 'close')
        const ourClosed = once(conn, 'close')
        conn.close(1000)
        expect((await peerClosed)[0]).to.equal(1000)
        expect((await ourClosed)[0]).to.equal(1000)
      } finally {
        wss.close()
      }
    })
  }
})
