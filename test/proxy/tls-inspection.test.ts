import { rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { TlsVerificationError, TunnelClient, UpgradeBlockedError } from '../../index.js'
import { connectLines, makeTestCa, requireTools, startSquid } from '../fixtures/proxies.js'
import { TOKEN, startServer, testLogger, tunnelData } from '../fixtures/tunnel.js'
import { cleanEnv, hashingBackend, runCli, transferBothWays } from './helpers.js'
import type { TunnelClientOptions, TunnelServer } from '../../index.js'
import type { ProxyProcess, TestCa } from '../fixtures/proxies.js'
import type { HashingBackend } from './helpers.js'

const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url))

describe('proxy: TLS-inspecting squid (ssl-bump)', function () {
  let server: TunnelServer
  let backend: HashingBackend
  let ca: TestCa
  let bump: ProxyProcess
  const clients: TunnelClient[] = []
  const authFailures: unknown[] = []

  before(async function () {
    requireTools(this, ['squid', 'certgen', 'openssl'])
    ca = makeTestCa()
    bump = await startSquid({ sslBump: ca })
    server = await startServer()
    server.on('authFailure', (e) => authFailures.push(e))
    backend = await hashingBackend()
  })
  afterEach(async function () {
    await Promise.all(clients.splice(0).map(async c => await c.close()))
  })
  after(async function () {
    await bump?.close()
    await server?.close()
    await backend?.close()
    if (ca !== undefined) rmSync(ca.dir, { recursive: true, force: true })
  })

  const client = (proxy: ProxyProcess, opts: TunnelClientOptions): TunnelClient => {
    const c = new TunnelClient(`127.0.0.1:${server.port}`, tunnelData(backend.port), {
      proxy: proxy.url, maxBackoffMs: 1000, logger: testLogger, ...opts
    })
    clients.push(c)
    return c
  }

  it('with the proxy\'s CA (--ca) connects through the inspection, authenticates and carries data byte-exactly', async function () {
    const c = client(bump, { ca: ca.pem })
    const { frontendPort } = await c.ready()
    await transferBothWays(frontendPort, backend)
    await c.close()
    // The proxy decrypted it: it logged the WebSocket request inside the CONNECT, not just a tunnel.
    let log = ''
    for (let i = 0; i < 50 && !/GET https:\/\/127\.0\.0\.1:\d+\/tunnel/.test(log); i++) {
      await new Promise(resolve => setTimeout(resolve, 100))
      log = bump.accessLog()
    }
    expect(connectLines(log, `127.0.0.1:${server.port}`)).to.have.length.at.least(1)
    expect(log).to.match(new RegExp(`GET https://127\\.0\\.0\\.1:${server.port}/tunnel`))
  })

  it('with --fingerprint (e2e auto) pins the server inside the end-to-end layer and carries data through the inspection', async function () {
    const c = client(bump, { fingerprint: server.fingerprint })
    const { frontendPort } = await c.ready()
    await transferBothWays(frontendPort, backend)
  })

  it('with --fingerprint and --e2e never refuses, saying interception was detected, before sending the token', async function () {
    const failuresBefore = authFailures.length
    const upgrades = (): number => (bump.accessLog().match(new RegExp(`GET https://127\\.0\\.0\\.1:${server.port}/tunnel`, 'g')) ?? []).length
    const upgradesBefore = upgrades()
    const c = client(bump, { fingerprint: server.fingerprint, e2e: 'never' })
    const err = await c.ready().then(() => undefined, (e: Error) => e)
    expect(err).to.be.instanceOf(TlsVerificationError)
    expect(err?.message).to.match(/TLS interception detected/)
    expect(err?.message).to.match(/issued by "reverselb test inspection CA"/)
    expect(err?.message).to.include(`through proxy 127.0.0.1:${bump.port}`)
    // Only the CONNECT tunnel was made: no HTTP request (and so no token) went through squid.
    await c.close()
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(upgrades()).to.equal(upgradesBefore)
    expect(authFailures.length).to.equal(failuresBefore)
  })

  it('without --ca refuses the re-signed certificate and suggests the proxy\'s CA', async function () {
    const err = await client(bump, {}).ready().then(() => undefined, (e: Error) => e)
    expect(err).to.be.instanceOf(TlsVerificationError)
    expect(err?.message).to.match(/is not trusted/)
    expect(err?.message).to.match(/if the proxy inspects TLS, pass its CA with --ca/)
  })

  it('the CLI with --fingerprint and --e2e never prints the interception message to the user', async function () {
    const cli = runCli(process.execPath, [CLI, 'tunnel', '-e', `127.0.0.1:${server.port}`, '-b', `127.0.0.1:${backend.port}`,
      '-p', '0', '--fingerprint', server.fingerprint, '--e2e', 'never', '--proxy', bump.url], cleanEnv({ TOKEN }))
    try {
      const [line] = await cli.waitFor(/ERROR .*TLS interception detected[^\n]*/)
      expect(line).to.include(`127.0.0.1:${server.port} through proxy 127.0.0.1:${bump.port}`)
    } finally {
      await cli.stop()
    }
  })

  it('the CLI with --ca FILE connects through the inspection', async function () {
    const cli = runCli(process.execPath, [CLI, 'tunnel', '-e', `127.0.0.1:${server.port}`, '-b', `127.0.0.1:${backend.port}`,
      '-p', '0', '--ca', ca.certFile, '--proxy', bump.url], cleanEnv({ TOKEN }))
    try {
      const [line] = await cli.waitFor(/registered with [^\n]*frontend [^\n]*:(\d+)/)
      const port = Number(/:(\d+)$/.exec(line)?.[1])
      await transferBothWays(port, backend)
    } finally {
      await cli.stop()
    }
  })

  describe('when the inspecting proxy strips WebSocket upgrades', function () {
    let stripping: ProxyProcess
    before(async function () { stripping = await startSquid({ sslBump: ca, allowWebSocket: false }) })
    after(async function () { await stripping?.close() })

    it('with --transport websocket says the upgrade did not reach the server and how to fix the proxy', async function () {
      // --transport auto falls back to the HTTP transport instead (test/proxy/http-transport).
      const err = await client(stripping, { ca: ca.pem, transport: 'websocket' }).ready().then(() => undefined, (e: Error) => e)
      expect(err).to.be.instanceOf(UpgradeBlockedError)
      expect(err?.message).to.match(/the WebSocket upgrade did not reach 127\.0\.0\.1:\d+ through proxy 127\.0\.0\.1:\d+: it answered HTTP 426/)
      expect(err?.message).to.match(/strips the Upgrade\/Connection headers/)
      expect(err?.message).to.match(/Via: .*squid/)
    })
  })
})
