import { expect } from 'chai'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { connect } from 'node:net'
import { TunnelClient, TunnelServer as Server } from '../../index.js'
import { FdBudget, openFilesLimit } from '../../server/conn-guard.js'
import { CLI, cliEnv } from '../fixtures/cli.js'
import { echoServer, freePort, freePortRange } from '../fixtures/net.js'
import { start } from '../fixtures/process.js'
import { TOKEN, startServer, testLogger, tunnelData } from '../fixtures/tunnel.js'
import { exchangeWithTimeout, socketClosedWithin } from './helpers.js'
import type { TunnelServer } from '../../index.js'
import type { TcpServer } from '../fixtures/net.js'
import type { ChildProc } from '../fixtures/process.js'
import type { Socket } from 'node:net'

const PARTIAL = 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n'

/** A TCP connection from `localAddress` that sent the start of a request and nothing more. */
async function halfRequest (port: number, localAddress: string): Promise<Socket> {
  const s = connect({ port, host: '127.0.0.1', localAddress })
  s.on('error', () => {})
  await once(s, 'connect')
  s.write(PARTIAL)
  return s
}

/** Status of GET /healthz over a fresh connection, or an error after `timeoutMs`. */
async function healthz (port: number, tls: boolean, timeoutMs = 3000): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = (tls ? httpsRequest : httpRequest)({ host: '127.0.0.1', port, path: '/healthz', agent: false, rejectUnauthorized: false, timeout: timeoutMs }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('timeout', () => req.destroy(new Error(`/healthz on port ${port} did not answer within ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end()
  })
}

/**
 * The attack of the issue, bounded: keeps up to `outstanding` half-sent requests open on `port`
 * from 127.0.0.2..127.0.0.(1+addresses), opening a new one whenever one closes, until stopped or
 * `total` were opened. Records how long each lived before the server closed it.
 */
function flood (port: number, opts: { outstanding: number, total: number, addresses: number }): { stop: () => Promise<void>, lifetimes: number[], opened: () => number } {
  const lifetimes: number[] = []
  const open = new Set<Socket>()
  let opened = 0
  let stopped = false
  let next = 0
  const one = async (): Promise<void> => {
    while (!stopped && opened < opts.total) {
      opened++
      const from = `127.0.0.${2 + (next++ % opts.addresses)}`
      let s: Socket
      try { s = await halfRequest(port, from) } catch { continue }
      const at = Date.now()
      open.add(s)
      await new Promise(resolve => s.once('close', resolve))
      open.delete(s)
      const lived = Date.now() - at
      if (!stopped) lifetimes.push(lived)
      // Refused at once: retry a little later, as an attacker would, rather than spin.
      if (lived < 100) await new Promise(resolve => setTimeout(resolve, 250))
    }
  }
  const workers = Array.from({ length: opts.outstanding }, async () => await one())
  return {
    lifetimes,
    opened: () => opened,
    stop: async () => {
      stopped = true
      for (const s of open) s.destroy()
      await Promise.all(workers)
    }
  }
}

describe('half-sent requests cannot exhaust file descriptors (issue 19, item 5)', function () {
  this.timeout(60_000)
  let backend: TcpServer
  before(async function () { backend = await echoServer() })
  after(async function () { await backend.close() })

  it('reads the open-files limit; the budget refuses only near it, and never without a limit', function () {
    expect(openFilesLimit('Limit  Soft Limit  Hard Limit  Units\nMax open files            1024                 4096                 files\n')).to.equal(1024)
    expect(openFilesLimit('Max open files            unlimited            unlimited            files\n')).to.equal(undefined)
    const budget = new FdBudget(1024)
    expect(budget.reserve).to.equal(256)
    budget.open = 767
    expect(budget.refusal(100)).to.equal(undefined)
    budget.open = 768
    expect(budget.refusal(100)).to.match(/file descriptors are running low \(768 API and tunnel connections open, limit 1024\)/)
    expect(budget.refusal(0)).to.equal(undefined)
    budget.open = 896
    expect(budget.refusal(0)).to.be.a('string')
    const unknown = new FdBudget(Infinity)
    unknown.open = 1e9
    expect(unknown.refusal(1e6)).to.equal(undefined)
  })

  it('refuses limits that would turn a protection off', function () {
    for (const limits of [{ maxConnectionsPerAddress: 0 }, { maxConnectionsPerAddress: Number.NaN }, { portGraceMs: -1 }]) {
      expect(() => new Server({ token: TOKEN, limits })).to.throw(/limits\.\w+ must be/)
    }
  })

  describe('connections per source address', function () {
    let server: TunnelServer
    let httpPort: number
    const TIMEOUT_MS = 1000
    before(async function () {
      httpPort = await freePort()
      server = await startServer({ httpPort, handshakeTimeoutMs: TIMEOUT_MS, limits: { maxConnectionsPerAddress: 10, maxSessionsPerAddress: 2 } })
    })
    after(async function () { await server.close() })

    it('HTTP API port: an address gets 10 connections, the rest are closed at once; partial requests are reaped at the timeout', async function () {
      const sockets = await Promise.all(Array.from({ length: 15 }, async () => await halfRequest(httpPort, '127.0.0.5')))
      try {
        const times = await Promise.all(sockets.map(async s => await socketClosedWithin(s, TIMEOUT_MS * 6).catch(() => Infinity)))
        const refused = times.filter(t => t < TIMEOUT_MS / 2)
        const reaped = times.filter(t => t >= TIMEOUT_MS / 2)
        expect(refused, 'closed at once').to.have.length(5)
        expect(reaped, 'reaped at the request timeout').to.have.length(10)
        for (const t of reaped) expect(t).to.be.below(TIMEOUT_MS * 5)
      } finally {
        for (const s of sockets) s.destroy()
      }
    })

    it('HTTP API port: other addresses are not affected while one holds its maximum', async function () {
      const sockets = await Promise.all(Array.from({ length: 10 }, async () => await halfRequest(httpPort, '127.0.0.7')))
      try {
        expect(await healthz(httpPort, false)).to.equal(200)
      } finally {
        for (const s of sockets) s.destroy()
      }
    })

    it('tunnel port: an address gets its sessions plus 10 connections in progress, the rest are closed at once', async function () {
      const sockets = await Promise.all(Array.from({ length: 15 }, async () => {
        const s = connect({ port: server.port, host: '127.0.0.1', localAddress: '127.0.0.6' })
        s.on('error', () => {})
        await once(s, 'connect')
        return s
      }))
      try {
        const times = await Promise.all(sockets.map(async s => await socketClosedWithin(s, TIMEOUT_MS * 6).catch(() => Infinity)))
        expect(times.filter(t => t < TIMEOUT_MS / 2), 'closed at once').to.have.length(3)
        // The others are TCP connections without TLS: the TLS handshake timeout closes them.
        for (const t of times.filter(t => t >= TIMEOUT_MS / 2)) expect(t).to.be.below(TIMEOUT_MS * 5)
      } finally {
        for (const s of sockets) s.destroy()
      }
    })
  })

  describe('a flood at the fd limit (server in a child process limited to 1024 open files)', function () {
    const LIMIT = 1024
    const TIMEOUT_S = 2
    let child: ChildProc | undefined
    let apiPort: number
    let httpPort: number
    let fingerprint: string

    before(async function () {
      if (!existsSync('/proc/self/limits')) this.skip()
      apiPort = await freePort()
      httpPort = await freePort()
      const dyn = await freePortRange(2)
      const args = ['-t', TOKEN, 'server', '-p', String(apiPort), '--host', '127.0.0.1', '--frontendhost', '127.0.0.1',
        '--httpport', String(httpPort), '--dynport', String(dyn), '--dynportcount', '2', '--handshaketimeout', String(TIMEOUT_S)]
      // Node raises its soft limit to the hard one at start, so both are lowered (no privilege needed).
      child = start('server (ulimit -n)', 'sh', ['-c', `ulimit -n ${LIMIT} && exec "$0" "$@"`, process.execPath, CLI, ...args], { env: cliEnv() })
      await child.waitFor(/HTTP API and dashboard listening/)
      fingerprint = (await child.waitFor(/fingerprint: ([0-9A-F:]+)/))[1]
      const limits = readFileSync(`/proc/${child.pid}/limits`, 'utf8')
      expect(limits).to.match(new RegExp(`^Max open files\\s+${LIMIT}\\s`, 'm'))
    })
    after(async function () {
      await child?.stop('SIGKILL')
    })

    it('/healthz answers, a new tunnel registers and relays, and partial requests are reaped at the header timeout', async function () {
      // More half-sent requests than the server has file descriptors, from 60 addresses (under the per-address cap).
      const attack = flood(httpPort, { outstanding: 1200, total: 12_000, addresses: 60 })
      const reapedCount = (): number => attack.lifetimes.filter(t => t >= TIMEOUT_S * 1000 - 500).length
      let client: TunnelClient | undefined
      try {
        // Let the flood fill the server up.
        const filled = Date.now() + 10_000
        while (attack.opened() < 1500 && Date.now() < filled) await new Promise(resolve => setTimeout(resolve, 20))
        expect(child?.running, `server died:\n${child?.stderr.slice(-2000)}`).to.equal(true)
        expect(await healthz(httpPort, false)).to.equal(200)
        expect(await healthz(apiPort, true)).to.equal(200)
        client = new TunnelClient(`127.0.0.1:${apiPort}`, tunnelData(backend.port, { serviceName: 'during-flood' }), { fingerprint, logger: testLogger, proxy: 'none', connectTimeoutMs: 5000 })
        const { frontendPort } = await client.ready()
        expect((await exchangeWithTimeout(frontendPort, Buffer.from('through the flood'), 5000)).toString()).to.equal('through the flood')
        expect(await healthz(httpPort, false)).to.equal(200)
        // Keep flooding until the server has reaped plenty of admitted half-sent requests (bounded).
        const reaping = Date.now() + TIMEOUT_S * 1000 + 6000
        while (reapedCount() < 100 && Date.now() < reaping) await new Promise(resolve => setTimeout(resolve, 50))
      } finally {
        await client?.close()
        await attack.stop()
      }
      expect(child?.running, `server died:\n${child?.stderr.slice(-2000)}`).to.equal(true)
      // Admitted ones lived about the header timeout; none lived much longer.
      expect(reapedCount(), 'half-sent requests reaped at the header timeout').to.be.at.least(100)
      // Reaped near the timeout, not at Node's default 30 s sweep; slack for a busy 2-core machine.
      expect(Math.max(...attack.lifetimes)).to.be.below(TIMEOUT_S * 1000 * 5)
      expect(child?.stderr).to.match(/HTTP API port: refusing new connections: file descriptors are running low/)
      expect(child?.stderr).not.to.contain(TOKEN)
    })
  })
})
