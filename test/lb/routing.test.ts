import { expect } from 'chai'
import { once } from 'node:events'
import { createServer as createHttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { connect } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import pp from 'proxy-protocol-js'
import { selfSignedCertificate } from '../../server/certificate.js'
import { exchange, tcpServer } from '../fixtures/net.js'
import { runCliToEnd } from '../fixtures/cli.js'
import { runOk } from '../fixtures/process.js'
import { startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import type { TunnelClient, TunnelServer } from '../../index.js'
import type { TcpServer } from '../fixtures/net.js'
import type { AddressInfo, Server } from 'node:net'

async function listen (server: Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as AddressInfo).port
}

async function curlAvailable (): Promise<boolean> {
  return await runOk('curl', ['--version']).then(() => true, () => false)
}

describe('instance routing on a shared port', function () {
  this.timeout(30_000)
  let server: TunnelServer
  const clients: TunnelClient[] = []
  const closers: Array<() => void> = []
  let port: number
  let opened = 0

  before(async function () {
    server = await startServer({ sniffTimeoutMs: 500, dynPortCount: 3 })
    server.on('connectionOpened', () => { opened++ })
    const cert = await selfSignedCertificate('localhost')
    // Instances "alpha" and "beta" answer over HTTPS and plain HTTP with their own name.
    for (const name of ['alpha', 'beta']) {
      const https = createHttpsServer({ cert: cert.cert, key: cert.key }, (_req, res) => res.end(`${name} over tls`))
      const httpsPort = await listen(https)
      const http = createHttpServer((_req, res) => res.end(`${name} over http`))
      const httpPort = await listen(http)
      closers.push(() => { https.closeAllConnections(); https.close(); http.closeAllConnections(); http.close() })
      // Each instance registers twice: one tunnel for TLS, one for HTTP, so both kinds route.
      clients.push(startClient(server, tunnelData(httpsPort, { serviceName: `web:${name}` })))
      clients.push(startClient(server, tunnelData(httpPort, { serviceName: 'plain', instanceName: name })))
    }
    const ssh = await tcpServer((s) => { s.write('SSH-2.0-gamma\r\n'); s.pipe(s) })
    closers.push(() => { void ssh.close() })
    clients.push(startClient(server, tunnelData(ssh.port, { serviceName: 'web:gamma' })))
    const ports = await Promise.all(clients.map(async c => (await c.ready()).frontendPort))
    port = ports[0]
    expect(ports[2]).to.equal(port)
  })

  after(async function () {
    await Promise.all(clients.map(async c => await c.close()))
    await server.close()
    for (const c of closers) c()
  })

  it('routes TLS by SNI (node:tls)', async function () {
    for (const name of ['alpha', 'beta']) {
      const socket = tlsConnect({ port, host: '127.0.0.1', servername: `${name}.example.test`, rejectUnauthorized: false })
      await once(socket, 'secureConnect')
      socket.end('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
      const chunks: Buffer[] = []
      socket.on('data', (c: Buffer) => chunks.push(c))
      await once(socket, 'end')
      expect(Buffer.concat(chunks).toString()).to.match(new RegExp(`${name} over tls$`))
    }
  })

  it('routes TLS by SNI (curl --resolve)', async function () {
    if (!(await curlAvailable())) this.skip()
    const { stdout } = await runOk('curl', ['-sk', '--max-time', '10', '--resolve', `beta.example.test:${port}:127.0.0.1`, `https://beta.example.test:${port}/`])
    expect(stdout).to.equal('beta over tls')
  })

  it('routes HTTP by Host header (curl)', async function () {
    if (!(await curlAvailable())) this.skip()
    const plainPort = server.registry.services.get('plain')?.port ?? 0
    for (const name of ['alpha', 'beta']) {
      const { stdout } = await runOk('curl', ['-s', '--max-time', '10', '-H', `Host: ${name}:80`, `http://127.0.0.1:${plainPort}/`])
      expect(stdout).to.equal(`${name} over http`)
    }
  })

  it('answers an unknown Host with 404 text', async function () {
    const plainPort = server.registry.services.get('plain')?.port ?? 0
    const answer = (await exchange(plainPort, Buffer.from('GET / HTTP/1.1\r\nHost: nobody\r\n\r\n'))).toString()
    expect(answer).to.match(/^HTTP\/1\.1 404 Not Found/)
    expect(answer).to.contain('"nobody" matches no instance of service "plain"')
  })

  it('routes CONNECT host:port with a proper 200 response', async function () {
    const socket = connect({ port, host: '127.0.0.1' })
    socket.write('CONNECT gamma:22 HTTP/1.1\r\nHost: gamma:22\r\n\r\n')
    let got = ''
    socket.on('data', (c: Buffer) => { got += c.toString() })
    while (!got.includes('SSH-2.0-gamma')) await once(socket, 'data')
    expect(got).to.equal('HTTP/1.1 200 Connection established\r\n\r\nSSH-2.0-gamma\r\n')
    socket.destroy()
  })

  it('refuses CONNECT to an unknown instance', async function () {
    const answer = (await exchange(port, Buffer.from('CONNECT delta:22 HTTP/1.1\r\n\r\n'))).toString()
    expect(answer).to.match(/^HTTP\/1\.1 404 Not Found/)
    expect(answer).to.contain('unknown instance "delta"')
  })

  it('routes the PROXY-> prefix and strips it (stdinproxy --instancename)', async function () {
    const { code, stdout } = await runCliToEnd(['stdinproxy', '-e', `127.0.0.1:${port}`, '--instancename', 'gamma'], {}, 'echo me\n')
    expect(code).to.equal(0)
    expect(stdout).to.equal('SSH-2.0-gamma\r\necho me\n')
  })

  it('routes through stdinproxy --connect', async function () {
    const { code, stdout } = await runCliToEnd(['stdinproxy', '-e', `127.0.0.1:${port}`, '--instancename', 'gamma', '--connect'], {}, 'via connect\n')
    expect(code).to.equal(0)
    expect(stdout).to.equal('SSH-2.0-gamma\r\nvia connect\n')
  })

  it('never opens a backend stream for a connection that sends nothing', async function () {
    const before = opened
    const socket = connect({ port, host: '127.0.0.1' })
    socket.on('error', () => {})
    await once(socket, 'connect')
    await new Promise(resolve => socket.once('close', resolve))
    expect(opened).to.equal(before)
  })

  it('closes plain connections when there is no default instance, and routes them when there is', async function () {
    const before = opened
    expect((await exchange(port, Buffer.from('no name here'))).length).to.equal(0)
    expect(opened).to.equal(before)
    const echo = await tcpServer((s) => s.pipe(s))
    const dflt = startClient(server, tunnelData(echo.port, { serviceName: 'web' }))
    await dflt.ready()
    expect((await exchange(port, Buffer.from('no name here'))).toString()).to.equal('no name here')
    await dflt.close()
    await echo.close()
  })
})

describe('PROXY protocol to the backend', function () {
  this.timeout(20_000)
  // A frontend bound to one address knows the destination; one bound to all (0.0.0.0) asks each
  // socket, here reached through 127.0.0.2.
  const cases = [['v1', '127.0.0.1', '127.0.0.1'], ['v2', '127.0.0.1', '127.0.0.1'], ['v1', '0.0.0.0', '127.0.0.2'], ['v2', '0.0.0.0', '127.0.0.2']] as const
  for (const [version, frontendHost, dialled] of cases) {
    it(`sends a ${version} header a real parser reads as the frontend peer and the address it dialled (frontend on ${frontendHost})`, async function () {
      const server = await startServer({ frontendHost })
      const parsed: string[] = []
      const backend: TcpServer = await tcpServer((s) => {
        s.once('data', (b: Buffer) => {
          const text = b.toString('latin1')
          const header = version === 'v1'
            ? pp.V1ProxyProtocol.parse(text.slice(0, text.indexOf('\r\n') + 2))
            : pp.V2ProxyProtocol.parse(new Uint8Array(b))
          if (header instanceof pp.V1ProxyProtocol) parsed.push(`${header.source.ipAddress}:${header.source.port}>${header.destination.ipAddress}:${header.destination.port}`)
          else {
            const a = header.proxyAddress as InstanceType<typeof pp.IPv4ProxyAddress>
            parsed.push(`${a.sourceAddress.address.join('.')}:${a.sourcePort}>${a.destinationAddress.address.join('.')}:${a.destinationPort}`)
          }
          s.end('ok')
        })
      })
      const client = startClient(server, tunnelData(backend.port, { serviceName: 'pp' }), { proxyProtocol: version })
      const port = (await client.ready()).frontendPort
      const socket = connect({ port, host: dialled })
      await once(socket, 'connect')
      socket.write('hello')
      await once(socket, 'data')
      expect(parsed).to.deep.equal([`${socket.localAddress ?? '?'}:${socket.localPort ?? 0}>${dialled}:${port}`])
      socket.destroy()
      await client.close(); await server.close(); await backend.close()
    })
  }
})
