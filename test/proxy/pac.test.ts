import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { TunnelClient } from '../../index.js'
import { routeConnector } from '../../client/proxy-route.js'
import { captureLogger, connectLines, requireTools, startTinyproxy } from '../fixtures/proxies.js'
import { freePort, tcpServer } from '../fixtures/net.js'
import { pacServer } from '../fixtures/pac-server.js'
import { TOKEN, startServer, tunnelData } from '../fixtures/tunnel.js'
import { cleanEnv, firstError, hashingBackend, runCli, transferBothWays } from './helpers.js'
import type { TunnelServer } from '../../index.js'
import type { ProxyRouteOptions } from '../../client/proxy-route.js'
import type { ProxyProcess } from '../fixtures/proxies.js'
import type { PacServer } from '../fixtures/pac-server.js'
import type { HashingBackend } from './helpers.js'

const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url))

/** A PAC whose FindProxyForURL returns `answer` for every URL. */
const pacReturning = (answer: string): string => `function FindProxyForURL(url, host) { return ${JSON.stringify(answer)}; }`

describe('proxy: PAC files and proxy lists, with failover', function () {
  let server: TunnelServer
  let backend: HashingBackend
  let live: ProxyProcess
  let dead: number
  let pac: PacServer | undefined
  const clients: TunnelClient[] = []

  before(async function () {
    requireTools(this, ['tinyproxy'])
    server = await startServer()
    backend = await hashingBackend()
    live = await startTinyproxy()
    dead = await freePort()
  })
  afterEach(async function () {
    await Promise.all(clients.splice(0).map(async c => await c.close()))
    await pac?.close()
    pac = undefined
  })
  after(async function () {
    await live?.close()
    await server?.close()
    await backend?.close()
  })

  const target = (): string => `127.0.0.1:${server.port}`
  const client = (route: ProxyRouteOptions, logger = captureLogger()): { c: TunnelClient, lines: string[] } => {
    const c = new TunnelClient(target(), tunnelData(backend.port), {
      fingerprint: server.fingerprint, maxBackoffMs: 1000, connectTimeoutMs: 3000, logger: logger.logger,
      connect: routeConnector({ ...route, log: logger.logger })
    })
    clients.push(c)
    return { c, lines: logger.lines }
  }
  const throughLive = (): string[] => connectLines(live.accessLog(), target())

  it('a PAC naming a dead proxy first, then a live one: fails over and says which proxy carried the tunnel', async function () {
    pac = await pacServer(pacReturning(`PROXY 127.0.0.1:${dead}; PROXY 127.0.0.1:${live.port}; DIRECT`))
    const before = throughLive().length
    const { c, lines } = client({ pac: pac.url })
    const { frontendPort } = await c.ready()
    await transferBothWays(frontendPort, backend)
    expect(throughLive().length).to.be.above(before)
    const log = lines.join('')
    expect(log).to.include(`proxy http://127.0.0.1:${dead} failed for ${target()} (PAC ${pac.url}): proxy 127.0.0.1:${dead} is unreachable`)
    expect(log).to.include(`connection to ${target()} carried by proxy http://127.0.0.1:${live.port} (PAC ${pac.url})`)
  })

  it('a PAC answering DIRECT for the server\'s host connects directly, and says so', async function () {
    pac = await pacServer(`function FindProxyForURL(url, host) {
      if (host === "127.0.0.1" && shExpMatch(url, "https://*")) return "DIRECT";
      return "PROXY 127.0.0.1:${live.port}";
    }`)
    const before = throughLive().length
    const { c, lines } = client({ pac: pac.url })
    const { frontendPort } = await c.ready()
    await transferBothWays(frontendPort, backend)
    expect(throughLive().length).to.equal(before)
    expect(lines.join('')).to.include(`connection to ${target()} carried by DIRECT (PAC ${pac.url})`)
  })

  it('a DIRECT tunnel outlives the connect timeout (the timer only guards the dial)', async function () {
    pac = await pacServer(pacReturning('DIRECT'))
    const logger = captureLogger()
    const c = new TunnelClient(target(), tunnelData(backend.port), {
      fingerprint: server.fingerprint, connectTimeoutMs: 300, logger: logger.logger, connect: routeConnector({ pac: pac.url })
    })
    clients.push(c)
    await c.ready()
    let lost = false
    c.once('disconnected', () => { lost = true })
    // What is checked is that nothing happens when the 300 ms are over: there is no event to await.
    await new Promise(resolve => setTimeout(resolve, 700))
    expect(lost, 'session lost after the connect timeout').to.equal(false)
    await transferBothWays((await c.ready()).frontendPort, backend)
  })

  it('a PAC that throws: one line naming the PAC and the error; fetched again on each retry, so a fixed PAC takes effect', async function () {
    pac = await pacServer('function FindProxyForURL(url, host) { throw new Error("proxy.pac is broken"); }')
    const { c } = client({ pac: pac.url })
    const err = await firstError(c)
    expect(err.message).to.equal(`PAC file ${pac.url} failed for https://${target()}/: proxy.pac is broken`)
    await firstError(c)
    expect(pac.fetches()).to.be.at.least(2)
    pac.serve(pacReturning(`PROXY 127.0.0.1:${live.port}`))
    const { frontendPort } = await c.ready()
    await transferBothWays(frontendPort, backend)
  })

  it('a PAC that never returns is stopped, and a PAC server that is down is named', async function () {
    pac = await pacServer('function FindProxyForURL(url, host) { for (;;) {} }')
    const looping = await firstError(client({ pac: pac.url }).c)
    expect(looping.message).to.match(/^PAC file .* failed for .*: did not finish within \d+ ms$/)
    const gone = `http://127.0.0.1:${dead}/proxy.pac`
    const down = await firstError(client({ pac: gone }).c)
    expect(down.message).to.match(new RegExp(`^PAC file ${gone.replace(/[.]/g, '\\.')} is unreachable: .*ECONNREFUSED`))
  })

  it('--proxy a,b: a proxy that times out, then a live one', async function () {
    const silent = await tcpServer(() => {})
    try {
      const { c, lines } = client({ proxy: `http://127.0.0.1:${silent.port},http://127.0.0.1:${live.port}` })
      const { frontendPort } = await c.ready()
      await transferBothWays(frontendPort, backend)
      expect(lines.join('')).to.include(`proxy 127.0.0.1:${silent.port} did not open a tunnel to ${target()} within 3000 ms; trying the next route`)
      expect(lines.join('')).to.include(`carried by proxy http://127.0.0.1:${live.port}`)
    } finally {
      await silent.close()
    }
  })

  it('all proxies down: one line listing each, and retries', async function () {
    const other = await freePort()
    const { c } = client({ proxy: `http://127.0.0.1:${dead},http://127.0.0.1:${other}` })
    const err = await firstError(c)
    expect(err.message).to.equal(`all 2 routes to ${target()} failed: proxy 127.0.0.1:${dead} is unreachable: connect ECONNREFUSED 127.0.0.1:${dead}; ` +
      `proxy 127.0.0.1:${other} is unreachable: connect ECONNREFUSED 127.0.0.1:${other}`)
    await firstError(c)
  })

  it('the CLI: a PAC file that is not there is a usage error at start', async function () {
    const cli = runCli(process.execPath, [CLI, 'tunnel', '-e', target(), '-b', `127.0.0.1:${backend.port}`, '--proxy-pac', '/nonexistent/proxy.pac'], cleanEnv({ TOKEN }))
    expect(await cli.closed).to.equal(2)
    expect(cli.output()).to.include('--proxy-pac: cannot read /nonexistent/proxy.pac (ENOENT)')
  })

  it('the CLI: --proxy-pac FILE and $PROXY_PAC', async function () {
    const dir = mkdtempSync(join(tmpdir(), 'reverselb-pac-'))
    const file = join(dir, 'proxy.pac')
    writeFileSync(file, pacReturning(`PROXY 127.0.0.1:${dead}; PROXY 127.0.0.1:${live.port}`))
    const args = [CLI, 'tunnel', '-e', target(), '-b', `127.0.0.1:${backend.port}`, '-p', '0', '--fingerprint', server.fingerprint]
    try {
      for (const [extra, env] of [[['--proxy-pac', file], {}], [[], { PROXY_PAC: file }]] as Array<[string[], Record<string, string>]>) {
        const cli = runCli(process.execPath, [...args, ...extra], cleanEnv({ TOKEN, ...env }))
        try {
          const line = await cli.waitFor(/frontend [\d.]+:\d+/)
          await transferBothWays(Number(line.split(':').at(-1)), backend)
          expect(cli.output()).to.include(`connection to ${target()} carried by proxy http://127.0.0.1:${live.port} (PAC ${file})`)
        } finally {
          await cli.stop()
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
