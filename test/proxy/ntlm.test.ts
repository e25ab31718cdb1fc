import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { AuthorizationError, TunnelClient } from '../../index.js'
import { connectLines, requireTools, sambaNtlmHelper, startSquid } from '../fixtures/proxies.js'
import { captureLogger } from '../fixtures/logger.js'
import { TOKEN, startServer, testLogger, tunnelData } from '../fixtures/tunnel.js'
import { cleanEnv, hashingBackend, loggedConnects, runCli, transferBothWays } from './helpers.js'
import type { TunnelClientOptions, TunnelServer } from '../../index.js'
import type { ProxyProcess } from '../fixtures/proxies.js'
import type { HashingBackend } from './helpers.js'

const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url))

/**
 * How squid logs a user that ntlm_fake_auth accepted: DOMAIN\\user (squid doubles the backslash),
 * except that the helper reads one byte past each name: curl's NTLM gets CORPb\\bobw for CORP\bob too.
 */
const ntlmUser = (domain: string, user: string): RegExp => new RegExp(` ${domain}.?\\\\\\\\${user}.? `)

describe('proxy: NTLM (squid with ntlm_fake_auth: the real three-message NTLMSSP exchange)', function () {
  let server: TunnelServer
  let backend: HashingBackend
  let ntlmOnly: ProxyProcess
  let ntlmAndBasic: ProxyProcess
  let basicOnly: ProxyProcess
  const clients: TunnelClient[] = []

  before(async function () {
    requireTools(this, ['squid', 'ntlmFakeAuth', 'htpasswd', 'ncsaAuth'])
    server = await startServer()
    backend = await hashingBackend()
    ntlmOnly = await startSquid({ windowsAuth: { ntlm: 'fake' } })
    ntlmAndBasic = await startSquid({ windowsAuth: { ntlm: 'fake', basic: true }, auth: { user: 'carol', password: 'basicpw' } })
    basicOnly = await startSquid({ auth: { user: 'carol', password: 'basicpw' } })
  })
  afterEach(async function () {
    await Promise.all(clients.splice(0).map(async c => await c.close()))
  })
  after(async function () {
    await Promise.all([ntlmOnly, ntlmAndBasic, basicOnly].map(async p => await p?.close()))
    await server?.close()
    await backend?.close()
  })

  const client = (proxyUrl: string, opts: TunnelClientOptions = {}): TunnelClient => {
    const c = new TunnelClient(`127.0.0.1:${server.port}`, tunnelData(backend.port), {
      fingerprint: server.fingerprint, proxy: proxyUrl, maxBackoffMs: 1000, logger: testLogger, ...opts
    })
    clients.push(c)
    return c
  }
  const target = (): string => `127.0.0.1:${server.port}`

  it('authenticates DOMAIN\\user from the proxy URL on one connection and carries a tunnel byte-exactly; squid logs the user', async function () {
    const { logger, lines } = captureLogger()
    const c = client(`http://CORP%5Cbob:s3cret%40pw@127.0.0.1:${ntlmOnly.port}`, { logger })
    const { frontendPort } = await c.ready()
    await transferBothWays(frontendPort, backend)
    await c.close()
    const logged = await loggedConnects(ntlmOnly, target(), ntlmUser('CORP', 'bob'))
    expect(logged, ntlmOnly.accessLog()).to.have.length.at.least(1)
    expect(logged[0]).to.match(/TCP_TUNNEL\/200/)
    expect(lines.join('\n')).to.include('authenticating with NTLM')
    expect(lines.join('\n')).not.to.include('s3cret')
  })

  it('prefers NTLM over Basic when the proxy offers both', async function () {
    const { logger, lines } = captureLogger()
    const c = client(`http://CORP%5Cdave:pw@127.0.0.1:${ntlmAndBasic.port}`, { logger })
    const { frontendPort } = await c.ready()
    await transferBothWays(frontendPort, backend)
    await c.close()
    expect(await loggedConnects(ntlmAndBasic, target(), ntlmUser('CORP', 'dave'))).to.have.length.at.least(1)
    expect(lines.join('\n')).to.include('authenticating with NTLM').and.not.include('authenticating with Basic')
  })

  it('--proxy-auth ntlm against a Basic-only proxy: refuses to send Basic, saying why', async function () {
    const cli = runCli(process.execPath, [CLI, 'tunnel', '-e', target(), '-b', `127.0.0.1:${backend.port}`, '-p', '0',
      '--fingerprint', server.fingerprint, '--proxy', basicOnly.url, '--proxy-user', 'carol', '--proxy-auth', 'ntlm'],
    cleanEnv({ TOKEN, PROXY_PASSWORD: 'basicpw' }))
    try {
      await cli.waitFor(new RegExp(`proxy 127\\.0\\.0\\.1:${basicOnly.port} offers only Basic authentication, which --proxy-auth does not allow \\(ntlm\\)`))
      expect(connectLines(basicOnly.accessLog(), target()).filter(l => l.includes(' carol '))).to.have.length(0)
      expect(cli.output).not.to.include('basicpw')
    } finally {
      await cli.stop()
    }
  })

  it('the CLI takes --proxy-user DOMAIN\\user with $PROXY_PASSWORD, and carries a tunnel byte-exactly', async function () {
    const cli = runCli(process.execPath, [CLI, '-l', 'debug', 'tunnel', '-e', target(), '-b', `127.0.0.1:${backend.port}`, '-p', '0',
      '--fingerprint', server.fingerprint, '--proxy', ntlmOnly.url, '--proxy-user', 'CORP\\erin'],
    cleanEnv({ TOKEN, PROXY_PASSWORD: 'Erin-pw:1' }))
    try {
      const [line] = await cli.waitFor(/frontend [\d.]+:\d+/)
      await transferBothWays(Number(line.split(':').at(-1)), backend)
      expect(cli.output).to.include('authenticating with NTLM')
      expect(cli.output).not.to.include('Erin-pw')
    } finally {
      await cli.stop()
    }
    expect(await loggedConnects(ntlmOnly, target(), ntlmUser('CORP', 'erin'))).to.have.length.at.least(1)
  })

  it('without credentials: says the proxy requires authentication and how to give them', async function () {
    const err = await client(ntlmOnly.url).ready().then(() => undefined, (e: Error) => e)
    expect(err).to.be.instanceOf(AuthorizationError)
    expect(err?.message).to.match(new RegExp(`^proxy 127\\.0\\.0\\.1:${ntlmOnly.port} requires authentication \\(HTTP 407 .*offers NTLM\\): give credentials .*DOMAIN%5Cuser for NTLM`))
  })
})

describe('proxy: NTLMv2 checked for real (squid with Samba\'s ntlm_auth)', function () {
  const PASSWORD = 'Right-pw1'
  let server: TunnelServer
  let backend: HashingBackend
  let proxy: ProxyProcess
  const clients: TunnelClient[] = []

  before(async function () {
    requireTools(this, ['squid', 'ntlmAuth'])
    server = await startServer()
    backend = await hashingBackend()
    proxy = await startSquid({ windowsAuth: { ntlm: sambaNtlmHelper(PASSWORD, 'CORP') } })
  })
  afterEach(async function () {
    await Promise.all(clients.splice(0).map(async c => await c.close()))
  })
  after(async function () {
    await proxy?.close()
    await server?.close()
    await backend?.close()
  })

  const client = (user: string, password: string, opts: TunnelClientOptions = {}): TunnelClient => {
    const c = new TunnelClient(`127.0.0.1:${server.port}`, tunnelData(backend.port), {
      fingerprint: server.fingerprint, proxy: `http://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${proxy.port}`,
      maxBackoffMs: 1000, logger: testLogger, ...opts
    })
    clients.push(c)
    return c
  }

  it('the right password gets through and carries a tunnel byte-exactly; squid logs CORP\\frank', async function () {
    const c = client('CORP\\frank', PASSWORD)
    const { frontendPort } = await c.ready()
    await transferBothWays(frontendPort, backend)
    await c.close()
    expect(await loggedConnects(proxy, `127.0.0.1:${server.port}`, 'CORP\\\\frank')).to.have.length.at.least(1)
  })

  it('a wrong password: one line naming the proxy and user, never the password; not sent again (account lockout)', async function () {
    const wrong = 'Wrong-pw2'
    const { logger, lines } = captureLogger()
    const denied = (): number => proxy.accessLog().split('\n').filter(l => l.includes('TCP_DENIED/407') && l.includes(`127.0.0.1:${server.port}`)).length
    const before = denied()
    const c = client('CORP\\grace', wrong, { logger })
    const err = await c.ready().then(() => undefined, (e: Error) => e)
    expect(err).to.be.instanceOf(AuthorizationError)
    expect(err?.message).to.match(new RegExp(`^proxy 127\\.0\\.0\\.1:${proxy.port} rejected the credentials of user "CORP\\\\grace" \\(NTLM\\): HTTP 407 .*wrong password`))
    expect(err?.message).not.to.include('\n')
    // The client goes on retrying, but holds the rejected password back instead of sending it again.
    const again = await new Promise<Error>(resolve => c.once('error', resolve))
    expect(again.message).to.match(/earlier; not sending them again for \d+ min so as not to lock the account/)
    await c.close()
    // One NTLM attempt is three 407s (probe, Type 1, Type 3); a retry that holds back is one (the
    // probe). squid may write the retry's line a little later: wait for it, bounded.
    for (let i = 0; i < 50 && denied() - before < 4; i++) await new Promise(resolve => setTimeout(resolve, 100))
    expect(denied() - before).to.be.within(4, 5)
    for (const secret of [wrong, encodeURIComponent(wrong)]) expect([err?.stack, ...lines].join('\n')).not.to.include(secret)
  })
})

