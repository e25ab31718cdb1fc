import { expect } from 'chai'
import { echoServer, eventually, exchange, freePort, nothingListens } from '../fixtures/net.js'
import { runCli, runCliToEnd } from '../fixtures/cli.js'
import type { TcpServer } from '../fixtures/net.js'

describe('reverselb CLI', function () {
  this.timeout(30_000)
  let backend: TcpServer
  before(async function () { backend = await echoServer() })
  after(async function () { await backend.close() })

  it('runs the seed README command lines verbatim (backend replaced by a local one)', async function () {
    if (!(await nothingListens(9999)) || !(await nothingListens(8888))) this.skip()
    const server = runCli(['-t', '0000', 'server', '-p', '9999', '-s', 'localhost'])
    const tunnel = runCli(['-t', '0000', 'tunnel', '--apiendpoint', 'localhost:9999', '--servicename', 'myendpoint-8888',
      '--serviceendpoint', `127.0.0.1:${backend.port}`, '--frontendport', '8888', '--insecuretls=true'])
    try {
      await server.waitFor(/fingerprint: ([0-9A-F:]{95})/)
      await tunnel.waitFor(/registered .* frontend localhost:8888/)
      expect((await exchange(8888, Buffer.from('through the seed lines'))).toString()).to.equal('through the seed lines')
      expect(server.stderr + tunnel.stderr).not.to.contain('0000')
    } finally {
      expect(await tunnel.stop()).to.equal(0)
      expect(await server.stop()).to.equal(0)
    }
  })

  it('reads its configuration from the seed environment variables', async function () {
    const apiPort = await freePort()
    const frontPort = await freePort()
    const dyn = String(await freePort())
    const server = runCli(['server', '--host', '127.0.0.1', '--dynport', dyn, '--dynportcount', '1'], { TOKEN: 'env-secret', PORT: String(apiPort), AUTO_CERT_SUBJECT_NAME: 'localhost', LOGLEVEL: 'debug' })
    const tunnel = runCli(['tunnel'], {
      LB_API_ENDPOINT: `localhost:${apiPort}`, TOKEN: 'env-secret', SERVICE_NAME: 'my service', PORT: String(frontPort),
      SERVICE_ENDPOINT: `127.0.0.1:${backend.port}`, INSECURE_TLS: 'true'
    })
    try {
      await server.waitFor(/listening/)
      await tunnel.waitFor(/registered/)
      expect((await exchange(frontPort, Buffer.from('env'))).toString()).to.equal('env')
      await server.waitFor(/DEBUG/)
      expect(server.stderr + tunnel.stderr).not.to.contain('env-secret')
    } finally {
      await tunnel.stop()
      await server.stop()
    }
  })

  for (const [args, option] of [
    [['server'], '--token'],
    [['-t', 'x', 'tunnel', '-b', '127.0.0.1:1'], '--apiendpoint'],
    [['-t', 'x', 'tunnel', '-e', 'localhost:9999'], '--serviceendpoint'],
    [['-t', 'x', 'tunnel', '-e', 'nocolon', '-b', '127.0.0.1:1'], '--apiendpoint'],
    [['-t', 'x', 'server', '-p', '70000'], '--port'],
    [['-t', 'x', 'server', '--lbpolicy', 'random'], 'lbpolicy'],
    [['-t', 'x', 'tunnel', '-e', 'h:1', '-b', 'h:2', '--frontendport', 'abc'], '--frontendport'],
    [['bogus'], 'bogus']
  ] as const) {
    it(`rejects bad usage naming ${option}: ${args.join(' ')}`, async function () {
      const { code, stderr } = await runCliToEnd([...args])
      expect(code).to.equal(2)
      expect(stderr).to.contain(option)
      expect(stderr).not.to.match(/\n\s+at /)
    })
  }

  it('prints help for each command', async function () {
    const { code, stdout } = await runCliToEnd(['tunnel', '--help'])
    expect(code).to.equal(0)
    for (const flag of ['--apiendpoint', '--frontendport', '--serviceendpoint', '--servicename', '--instancename', '--insecuretls', '$LB_API_ENDPOINT']) {
      expect(stdout).to.contain(flag)
    }
  })

  it('says "authorization failed" for a wrong token and keeps running with backoff', async function () {
    const apiPort = await freePort()
    const server = runCli(['-t', 'right', 'server', '-p', String(apiPort), '--host', '127.0.0.1', '--dynport', String(await freePort()), '--dynportcount', '1'])
    await server.waitFor(/listening/)
    const tunnel = runCli(['-t', 'wrong', 'tunnel', '-e', `localhost:${apiPort}`, '-b', `127.0.0.1:${backend.port}`, '-p', '0', '-i'])
    try {
      await tunnel.waitFor(/authorization failed/)
      await new Promise(resolve => setTimeout(resolve, 2000))
      expect(tunnel.child.exitCode).to.equal(null)
      expect(tunnel.stderr.match(/authorization failed/g)).to.have.length(1)
    } finally {
      await tunnel.stop()
      await server.stop()
    }
  })

  it('stdinproxy pipes stdin to a TCP endpoint and the answer to stdout', async function () {
    const { code, stdout } = await runCliToEnd(['stdinproxy', '-e', `127.0.0.1:${backend.port}`], {}, 'ping through stdin\n')
    expect(code).to.equal(0)
    expect(stdout).to.equal('ping through stdin\n')
  })

  it('stdinproxy reports an unreachable endpoint', async function () {
    const { code, stderr } = await runCliToEnd(['stdinproxy', '-e', `127.0.0.1:${await freePort()}`], {}, 'x')
    expect(code).to.equal(1)
    expect(stderr).to.contain('ECONNREFUSED')
  })

  it('demo prints what to curl and serves it', async function () {
    const apiPort = await freePort()
    const frontPort = await freePort()
    const demo = runCli(['demo', '-p', String(apiPort), '--frontendport', String(frontPort)])
    try {
      const m = await demo.waitFor(/curl (http:\/\/localhost:(\d+)\/)/)
      expect(Number(m[2])).to.equal(frontPort)
      const body = await eventually(async () => await (await fetch(m[1])).text())
      expect(body).to.contain('hello from the reverselb demo backend')
    } finally {
      expect(await demo.stop()).to.equal(0)
    }
  })
})
