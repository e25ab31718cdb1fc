import { expect } from 'chai'
import { once } from 'node:events'
import { connect } from 'node:net'
import { eventually, tcpServer } from '../fixtures/net.js'
import { startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import { exchangeWithTimeout, socketClosedWithin } from './helpers.js'
import { captureLogger } from '../fixtures/logger.js'
import type { TunnelClient, TunnelServer } from '../../index.js'
import type { TcpServer } from '../fixtures/net.js'
import type { Socket } from 'node:net'

const SNIFF_MS = 1000

describe('hostile frontend peers on a shared (instance) port', function () {
  this.timeout(60_000)
  let server: TunnelServer
  let backend: TcpServer
  let betaBackend: TcpServer
  let backendAccepts = 0
  let opened = 0
  let port: number
  const clients: TunnelClient[] = []
  const log = captureLogger()

  before(async function () {
    // Every backend connection is counted: a peer that sent nothing must never cause one.
    backend = await tcpServer((s) => { backendAccepts++; s.pipe(s) })
    betaBackend = await tcpServer((s) => { s.write('beta:'); s.pipe(s) })
    server = await startServer({ sniffTimeoutMs: SNIFF_MS, dynPortCount: 2, logger: log.logger })
    server.on('connectionOpened', () => { opened++ })
    for (const instance of ['alpha', 'beta', '']) {
      const target = instance === 'beta' ? betaBackend.port : backend.port
      clients.push(startClient(server, tunnelData(target, { serviceName: instance === '' ? 'web' : `web:${instance}` })))
    }
    const ports = await Promise.all(clients.map(async c => (await c.ready()).frontendPort))
    port = ports[0]
    expect(new Set(ports).size).to.equal(1)
  })
  after(async function () {
    await Promise.all(clients.map(async c => await c.close()))
    await server.close()
    await backend.close()
    await betaBackend.close()
  })

  const httpGet = async (host: string): Promise<string> =>
    (await exchangeWithTimeout(port, Buffer.from(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`), 5000)).toString()

  afterEach(async function () {
    // Whatever the peers did, the shared port still routes by name and relays.
    expect(await httpGet('beta.example')).to.equal('beta:GET / HTTP/1.1\r\nHost: beta.example\r\n\r\n')
  })

  it('a flood of 500 connections that send nothing opens no backend stream, and all are closed after the sniff timeout', async function () {
    const COUNT = 500
    const baseOpened = opened
    const baseAccepts = backendAccepts
    const sockets: Socket[] = []
    try {
      for (let i = 0; i < COUNT; i += 50) {
        sockets.push(...await Promise.all(Array.from({ length: Math.min(50, COUNT - i) }, async () => {
          const s = connect({ port, host: '127.0.0.1' })
          s.on('error', () => {})
          await once(s, 'connect')
          return s
        })))
      }
      const started = Date.now()
      // Meanwhile, a real request is routed by its Host header and relayed.
      expect(await httpGet('alpha.example')).to.match(/^GET \/ HTTP\/1\.1\r\nHost: alpha\.example/)
      // Dropped at the sniff timeout; 5x margin for a busy machine.
      const times = await Promise.all(sockets.map(async s => await socketClosedWithin(s, SNIFF_MS * 6)))
      expect(Math.max(...times)).to.be.below(SNIFF_MS * 5)
      expect(Date.now() - started).to.be.below(SNIFF_MS * 6)
      // One stream for the real request; none for the 500 silent peers.
      expect(opened - baseOpened).to.equal(1)
      expect(backendAccepts - baseAccepts).to.equal(1)
      await eventually(() => expect(server.registry.services.get('web')?.frontend.connections).to.equal(0), 3000)
    } finally {
      for (const s of sockets) s.destroy()
    }
  })

  it('peers that send a partial first flight and stall are relayed to the default instance after the sniff timeout, not held forever', async function () {
    const baseOpened = opened
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    const chunks: Buffer[] = []
    s.on('data', (c: Buffer) => chunks.push(c))
    await once(s, 'connect')
    s.write('GET / HTTP/1.1\r\nHost: alph')
    await eventually(() => expect(opened - baseOpened).to.equal(1), SNIFF_MS + 3000)
    s.end()
    await once(s, 'end')
    // The default instance's backend echoes what was held back, byte for byte.
    expect(Buffer.concat(chunks).toString()).to.equal('GET / HTTP/1.1\r\nHost: alph')
    s.destroy()
  })

  it('names with control characters in SNI, Host, CONNECT and PROXY-> never reach a log line raw', async function () {
    const before = log.lines.length
    const probes = [
      Buffer.concat([Buffer.from('PROXY->'), Buffer.from([8]), Buffer.from('ev\nil\r\x1b['), Buffer.from('rest')]),
      Buffer.from('CONNECT a\x00\x1bb:22 HTTP/1.1\r\n\r\n'),
      Buffer.from('GET / HTTP/1.1\r\nHost: x\x1b[2Jy\x7f\r\n\r\n')
    ]
    for (const p of probes) {
      const s = connect({ port, host: '127.0.0.1' })
      s.on('error', () => {})
      s.on('data', () => {})
      await once(s, 'connect')
      s.end(p)
      await socketClosedWithin(s, 5000)
      s.destroy()
    }
    const lines = log.lines.slice(before).join('')
    expect(lines).to.match(/PROXY-> prefix names unknown instance "ev\\x0ail\\x0d\\x1b\["/)
    expect(lines).to.match(/CONNECT to unknown instance "a\\x00\\x1bb"/)
    for (const line of log.lines.slice(before)) expect(line.replace(/\n$/, '')).not.to.match(/[\x00-\x1f\x7f]/)
  })
})
