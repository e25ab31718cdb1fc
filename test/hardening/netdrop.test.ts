import { expect } from 'chai'
import { once } from 'node:events'
import { connect } from 'node:net'
import { TunnelClient } from '../../index.js'
import { MUXERS } from '../../protocol/index.js'
import { echoServer, eventually, freePort, randomPayload, sha256 } from '../fixtures/net.js'
import { startServer, testLogger, tunnelData } from '../fixtures/tunnel.js'
import { PathForwarder, exchangeWithTimeout, sleep } from './helpers.js'
import type { TunnelServer } from '../../index.js'
import type { TcpServer } from '../fixtures/net.js'

const KEEPALIVE_MS = 500

describe('faults: the network path between client and server drops', function () {
  this.timeout(60_000)
  let backend: TcpServer

  before(async function () { backend = await echoServer() })
  after(async function () { await backend.close() })

  for (const muxer of MUXERS) {
    describe(`through a forwarder we cut (${muxer})`, function () {
      let server: TunnelServer
      let path: PathForwarder
      let client: TunnelClient
      let frontendPort: number
      const events: string[] = []

      beforeEach(async function () {
        events.length = 0
        server = await startServer({ keepaliveMs: KEEPALIVE_MS })
        server.on('sessionClosed', () => events.push('server:sessionClosed'))
        server.on('sessionOpened', () => events.push('server:sessionOpened'))
        path = await PathForwarder.start(server.port)
        client = new TunnelClient(`127.0.0.1:${path.port}`, tunnelData(backend.port, { serviceName: 'roaming', frontendData: { port: await freePort() } }), {
          fingerprint: server.fingerprint, logger: testLogger, keepaliveMs: KEEPALIVE_MS, maxBackoffMs: 1000, muxer
        })
        client.on('connected', () => events.push('client:connected'))
        client.on('disconnected', () => events.push('client:disconnected'))
        frontendPort = (await client.ready()).frontendPort
      })
      afterEach(async function () {
        await client.close()
        await path.close()
        await server.close()
      })

      it(`a cut shorter than the keepalive (${KEEPALIVE_MS * 0.6} ms): the tunnel survives and a transfer across the cut is byte-exact`, async function () {
        // Start a transfer, cut the path in the middle of it, restore, and let it finish.
        const payload = randomPayload(8 * 1024 * 1024)
        const socket = connect({ port: frontendPort, host: '127.0.0.1', allowHalfOpen: true })
        const chunks: Buffer[] = []
        socket.on('data', (c: Buffer) => chunks.push(c))
        await once(socket, 'connect')
        socket.write(payload.subarray(0, 4 * 1024 * 1024))
        await eventually(() => expect(chunks.reduce((n, c) => n + c.length, 0)).to.be.above(1024 * 1024), 5000)
        for (let i = 0; i < 3; i++) {
          path.cut()
          await sleep(KEEPALIVE_MS * 0.6)
          path.restore()
          await sleep(KEEPALIVE_MS * 1.5)
        }
        socket.end(payload.subarray(4 * 1024 * 1024))
        await once(socket, 'end')
        socket.destroy()
        expect(sha256(Buffer.concat(chunks))).to.equal(sha256(payload))
        expect(events).to.deep.equal(['server:sessionOpened', 'client:connected'])
        expect(server.registry.services.get('roaming')?.sessions).to.have.length(1)
      })

      it(`a cut longer than 2x the keepalive: both sides notice, and the client reconnects and re-registers by itself`, async function () {
        const before = server.registry.services.get('roaming')?.sessions[0]
        const cutAt = Date.now()
        path.cut()
        // Both ends declare the other dead within about two keepalive intervals, during the cut
        // (5x margin for a busy machine).
        await eventually(() => expect(events).to.include.members(['server:sessionClosed', 'client:disconnected']), KEEPALIVE_MS * 12, 20)
        const noticedAfter = Date.now() - cutAt
        expect(noticedAfter).to.be.below(KEEPALIVE_MS * 10)
        expect(server.registry.services.has('roaming')).to.equal(false)
        await sleep(Math.max(0, KEEPALIVE_MS * 5 - noticedAfter))
        path.restore()
        await eventually(() => expect(events.filter(e => e === 'client:connected' || e === 'server:sessionOpened')).to.have.length(4), 10_000, 50)
        const after = server.registry.services.get('roaming')
        expect(after?.port).to.equal(frontendPort)
        expect(after?.sessions[0]).not.to.equal(before)
        const payload = randomPayload(1024 * 1024)
        expect(sha256(await exchangeWithTimeout(frontendPort, payload, 10_000))).to.equal(sha256(payload))
      })

      it('a long cut in the middle of a bulk transfer: noticed just the same, and the client comes back', async function () {
        // Keep data moving both ways (an echo of an upload) so both ends have bytes queued when the path goes.
        const socket = connect({ port: frontendPort, host: '127.0.0.1' })
        socket.on('error', () => {})
        const closed = new Promise<void>(resolve => socket.once('close', () => resolve()))
        let received = 0
        socket.on('data', (c: Buffer) => { received += c.length })
        await once(socket, 'connect')
        const chunk = randomPayload(64 * 1024)
        let sent = 0
        const pump = (): void => {
          while (!socket.destroyed && sent < 1024 * 1024 * 1024) {
            sent += chunk.length
            if (!socket.write(chunk)) { socket.once('drain', pump); return }
          }
        }
        pump()
        await eventually(() => expect(received).to.be.above(4 * 1024 * 1024), 5000)
        const cutAt = Date.now()
        path.cut()
        await eventually(() => expect(events).to.include.members(['server:sessionClosed', 'client:disconnected']), KEEPALIVE_MS * 12, 20)
        expect(Date.now() - cutAt, 'about two keepalive intervals, 5x margin').to.be.below(KEEPALIVE_MS * 10)
        // The frontend connection dies with its session; that it is also closed promptly on the
        // server is not asserted here: it depends on the relay bug shown by the skipped tests in
        // faults.test.ts ("the tunnel goes away under a frontend upload held back by backpressure").
        socket.destroy()
        await closed
        path.restore()
        await eventually(() => expect(events.filter(e => e === 'client:connected')).to.have.length(2), 10_000, 50)
        const payload = randomPayload(1024 * 1024)
        expect(sha256(await exchangeWithTimeout(frontendPort, payload, 10_000))).to.equal(sha256(payload))
      })
    })
  }
})
