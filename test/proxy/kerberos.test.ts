import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { requireTools, startSquid } from '../fixtures/proxies.js'
import { requireKerberos, startRealm } from '../fixtures/kerberos.js'
import { TOKEN, startServer } from '../fixtures/tunnel.js'
import { freePort } from '../fixtures/net.js'
import { cleanEnv, hashingBackend, loggedConnects, runCli, transferBothWays } from './helpers.js'
import type { TunnelServer } from '../../index.js'
import type { ProxyProcess } from '../fixtures/proxies.js'
import type { Realm } from '../fixtures/kerberos.js'
import type { CliProcess, HashingBackend } from './helpers.js'

const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url))
const HIDE_KERBEROS = fileURLToPath(new URL('../fixtures/hide-kerberos.js', import.meta.url))

/** Whether the optional native `kerberos` package is installed and built. */
function haveKerberosModule (): boolean {
  try { createRequire(import.meta.url).resolve('kerberos'); return true } catch { return false }
}

/**
 * Negotiate against a real realm: an MIT KDC on loopback, squid's negotiate_kerberos_auth with
 * a keytab for HTTP/localhost, and the CLI with (or without) a ticket from kinit. Each client is
 * a CLI process, so that its Kerberos environment (KRB5_CONFIG, KRB5CCNAME) is its own.
 */
describe('proxy: Negotiate (Kerberos) with an MIT KDC on loopback', function () {
  let realm: Realm
  let server: TunnelServer
  let backend: HashingBackend
  let negotiateOnly: ProxyProcess
  let negotiateAndNtlm: ProxyProcess
  let negotiateNoConnect: ProxyProcess
  let aliceCache: string
  const clis: CliProcess[] = []

  before(async function () {
    requireTools(this, ['squid', 'negotiateKerberosAuth', 'ntlmFakeAuth'])
    requireKerberos(this)
    if (!haveKerberosModule()) {
      console.log('      SKIPPED: the optional kerberos npm package is not built; apt-get install -y libkrb5-dev build-essential, then npm install')
      this.skip()
    }
    realm = await startRealm()
    realm.addUser('alice', 'alice-pw')
    const principal = `HTTP/localhost@${realm.realm}`
    const keytab = realm.addService('HTTP/localhost')
    aliceCache = realm.kinit('alice', 'alice-pw')
    const negotiate = { keytab, principal, krb5Config: realm.krb5Config }
    negotiateOnly = await startSquid({ windowsAuth: { negotiate } })
    negotiateAndNtlm = await startSquid({ windowsAuth: { negotiate, ntlm: 'fake' } })
    negotiateNoConnect = await startSquid({ windowsAuth: { negotiate }, denyConnect: true })
    server = await startServer({ httpTunnelPort: await freePort() })
    backend = await hashingBackend()
  })
  afterEach(async function () {
    await Promise.all(clis.splice(0).map(async c => await c.stop()))
  })
  after(async function () {
    await negotiateOnly?.close()
    await negotiateAndNtlm?.close()
    await negotiateNoConnect?.close()
    await server?.close()
    await backend?.close()
    await realm?.close()
  })

  /** The CLI tunnel through `proxyUrl`, with a Kerberos environment. */
  const tunnel = (proxyUrl: string, env: Record<string, string>, extra: string[] = [], node: string[] = [], endpoint = `127.0.0.1:${server.port}`): CliProcess => {
    const cli = runCli(process.execPath, [...node, CLI, '-l', 'debug', 'tunnel', '-e', endpoint, '-b', `127.0.0.1:${backend.port}`, '-p', '0',
      '--fingerprint', server.fingerprint, '--proxy', proxyUrl, ...extra], cleanEnv({ TOKEN, ...env }))
    clis.push(cli)
    return cli
  }
  const frontendOf = async (cli: CliProcess): Promise<number> => Number((await cli.waitFor(/frontend [\d.]+:\d+/)).split(':').at(-1))
  const squidLogged = async (proxy: ProxyProcess, user: RegExp): Promise<string[]> => await loggedConnects(proxy, `127.0.0.1:${server.port}`, user)

  it('with a ticket from kinit: Negotiate for HTTP@localhost, a tunnel byte-exactly, squid logs alice@TEST.LOCAL', async function () {
    const cli = tunnel(`http://localhost:${negotiateOnly.port}`, realm.env(aliceCache))
    await transferBothWays(await frontendOf(cli), backend)
    expect(cli.output()).to.include('authenticating with Negotiate')
    await cli.stop()
    expect(await squidLogged(negotiateOnly, / alice@TEST\.LOCAL /)).to.have.length.at.least(1)
  })

  it('a proxy that allows no CONNECT: plain HTTP to --httptunnelport, each connection authenticated with Negotiate; squid logs alice on the transport\'s requests', async function () {
    const plain = `http://127.0.0.1:${server.httpTunnelPort ?? 0}`
    const cli = tunnel(`http://localhost:${negotiateNoConnect.port}`, realm.env(aliceCache), [], [], plain)
    await transferBothWays(await frontendOf(cli), backend)
    expect(cli.output()).to.include('authenticating with Negotiate')
    await cli.stop()
    const lines = negotiateNoConnect.accessLog().split('\n').filter(l => l.includes(`${plain}/tunnel/http/`) && / alice@TEST\.LOCAL /.test(l))
    expect(lines.filter(l => / POST /.test(l)), negotiateNoConnect.accessLog()).to.have.length.at.least(1)
    expect(negotiateNoConnect.accessLog()).not.to.match(/ CONNECT /)
  })

  it('without a ticket: one line saying to run kinit, naming the proxy; keeps retrying', async function () {
    const cli = tunnel(`http://localhost:${negotiateOnly.port}`, realm.env(join(realm.dir, 'no-such-cache')))
    const line = await cli.waitFor(/ERROR .*\n/)
    expect(line).to.match(new RegExp(`proxy localhost:${negotiateOnly.port} requires authentication .*offers Negotiate\\): ` +
      'Negotiate: no Kerberos ticket for HTTP/localhost: run kinit'))
    await cli.waitFor(/reconnecting to .* in \d+ ms/)
  })

  it('an expired ticket: says so, and to run kinit again', async function () {
    const cache = realm.kinit('alice', 'alice-pw', '2s')
    // Expiry is the event: poll klist, bounded. The KDC still honours a ticket for its clock skew
    // after that (1 s in this realm), so the client starts only once that is over too.
    for (let i = 0; i < 100 && realm.valid(cache); i++) await new Promise(resolve => setTimeout(resolve, 100))
    expect(realm.valid(cache), 'the 2 s ticket expired').to.equal(false)
    await new Promise(resolve => setTimeout(resolve, 1500))
    const cli = tunnel(`http://localhost:${negotiateOnly.port}`, realm.env(cache))
    const line = await cli.waitFor(/ERROR .*\n/)
    expect(line).to.match(/Negotiate: the Kerberos ticket has expired: run kinit again/)
  })

  it('an unknown service principal (the proxy named by IP address): says the KDC does not know HTTP/127.0.0.1', async function () {
    const cli = tunnel(`http://127.0.0.1:${negotiateOnly.port}`, realm.env(aliceCache))
    const line = await cli.waitFor(/ERROR .*\n/)
    expect(line).to.match(/the KDC does not know the service principal HTTP\/127\.0\.0\.1/)
  })

  it('without the optional kerberos package: says how to install it; NTLM still works', async function () {
    const cli = tunnel(`http://localhost:${negotiateOnly.port}`, realm.env(aliceCache), [], ['--import', HIDE_KERBEROS])
    const line = await cli.waitFor(/ERROR .*\n/)
    expect(line).to.match(/Negotiate \(Kerberos\) proxy authentication needs the optional "kerberos" package.*apt-get install libkrb5-dev build-essential, then npm install kerberos/)
    const ntlm = tunnel(`http://localhost:${negotiateAndNtlm.port}`, { ...realm.env(aliceCache), PROXY_PASSWORD: 'pw' }, ['--proxy-user', 'CORP\\bob'], ['--import', HIDE_KERBEROS])
    await transferBothWays(await frontendOf(ntlm), backend)
  })

  it('Negotiate and NTLM offered, no ticket: falls back to NTLM with --proxy-user', async function () {
    const cli = tunnel(`http://localhost:${negotiateAndNtlm.port}`, { ...realm.env(join(realm.dir, 'no-such-cache')), PROXY_PASSWORD: 'pw' },
      ['--proxy-user', 'CORP\\bob'])
    await transferBothWays(await frontendOf(cli), backend)
    expect(cli.output()).to.match(/cannot use Negotiate \(no Kerberos ticket.*\n.*authenticating with NTLM/)
    await cli.stop()
    expect(await squidLogged(negotiateAndNtlm, / CORP.?\\\\bob.? /)).to.have.length.at.least(1)
  })

  it('Negotiate and NTLM offered, with a ticket: Negotiate wins over NTLM', async function () {
    const cli = tunnel(`http://localhost:${negotiateAndNtlm.port}`, { ...realm.env(aliceCache), PROXY_PASSWORD: 'pw' }, ['--proxy-user', 'CORP\\bob'])
    await transferBothWays(await frontendOf(cli), backend)
    await cli.stop()
    expect(await squidLogged(negotiateAndNtlm, / alice@TEST\.LOCAL /)).to.have.length.at.least(1)
  })
})
