import { expect } from 'chai'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TunnelClient } from '../../index.js'
import { runCli, runCliToEnd } from '../fixtures/cli.js'
import { echoServer, eventually, freePort, freePortRange, openTransfer, randomPayload, sha256 } from '../fixtures/net.js'
import { testLogger, tunnelData } from '../fixtures/tunnel.js'
import type { CliProcess } from '../fixtures/cli.js'
import type { TcpServer } from '../fixtures/net.js'

describe('reverselb server --config (tokens, limits, SIGHUP)', function () {
  this.timeout(60_000)
  let dir: string
  let echo: TcpServer
  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'reverselb-server-config-'))
    echo = await echoServer()
  })
  after(async function () {
    await echo.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const write = (name: string, text: string): string => { const p = join(dir, name); writeFileSync(p, text); return p }
  const client = (port: number, fingerprint: string, token: string, serviceName: string): TunnelClient =>
    new TunnelClient(`127.0.0.1:${port}`, tunnelData(echo.port, { serviceName, token }), { fingerprint, proxy: 'none', logger: testLogger, maxBackoffMs: 500 })

  async function start (path: string, args: string[] = []): Promise<{ cli: CliProcess, port: number, fingerprint: string }> {
    const cli = runCli(['server', '--config', path, ...args], { SECOND_TOKEN: 'second-token-1111' })
    const [, port] = await cli.waitFor(/listening on: wss:\/\/[^ ]+:(\d+)\/tunnel/)
    const [, fingerprint] = await cli.waitFor(/fingerprint: ([0-9A-F:]{95})/)
    return { cli, port: Number(port), fingerprint }
  }

  it('reads tokens and limits from the file; flags win; SIGHUP closes the sessions of a removed token and keeps the others', async function () {
    const dyn = await freePortRange(4)
    write('first.token', 'first-token-0000\n')
    const text = (tokens: string, maxservices: number): string =>
      `host: 127.0.0.1\nport: 1\ndynport: ${dyn}\ndynportcount: 4\nportgrace: 0\nmaxservices: ${maxservices}\ntokens:\n${tokens}`
    const both = '  - token: { file: first.token }\n  - token: { env: SECOND_TOKEN }\n    services: ["b*"]\n'
    const path = write('server.yaml', text(both, 8))
    // --port on the command line wins over the file's port 1.
    const { cli, port, fingerprint } = await start(path, ['--port', String(await freePort())])
    const a = client(port, fingerprint, 'first-token-0000', 'alpha')
    const b = client(port, fingerprint, 'second-token-1111', 'beta')
    try {
      const alpha = (await a.ready()).frontendPort
      await b.ready()
      const other = client(port, fingerprint, 'second-token-1111', 'alpha2')
      const refused = await other.ready().catch((e: Error) => e)
      await other.close()
      expect(refused).to.be.instanceOf(Error).with.property('message').that.matches(/may not register service "alpha2"/)
      const transfer = await openTransfer(alpha)
      const sent = [randomPayload(2 << 20)]
      await transfer.send(sent[0])
      // The second token goes, and only one service per address is allowed from now on.
      write('server.yaml', text('  - token: { file: first.token }\n', 1))
      cli.child.kill('SIGHUP')
      await cli.waitFor(/closing the connection from .* \(services beta\): its token was removed/)
      await eventually(() => { expect(b.connectedSessions).to.equal(0) })
      await b.close()
      expect(a.connectedSessions).to.equal(1)
      const more = await a.addService(tunnelData(echo.port, { serviceName: 'alpha3' })).catch((e: Error) => e)
      expect(more).to.be.instanceOf(Error).with.property('message').that.matches(/already registered 1 services, the most allowed/)
      // A broken file is refused; the running tokens and limits stay.
      write('server.yaml', text('  - token: { file: missing.token }\n', 8))
      cli.child.kill('SIGHUP')
      await cli.waitFor(/SIGHUP: refused: .*server\.yaml:8: tokens\.0\.token: cannot read missing\.token.*the running configuration stays/)
      sent.push(randomPayload(2 << 20))
      await transfer.send(sent[1])
      expect(sha256(await transfer.finish())).to.equal(sha256(Buffer.concat(sent)))
      expect(cli.stderr).not.to.match(/first-token-0000|second-token-1111/)
    } finally {
      await a.close(); await b.close()
      expect(await cli.stop()).to.equal(0)
    }
  })

  it('refuses a bad file at start with exit code 2, naming file, line and key', async function () {
    const cases: Array<[string, RegExp]> = [
      ['port: 9999\nmaxsession: 3\n', /bad\.yaml:2: maxsession: unknown key/],
      ['tokens:\n  - token: abc\n    ports: 10-5\n', /bad\.yaml:3: tokens\.0\.ports: "10-5" is not a port/],
      ['lbpolicy: random\ntoken: x\n', /bad\.yaml:1: lbpolicy: must be one of "roundrobin", "leastconn"/],
      ['token: x\nkeepalive: -1\n', /bad\.yaml:2: keepalive: must be > 0/]
    ]
    for (const [text, message] of cases) {
      const { code, stderr } = await runCliToEnd(['server', '--config', write('bad.yaml', text)])
      expect(code, stderr).to.equal(2)
      expect(stderr).to.match(message)
    }
  })
})
