import { expect } from 'chai'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runCli, runCliToEnd } from '../fixtures/cli.js'
import { connectionsTo, echoServer, eventually, exchange, nothingListens, openTransfer, randomPayload, sha256, tcpServer } from '../fixtures/net.js'
import { sshdMissing, startSshd } from '../fixtures/sshd.js'
import { TOKEN, startServer } from '../fixtures/tunnel.js'
import type { CliProcess } from '../fixtures/cli.js'
import type { TcpServer } from '../fixtures/net.js'
import type { Sshd } from '../fixtures/sshd.js'
import type { TunnelServer } from '../../index.js'

/** The frontend port the CLI logged for `name` (`tunnel NAME registered with ... frontend HOST:PORT`). */
async function frontendOf (cli: CliProcess, name: string): Promise<number> {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const m = await cli.waitFor(new RegExp(`tunnel ${escaped} registered with .* frontend [^ ]+:(\\d+)\\s`))
  return Number(m[1])
}

describe('reverselb tunnel --config (many services, reloads)', function () {
  this.timeout(90_000)
  let dir: string
  let echo: TcpServer
  let web: TcpServer
  let sshd: Sshd | undefined
  let server: TunnelServer

  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'reverselb-config-'))
    echo = await echoServer()
    web = await tcpServer((s) => s.end('HTTP/1.0 200 OK\r\n\r\nweb'))
    if (sshdMissing() === undefined) sshd = await startSshd()
  })
  after(async function () {
    await echo?.close(); await web?.close(); await sshd?.close()
    rmSync(dir, { recursive: true, force: true })
  })
  beforeEach(async function () { server = await startServer({ dynPortCount: 8 }) })
  afterEach(async function () { await server.close() })

  const write = (name: string, text: string): string => { const p = join(dir, name); writeFileSync(p, text); return p }
  const top = (): string => `apiendpoint: 127.0.0.1:${server.port}\nfingerprint: ${server.fingerprint}\ntoken: { env: TUNNEL_TOKEN }\nproxy: none\n`
  const service = (name: string, port: number, extra = ''): string => `  - servicename: ${name}\n    serviceendpoint: 127.0.0.1:${port}\n${extra}`

  it('carries HTTP, raw TCP, ssh (via stdinproxy) and instance-routed services over one WebSocket', async function () {
    const sshPort = sshd?.port ?? echo.port
    const path = write('four.yaml', top() + 'services:\n' +
      service('web', web.port) + service('echo', echo.port) + service('ssh', sshPort) +
      service('shared', echo.port, '    instancename: a\n') + service('shared', web.port, '    instancename: b\n'))
    const cli = runCli(['tunnel', '--config', path], { TUNNEL_TOKEN: TOKEN })
    try {
      const [webPort, echoPort, sshFront, sharedA, sharedB] = await Promise.all(['web', 'echo', 'ssh', 'shared:a', 'shared:b'].map(async n => await frontendOf(cli, n)))
      expect(sharedA).to.equal(sharedB)
      expect((await exchange(webPort, Buffer.from('GET / HTTP/1.0\r\n\r\n'))).toString()).to.equal('HTTP/1.0 200 OK\r\n\r\nweb')
      const payload = randomPayload(2 << 20)
      expect(sha256(await exchange(echoPort, payload))).to.equal(sha256(payload))
      if (sshd !== undefined) expect(await sshd.exec(sshFront, 'echo over ssh')).to.equal('over ssh\n')
      // Instances are told apart by the Host header; a's backend echoes, b's is the web server.
      const toA = Buffer.from('GET / HTTP/1.0\r\nHost: a\r\n\r\n')
      expect((await exchange(sharedA, toA)).toString()).to.equal(toA.toString())
      expect((await exchange(sharedB, Buffer.from('GET / HTTP/1.0\r\nHost: b\r\n\r\n'))).toString()).to.match(/web$/)
      // One session (connections: 1): one WebSocket for all five registrations.
      expect(await connectionsTo(server.port)).to.equal(1)
      expect(cli.stderr).not.to.contain(TOKEN)
    } finally {
      expect(await cli.stop()).to.equal(0)
    }
  })

  it('on SIGHUP adds and removes services while long transfers on the others finish byte-exact; a broken file changes nothing', async function () {
    const path = write('hup.yaml', top() + 'services:\n' + service('keep', echo.port) + service('keep2', echo.port) + service('goner', web.port))
    const cli = runCli(['tunnel', '--config', path], { TUNNEL_TOKEN: TOKEN })
    try {
      const [keep, keep2, goner] = await Promise.all(['keep', 'keep2', 'goner'].map(async n => await frontendOf(cli, n)))
      const transfers = await Promise.all([openTransfer(keep), openTransfer(keep2)])
      const sent = transfers.map(() => [randomPayload(4 << 20)])
      await Promise.all(transfers.map(async (t, i) => await t.send(sent[i][0])))
      write('hup.yaml', top() + 'services:\n' + service('keep', echo.port) + service('keep2', echo.port) + service('added', web.port))
      cli.child.kill('SIGHUP')
      await cli.waitFor(/services: added added; removed goner/)
      const added = await frontendOf(cli, 'added')
      await eventually(async () => { expect(await nothingListens(goner)).to.equal(true) })
      expect((await exchange(added, Buffer.alloc(0))).toString()).to.match(/web$/)
      // A broken file: refused, named, and the running services stay as they are.
      write('hup.yaml', top() + 'services:\n' + service('keep', echo.port) + '    frontendprot: 1\n')
      cli.child.kill('SIGHUP')
      await cli.waitFor(/SIGHUP: refused: .*hup\.yaml:8: services\.0\.frontendprot: unknown key.*the running configuration stays/)
      expect((await exchange(added, Buffer.alloc(0))).toString()).to.match(/web$/)
      expect([...server.registry.services.keys()].sort()).to.deep.equal(['added', 'keep', 'keep2'])
      for (const [i, t] of transfers.entries()) {
        sent[i].push(randomPayload(4 << 20))
        await t.send(sent[i][1])
      }
      const received = await Promise.all(transfers.map(async t => await t.finish()))
      for (const [i, r] of received.entries()) expect(sha256(r)).to.equal(sha256(Buffer.concat(sent[i])))
      expect(await connectionsTo(server.port)).to.equal(1)
    } finally {
      expect(await cli.stop()).to.equal(0)
    }
  })

  it('--watch applies an edited file; changed backends take effect for new connections', async function () {
    const path = write('watch.yaml', top() + 'services:\n' + service('svc', echo.port))
    const cli = runCli(['tunnel', '--config', path, '--watch'], { TUNNEL_TOKEN: TOKEN })
    try {
      const port = await frontendOf(cli, 'svc')
      expect((await exchange(port, Buffer.from('echo'))).toString()).to.equal('echo')
      write('watch.yaml', top() + 'services:\n' + service('svc', web.port))
      await cli.waitFor(/services: changed svc/)
      expect((await exchange(port, Buffer.alloc(0))).toString()).to.match(/web$/)
    } finally {
      expect(await cli.stop()).to.equal(0)
    }
  })

  it('options on the command line and in the environment win over the file\'s top level', async function () {
    const path = write('override.yaml', 'apiendpoint: 127.0.0.1:1\ntoken: wrong\nproxy: none\n' + `fingerprint: ${server.fingerprint}\n` + 'services:\n' + service('over', echo.port))
    const cli = runCli(['tunnel', '--config', path, '-e', `127.0.0.1:${server.port}`, '-s', 'flag'], { TOKEN })
    try {
      await cli.waitFor(/--servicename ignored: with --config, services come from/)
      const port = await frontendOf(cli, 'over')
      expect((await exchange(port, Buffer.from('won'))).toString()).to.equal('won')
    } finally {
      expect(await cli.stop()).to.equal(0)
    }
  })

  it('runs the README config example (hosts and ports replaced by local ones)', async function () {
    const readme = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8')
    const example = /```yaml\n# tunnels\.yaml[^\n]*\n([\s\S]*?)```/.exec(readme)?.[1]
    expect(example, 'README.md has the tunnels.yaml example').to.be.a('string')
    const path = write('readme.yaml', (example ?? '')
      .replace('tunnel.example.com:9999', `127.0.0.1:${server.port}`).replace('AB:CD:...', server.fingerprint)
      .replace('127.0.0.1:8080', `127.0.0.1:${web.port}`).replace('127.0.0.1:22', `127.0.0.1:${echo.port}`).replace('frontendport: 8000', 'frontendport: 0') + 'proxy: none\n')
    const cli = runCli(['tunnel', '--config', path, '--watch'], { TOKEN })
    try {
      expect((await exchange(await frontendOf(cli, 'web'), Buffer.alloc(0))).toString()).to.match(/web$/)
      expect((await exchange(await frontendOf(cli, 'ssh'), Buffer.from('22'))).toString()).to.equal('22')
    } finally {
      expect(await cli.stop()).to.equal(0)
    }
  })

  it('refuses a bad file at start with exit code 2, naming file, line and key', async function () {
    const cases: Array<[string, RegExp]> = [
      ['services:\n  - servicename: a\n    serviceendpoint: 127.0.0.1:1\n    bogus: true\n', /bad\.yaml:4: services\.0\.bogus: unknown key/],
      ['apiendpoint: 127.0.0.1:1\nservices:\n  - servicename: a\n    serviceendpoint: 127.0.0.1:1\n    frontendport: eighty\n', /bad\.yaml:5: services\.0\.frontendport: must be integer/],
      ['services:\n  - servicename: a\n    serviceendpoint: 127.0.0.1:1\n  - servicename: a\n    serviceendpoint: 127.0.0.1:2\n', /bad\.yaml:4: services\.1\.servicename: duplicate service "a"/],
      ['keepalive: 5\nkeepalive: 6\nservices: []\n', /bad\.yaml:2: not valid YAML: Map keys must be unique/],
      ['apiendpoint: [1, 2]\nservices: []\n', /bad\.yaml:1: apiendpoint: must be a string or a list of strings/],
      ['services:\n  - servicename: a\n', /bad\.yaml:2: services\.0: missing key "serviceendpoint"/],
      ['token: { env: NOT_SET_HERE }\nservices: []\n', /bad\.yaml:1: token: environment variable NOT_SET_HERE is not set/]
    ]
    for (const [text, message] of cases) {
      const path = write('bad.yaml', text)
      const { code, stderr } = await runCliToEnd(['tunnel', '--config', path])
      expect(code, stderr).to.equal(2)
      expect(stderr).to.match(message)
    }
  })
})
