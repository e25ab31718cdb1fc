import { expect } from 'chai'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RegistrationRefusedError } from '../../index.js'
import { parseTokensFile } from '../../server/auth.js'
import { DEFAULT_LIMITS } from '../../server/limits.js'
import { eventually, freePort, nothingListens, tcpServer } from '../fixtures/net.js'
import { TOKEN, startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import { exchangeWithTimeout } from './helpers.js'
import type { TunnelClient, TunnelServer, TunnelServerOptions } from '../../index.js'
import type { TcpServer } from '../fixtures/net.js'

/** A backend that answers every connection with its name, so a test sees where traffic went. */
async function namedBackend (name: string): Promise<TcpServer> {
  return await tcpServer((socket) => socket.end(`${name}\n`))
}

async function refusal (client: TunnelClient): Promise<Error> {
  try {
    const ok = await client.ready()
    throw new Error(`registration should have been refused; got port ${ok.frontendPort}`)
  } catch (err) {
    return err as Error
  } finally {
    await client.close()
  }
}

/** Resolves once service `name` has no session left on the server. */
async function gone (server: TunnelServer, name: string): Promise<void> {
  await eventually(() => expect(server.registry.services.has(name), `service ${name} still registered`).to.equal(false))
}

const whoAnswers = async (port: number): Promise<string> => (await exchangeWithTimeout(port, Buffer.alloc(0), 5000)).toString().trim()

describe('a restricted token cannot take over another service\'s port (issue 19, item 3)', function () {
  this.timeout(30_000)
  const WEB_TOKEN = 'web-team-token'
  const WEB_PORTS_TOKEN = 'web-team-ports-token'
  let login: TcpServer
  let evil: TcpServer
  let loginPort: number
  /** Runs `fn` against a fresh server with the web team's tokens and the default port grace (the fixture turns it off). */
  async function withServer (fn: (server: TunnelServer) => Promise<void>, opts: Partial<TunnelServerOptions> = {}): Promise<void> {
    const server = await startServer({
      dynPortCount: 2,
      limits: { portGraceMs: DEFAULT_LIMITS.portGraceMs },
      token: [TOKEN, { token: WEB_TOKEN, services: ['web', 'web-*'] }, { token: WEB_PORTS_TOKEN, services: ['web', 'web-*'], ports: `${loginPort}` }],
      ...opts
    })
    try { await fn(server) } finally { await server.close() }
  }

  before(async function () {
    login = await namedBackend('login')
    evil = await namedBackend('evil')
    loginPort = await freePort()
  })
  after(async function () {
    await login.close()
    await evil.close()
  })

  it('the legitimate client of a port is briefly away: a web-only token registering -s web -p <its port> is refused, and the client gets its port back', async function () {
    await withServer(async (server) => {
      const legit = startClient(server, tunnelData(login.port, { serviceName: 'login', frontendData: { port: loginPort } }))
      expect((await legit.ready()).frontendPort).to.equal(loginPort)
      expect(await whoAnswers(loginPort)).to.equal('login')
      await legit.close() // a restart, a network blip, a backoff
      await gone(server, 'login')

      // The attack of the issue: a token bound to web, web-* asks for the away service's port.
      const hijack = await refusal(startClient(server, tunnelData(evil.port, { serviceName: 'web', token: WEB_TOKEN, frontendData: { port: loginPort } })))
      expect(hijack).to.be.instanceOf(RegistrationRefusedError)
      expect(hijack.message).to.contain(`this token may not choose its port (${loginPort})`)
      expect(hijack.message).not.to.contain(WEB_TOKEN)
      // Even a token that was given that port, or an unrestricted one, must wait out the grace period.
      for (const token of [WEB_PORTS_TOKEN, TOKEN]) {
        const err = await refusal(startClient(server, tunnelData(evil.port, { serviceName: 'web-x', token, frontendData: { port: loginPort } })))
        expect(err).to.be.instanceOf(RegistrationRefusedError)
        expect(err.message).to.match(new RegExp(`port ${loginPort} is reserved for service "login" for another \\d+ s`))
      }
      // Nobody listens there meanwhile (traffic is refused, not sent to the attacker).
      expect(await nothingListens(loginPort)).to.equal(true)

      const back = startClient(server, tunnelData(login.port, { serviceName: 'login', frontendData: { port: loginPort } }))
      try {
        expect((await back.ready()).frontendPort).to.equal(loginPort)
        expect(await whoAnswers(loginPort)).to.equal('login')
      } finally {
        await back.close()
      }
    })
  })

  it('a service\'s dynamic port is not handed to another service while it is away; it gets it back', async function () {
    await withServer(async (server) => {
      const first = startClient(server, tunnelData(login.port, { serviceName: 'login' }))
      const port = (await first.ready()).frontendPort
      await first.close()
      await gone(server, 'login')

      // Port 0: the other pool port, never the away service's.
      const web = startClient(server, tunnelData(evil.port, { serviceName: 'web', token: WEB_TOKEN }))
      const webPort = (await web.ready()).frontendPort
      expect(webPort).not.to.equal(port)
      const full = await refusal(startClient(server, tunnelData(evil.port, { serviceName: 'web-2', token: WEB_TOKEN })))
      expect(full.message).to.match(/no free port left in the dynamic pool/)
      // Asked for explicitly (a pool port, which a reconnect asks for): still reserved.
      const explicit = await refusal(startClient(server, tunnelData(evil.port, { serviceName: 'web-3', token: WEB_TOKEN, frontendData: { port } })))
      expect(explicit.message).to.match(new RegExp(`port ${port} is reserved for service "login"`))

      // The service comes back asking for port 0 and finds its port.
      const again = startClient(server, tunnelData(login.port, { serviceName: 'login' }))
      expect((await again.ready()).frontendPort).to.equal(port)
      expect(await whoAnswers(port)).to.equal('login')
      await Promise.all([again.close(), web.close()])
    })
  })

  it('restricted tokens: ports= lets them choose those ports; without it, reconnects to a pool port still work', async function () {
    await withServer(async (server) => {
      const bound = startClient(server, tunnelData(evil.port, { serviceName: 'web-bound', token: WEB_PORTS_TOKEN, frontendData: { port: loginPort } }))
      expect((await bound.ready()).frontendPort).to.equal(loginPort)
      await bound.close()
      const other = await freePort()
      const outside = await refusal(startClient(server, tunnelData(evil.port, { serviceName: 'web-far', token: WEB_PORTS_TOKEN, frontendData: { port: other } })))
      expect(outside.message).to.contain(`this token may not use port ${other}; it may use ports ${loginPort} and frontend port 0 or the dynamic pool`)
      // A client asks again for the pool port it was given (e.g. after a server restart).
      const dyn = startClient(server, tunnelData(evil.port, { serviceName: 'web-dyn', token: WEB_TOKEN }))
      const dynPort = (await dyn.ready()).frontendPort
      await dyn.close()
      await gone(server, 'web-dyn')
      server.registry.holds.release('web-dyn') // as after a server restart: nothing held
      const re = startClient(server, tunnelData(evil.port, { serviceName: 'web-dyn', token: WEB_TOKEN, frontendData: { port: dynPort } }))
      expect((await re.ready()).frontendPort).to.equal(dynPort)
      await re.close()
    })
  })

  it('the grace period ends: the port is free for others after portGraceMs', async function () {
    await withServer(async (server) => {
      const a = startClient(server, tunnelData(login.port, { serviceName: 'login', frontendData: { port: loginPort } }))
      await a.ready()
      await a.close()
      await gone(server, 'login')
      await eventually(async () => {
        const b = startClient(server, tunnelData(evil.port, { serviceName: 'other', frontendData: { port: loginPort } }))
        try { expect((await b.ready()).frontendPort).to.equal(loginPort) } finally { await b.close() }
      }, 5000, 100)
    }, { limits: { portGraceMs: 300 } })
  })

  it('tokens file: ports= is parsed and checked, with the line and never the token in errors', function () {
    const dir = mkdtempSync(join(tmpdir(), 'tokens-'))
    try {
      const file = join(dir, 'tokens')
      writeFileSync(file, '# comment\nadmin-secret\n9a77secret web web-* ports=18800-18810,9000 # team\nports-only ports=7000\n')
      expect(parseTokensFile(file)).to.deep.equal([
        { token: 'admin-secret' },
        { token: '9a77secret', services: ['web', 'web-*'], ports: '18800-18810,9000' },
        { token: 'ports-only', ports: '7000' }
      ])
      for (const [line, reason] of [
        ['s3cret web ports=99999', /tokens:1: ports=99999: "99999" is not a port/],
        ['s3cret web ports=', /tokens:1: ports=: no ports given/],
        ['s3cret web ports=1-2 ports=3', /tokens:1: ports= given 2 times/]
      ] as const) {
        writeFileSync(file, line + '\n')
        expect(() => parseTokensFile(file)).to.throw(reason).with.property('message').that.does.not.contain('s3cret')
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
