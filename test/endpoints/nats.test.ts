import { expect } from 'chai'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from '@nats-io/transport-node'
import { NatsPublisher } from '../../server/nats-publisher.js'
import { NatsServerProcess } from '../../server/nats-server-process.js'
import { eventually, exchange, freePort, randomPayload, tcpServer } from '../fixtures/net.js'
import { TOKEN, startClient, startServer, testLogger, tunnelData } from '../fixtures/tunnel.js'
import { alive, certFiles, portIsClosed, startNatsServer } from './helpers.js'
import type { CertFiles, TestNatsServer } from './helpers.js'
import type { TunnelServer } from '../../index.js'
import type { TcpServer } from '../fixtures/net.js'
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node'

interface Received { subject: string, data: any, raw: string }

/** Subscribes to reverselb.> and collects what arrives. */
async function subscribe (nc: NatsConnection, subject = 'reverselb.>'): Promise<{ messages: Received[], sub: Subscription }> {
  const messages: Received[] = []
  const sub = nc.subscribe(subject, {
    callback: (_err, msg: Msg) => { messages.push({ subject: msg.subject, data: JSON.parse(msg.string()), raw: msg.string() }) }
  })
  await nc.flush()
  return { messages, sub }
}

/** Reads everything, answers with the 64-byte hex SHA-256: distinct byte counts per direction. */
async function hashServer (): Promise<TcpServer> {
  return await tcpServer((socket) => {
    const h = createHash('sha256')
    socket.on('data', (c: Buffer) => h.update(c))
    socket.on('end', () => socket.end(h.digest('hex')))
  })
}

/**
 * Runs one tunnel through its life: register, one connection of `size` bytes, close; then a
 * client with a wrong token. Each step waits for the server's event, so the order is defined.
 */
async function tunnelLife (server: TunnelServer, backendPort: number, name: string, size: number): Promise<string> {
  const client = startClient(server, tunnelData(backendPort, { serviceName: name }))
  const { id, frontendPort } = await client.ready()
  const connectionClosed = once(server, 'connectionClosed')
  await exchange(frontendPort, randomPayload(size))
  await connectionClosed
  const serviceDown = once(server, 'serviceDown')
  await client.close()
  await serviceDown
  const intruder = startClient(server, tunnelData(backendPort, { serviceName: 'intruder', token: 'wrong-token' }))
  await intruder.ready().catch(() => {})
  await intruder.close()
  return id
}

function expectLifecycle (messages: Received[], name: string, sessionId: string, size: number): void {
  const events = messages.map(m => m.data.event)
  expect(events).to.deep.equal([
    'service.up', 'session.join', 'connection.open', 'connection.close', 'session.leave', 'service.down', 'auth.failure'
  ])
  for (const m of messages) {
    expect(m.subject).to.equal(`reverselb.${String(m.data.event)}`)
    expect(Date.parse(m.data.time)).to.be.a('number').and.not.NaN
    expect(m.raw).not.to.contain(TOKEN)
  }
  const [up, join, open, close, leave, down, auth] = messages.map(m => m.data)
  expect(up.service.name).to.equal(name)
  expect(up.service.port).to.be.a('number')
  expect(down.service).to.deep.equal(up.service)
  expect(join.session).to.deep.include({ id: sessionId, instance: '', clientAddress: '127.0.0.1', muxer: 'yamux' })
  expect(join.registrationMs).to.be.a('number')
  expect(open.session.id).to.equal(sessionId)
  expect(open.sourceAddress).to.match(/^127\.0\.0\.1:\d+$/)
  expect(close).to.deep.include({ sourceAddress: open.sourceAddress, bytesIn: size, bytesOut: 64 })
  expect(leave.session).to.deep.include({ id: sessionId, totalConnections: 1, bytesIn: size, bytesOut: 64 })
  expect(auth).to.deep.include({ endpoint: 'tunnel', remoteAddress: '127.0.0.1' })
}

describe('endpoints: NATS events', function () {
  this.timeout(30_000)
  let cert: CertFiles
  let backend: TcpServer
  const connections: NatsConnection[] = []
  const cleanups: Array<() => Promise<void>> = []

  before(async function () {
    cert = await certFiles()
    backend = await hashServer()
  })
  afterEach(async function () {
    await Promise.all(connections.splice(0).map(async nc => await nc.close()))
    for (const c of cleanups.splice(0).reverse()) await c()
  })
  after(async function () {
    await backend.close()
    await cert.remove()
  })

  it('runs nats-server with TLS and the token, publishes lifecycle events in order, and stops it on close', async function () {
    const natsPort = await freePort()
    const server = await startServer({ natsPort, tlsCert: cert.certFile, tlsKey: cert.keyFile })
    let closed = false
    cleanups.push(async () => { if (!closed) await server.close() })

    // Token and TLS are both required.
    const noToken = await connect({ servers: `127.0.0.1:${natsPort}`, tls: { ca: cert.cert }, reconnect: false }).then(() => 'connected', (e: Error) => e.message)
    expect(noToken).to.match(/Authorization Violation/i)
    const wrongToken = await connect({ servers: `127.0.0.1:${natsPort}`, token: 'nope', tls: { ca: cert.cert }, reconnect: false }).then(() => 'connected', (e: Error) => e.message)
    expect(wrongToken).to.match(/Authorization Violation/i)
    const plain = await connect({ servers: `127.0.0.1:${natsPort}`, token: TOKEN, tls: null, reconnect: false }).then(() => 'connected', (e: Error) => e.message)
    expect(plain).not.to.equal('connected')

    const nc = await connect({ servers: `127.0.0.1:${natsPort}`, token: TOKEN, tls: { ca: cert.cert } })
    connections.push(nc)
    const { messages } = await subscribe(nc)
    const id = await tunnelLife(server, backend.port, 'evented', 4321)
    await eventually(() => expect(messages).to.have.length(7))
    expectLifecycle(messages, 'evented', id, 4321)

    await server.close()
    closed = true
    expect(await portIsClosed(natsPort)).to.equal(true)
  })

  it('publishes to an existing NATS server given by natsUrl (TLS with natsCa, token in the URL)', async function () {
    const natsToken = 'nats "token" with $pecial chars'
    const nats = await startNatsServer(cert, natsToken)
    cleanups.push(async () => await nats.stop())
    const server = await startServer({ natsUrl: `tls://${encodeURIComponent(natsToken)}@127.0.0.1:${nats.port}`, natsCa: cert.certFile })
    cleanups.push(async () => await server.close())

    const nc = await connect({ servers: `127.0.0.1:${nats.port}`, token: natsToken, tls: { ca: cert.cert } })
    connections.push(nc)
    const { messages } = await subscribe(nc)
    const id = await tunnelLife(server, backend.port, 'remote', 100)
    await eventually(() => expect(messages).to.have.length(7))
    expectLifecycle(messages, 'remote', id, 100)
  })

  it('fails listen() with a clear error (and no secret) when natsUrl cannot be reached or refuses the token', async function () {
    let nats: TestNatsServer | undefined
    try {
      nats = await startNatsServer(cert, 'right-token')
      const apiPort = await freePort()
      const err = await startServer({ port: apiPort, natsUrl: `tls://wrong-secret@127.0.0.1:${nats.port}`, natsCa: cert.certFile }).then(() => undefined, (e: Error) => e)
      expect(err?.message).to.match(new RegExp(`cannot connect to NATS at tls://127\\.0\\.0\\.1:${nats.port}`))
      expect(err?.message).not.to.contain('wrong-secret')
      expect(await portIsClosed(apiPort)).to.equal(true)
    } finally {
      await nats?.stop()
    }
    const err = await startServer({ natsPort: await freePort(), natsUrl: 'nats://127.0.0.1:1' }).then(() => undefined, (e: Error) => e)
    expect(err?.message).to.match(/exclude each other/)
  })

  it('says how to install nats-server when it is not on PATH', async function () {
    const emptyDir = await mkdtemp(join(tmpdir(), 'reverselb-nopath-'))
    const savedPath = process.env.PATH
    const httpPort = await freePort()
    let err: Error | undefined
    try {
      process.env.PATH = emptyDir
      err = await startServer({ natsPort: await freePort(), httpPort }).then(() => undefined, (e: Error) => e)
    } finally {
      process.env.PATH = savedPath
      await rm(emptyDir, { recursive: true, force: true })
    }
    expect(err?.message).to.match(/nats-server/)
    expect(err?.message).to.contain('apt-get install nats-server')
    expect(err?.message).to.contain('apk add nats-server')
    // Whatever had started (the HTTP API) was stopped again.
    expect(await portIsClosed(httpPort)).to.equal(true)
  })

  it('restarts a nats-server that dies, and events flow again; gives up after too many deaths', async function () {
    const port = await freePort()
    const proc = new NatsServerProcess({ port, host: '127.0.0.1', cert: cert.cert, key: cert.key, token: TOKEN, log: testLogger, maxRestarts: 2, restartWindowMs: 60_000 })
    cleanups.push(async () => await proc.stop())
    await proc.start()
    const firstPid = proc.pid as number
    expect(firstPid).to.be.a('number')
    const publisher = await NatsPublisher.connect({ url: `tls://127.0.0.1:${port}`, token: TOKEN, ca: cert.cert, fingerprint: cert.fingerprint, log: testLogger })
    cleanups.push(async () => await publisher.close())
    const nc = await connect({ servers: `127.0.0.1:${port}`, token: TOKEN, tls: { ca: cert.cert }, maxReconnectAttempts: -1, reconnectTimeWait: 100 })
    connections.push(nc)
    const { messages } = await subscribe(nc, 'reverselb.test.>')

    const restarted = new Promise<void>(resolve => { proc.onRestart = resolve })
    process.kill(firstPid, 'SIGKILL')
    await restarted
    expect(proc.pid).to.be.a('number').and.not.equal(firstPid)
    expect(alive(firstPid)).to.equal(false)
    // Both clients reconnect by themselves; what is published afterwards arrives.
    await eventually(async () => {
      publisher.publish({ event: 'test.ping' as never, time: new Date().toISOString() })
      await nc.flush()
      expect(messages.length).to.be.at.least(1)
    }, 15_000, 200)
    expect(messages[0].subject).to.equal('reverselb.test.ping')

    // Bounded: after maxRestarts deaths within the window it stays down.
    const gaveUp = new Promise<string>(resolve => { proc.onGiveUp = resolve })
    const second = new Promise<void>(resolve => { proc.onRestart = resolve })
    process.kill(proc.pid as number, 'SIGKILL')
    await second
    process.kill(proc.pid as number, 'SIGKILL')
    expect(await gaveUp).to.match(/not restarting/)
    await new Promise(resolve => setTimeout(resolve, 500))
    expect(proc.pid).to.equal(undefined)
    expect(await portIsClosed(port)).to.equal(true)
  })

  it('removes its private directory and stops nats-server on stop()', async function () {
    const port = await freePort()
    const proc = new NatsServerProcess({ port, host: '127.0.0.1', cert: cert.cert, key: cert.key, token: TOKEN, log: testLogger })
    await proc.start()
    const pid = proc.pid as number
    const dir = (proc as unknown as { dir: string }).dir
    expect((await stat(dir)).mode & 0o777).to.equal(0o700)
    for (const f of ['cert.pem', 'key.pem', 'nats.conf']) expect((await stat(join(dir, f))).mode & 0o777).to.equal(0o600)
    // The token is in the 0600 config file, never on nats-server's command line.
    expect(await readFile(`/proc/${pid}/cmdline`, 'utf8')).not.to.contain(TOKEN)
    await proc.stop()
    expect(alive(pid)).to.equal(false)
    const gone = await stat(dir).then(() => false, () => true)
    expect(gone).to.equal(true)
  })
})
