import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { createNetns } from '../fixtures/netns.js'
import { requireTools, startTinyproxy } from '../fixtures/proxies.js'
import { exchange, freePort, randomPayload, sha256 } from '../fixtures/net.js'
import { TOKEN, startServer } from '../fixtures/tunnel.js'
import { cleanEnv, runCli } from './helpers.js'
import type { TunnelServer } from '../../index.js'
import type { Netns } from '../fixtures/netns.js'
import type { ProxyProcess } from '../fixtures/proxies.js'
import type { CliProcess } from './helpers.js'

const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url))
// Inside the namespace: an echo backend, and a one-shot TCP probe (exit 0 = connected).
const ECHO = "require('net').createServer({allowHalfOpen:true},s=>s.pipe(s)).listen(+process.argv[1],'127.0.0.1',()=>console.log('echo ready'))"
const PROBE = "const s=require('net').connect(+process.argv[2],process.argv[1]);s.on('connect',()=>{console.log('connected');process.exit(0)});" +
  "s.on('error',e=>{console.log(e.code);process.exit(1)});setTimeout(()=>{console.log('timeout');process.exit(2)},3000)"

describe('proxy: a client host whose firewall lets traffic out only through the proxy', function () {
  this.timeout(30_000)
  let ns: Netns | undefined
  let server: TunnelServer
  let proxy: ProxyProcess
  const children: CliProcess[] = []
  let echoPort: number

  before(async function () {
    requireTools(this, ['ip', 'iptables', 'tinyproxy'], { root: true })
    ns = createNetns()
    server = await startServer({ host: ns.hostIp })
    proxy = await startTinyproxy({ host: ns.hostIp, allow: [`${ns.nsIp}/32`] })
    echoPort = await freePort()
    const [cmd, ...args] = ns.argv(process.execPath, '-e', ECHO, String(echoPort))
    const echo = runCli(cmd, args, cleanEnv())
    children.push(echo)
    await echo.waitFor(/echo ready/, 10_000)
    // Baseline: without the firewall the server is reachable, so the firewall is what blocks later.
    const before = await probe()
    if (before !== 'connected') throw new Error(`server not reachable from the namespace before the firewall: ${before}`)
    ns.firewall([{ ip: ns.hostIp, port: proxy.port }])
  })
  after(async function () {
    await Promise.all(children.splice(0).map(async c => await c.stop()))
    await proxy?.close()
    await server?.close()
    // Also when a step above failed: the namespace must not outlive the test.
    ns?.destroy()
  })

  function inNs (env: Record<string, string>, ...args: string[]): CliProcess {
    const [cmd, ...rest] = (ns as Netns).argv(process.execPath, ...args)
    const p = runCli(cmd, rest, cleanEnv(env))
    children.push(p)
    return p
  }
  async function probe (): Promise<string> {
    const p = inNs({}, '-e', PROBE, (ns as Netns).hostIp, String(server.port))
    await p.closed
    return p.output.trim()
  }

  it('a direct TCP dial from the namespace to the server is refused', async function () {
    expect(await probe()).to.equal('ECONNREFUSED')
  })

  it('a direct dial fails with a message that points at the proxy settings', async function () {
    const n = ns as Netns
    const direct = inNs({ TOKEN }, CLI, 'tunnel', '-e', `${n.hostIp}:${server.port}`, '-b', `127.0.0.1:${echoPort}`, '-p', '0',
      '--fingerprint', server.fingerprint, '--proxy', 'none')
    try {
      await direct.waitFor(new RegExp(`cannot connect to ${n.hostIp.replace(/\./g, '\\.')}:${server.port}: connect ECONNREFUSED[^\\n]*set HTTPS_PROXY`), 10_000)
      expect(direct.output).not.to.match(/registered with/)
    } finally {
      await direct.stop()
    }
  })

  it('through the proxy (HTTPS_PROXY) the tunnel carries traffic end to end, byte-exactly', async function () {
    const n = ns as Netns
    const client = inNs({ TOKEN, HTTPS_PROXY: proxy.url }, CLI, 'tunnel', '-e', `${n.hostIp}:${server.port}`, '-b', `127.0.0.1:${echoPort}`,
      '-p', '0', '--fingerprint', server.fingerprint, '--keepalive', '5')
    const [line] = await client.waitFor(/registered with [^\n]*:(\d+)\n/, 15_000)
    const frontendPort = Number(/:(\d+)\n$/.exec(line)?.[1])
    // Frontend on the server host -> WSS through the proxy -> client in the namespace -> echo there.
    const payload = randomPayload(1024 * 1024)
    const echoed = await exchange(frontendPort, payload)
    expect(sha256(echoed)).to.equal(sha256(payload))
    // tinyproxy logged the namespace connecting and the CONNECT to the server.
    const log = proxy.accessLog()
    expect(log).to.include(`CONNECT ${n.hostIp}:${server.port}`)
    expect(log).to.include(n.nsIp)
  })
})
