import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { TunnelClient } from '../../index.js'
import { proxyFor } from '../../client/proxy.js'
import { connectLines, requireTools, startTinyproxy } from '../fixtures/proxies.js'
import { freePort } from '../fixtures/net.js'
import { TOKEN, startServer, testLogger, tunnelData } from '../fixtures/tunnel.js'
import { cleanEnv, hashingBackend, runCli, setEnv, transferBothWays, withEnv } from './helpers.js'
import type { TunnelServer } from '../../index.js'
import type { ProxyProcess } from '../fixtures/proxies.js'
import type { HashingBackend } from './helpers.js'

const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url))
const target = { host: 'tunnel.example.com', port: 443 }
/** The proxy proxyFor() picks for `endpoint` under exactly these proxy variables. */
function chosen (vars: Record<string, string>, setting?: string, endpoint = target): string | undefined {
  const restore = setEnv(vars)
  try { return proxyFor(endpoint, setting)?.href } finally { restore() }
}

describe('proxy: choosing the proxy like curl', function () {
  it('uses HTTPS_PROXY, preferring https_proxy, then ALL_PROXY, then HTTP_PROXY', function () {
    expect(chosen({ HTTPS_PROXY: 'http://a:1' })).to.equal('http://a:1/')
    expect(chosen({ https_proxy: 'http://lower:1', HTTPS_PROXY: 'http://upper:1' })).to.equal('http://lower:1/')
    expect(chosen({ ALL_PROXY: 'http://all:1', HTTP_PROXY: 'http://plain:1' })).to.equal('http://all:1/')
    expect(chosen({ HTTPS_PROXY: 'http://tls:1', ALL_PROXY: 'http://all:1' })).to.equal('http://tls:1/')
    expect(chosen({ HTTP_PROXY: 'http://plain:1' })).to.equal('http://plain:1/')
    expect(chosen({})).to.equal(undefined)
  })

  it('reads a proxy without a scheme as http://, as curl does', function () {
    expect(chosen({ HTTPS_PROXY: 'proxy.corp:3128' })).to.equal('http://proxy.corp:3128/')
    expect(chosen({ HTTPS_PROXY: 'https://proxy.corp:3129' })).to.equal('https://proxy.corp:3129/')
  })

  it('honours NO_PROXY: exact hosts, domains with their subdomains, host:port, CIDR, and *', function () {
    const p = { HTTPS_PROXY: 'http://p:1' }
    expect(chosen({ ...p, NO_PROXY: 'tunnel.example.com' })).to.equal(undefined)
    expect(chosen({ ...p, NO_PROXY: '.example.com' })).to.equal(undefined)
    expect(chosen({ ...p, no_proxy: 'other.org, example.com' })).to.equal(undefined)
    expect(chosen({ ...p, NO_PROXY: 'tunnel.example.com:8443' })).to.equal('http://p:1/')
    expect(chosen({ ...p, NO_PROXY: 'tunnel.example.com:443' })).to.equal(undefined)
    expect(chosen({ ...p, NO_PROXY: '*' })).to.equal(undefined)
    expect(chosen({ ...p, NO_PROXY: 'example.org' })).to.equal('http://p:1/')
    expect(chosen({ ...p, NO_PROXY: '127.0.0.1' }, undefined, { host: '127.0.0.1', port: 9999 })).to.equal(undefined)
    expect(chosen({ ...p, NO_PROXY: '10.0.0.0/8' }, undefined, { host: '10.1.2.3', port: 443 })).to.equal(undefined)
    expect(chosen({ ...p, NO_PROXY: '10.0.0.0/8' }, undefined, { host: '11.1.2.3', port: 443 })).to.equal('http://p:1/')
  })

  it('an explicit setting (--proxy) wins over the environment; "none" means direct', function () {
    const env = { HTTPS_PROXY: 'http://env:1', NO_PROXY: '*' }
    expect(chosen(env, 'http://flag:2')).to.equal('http://flag:2/')
    expect(chosen(env, 'flag:2')).to.equal('http://flag:2/')
    expect(chosen({ HTTPS_PROXY: 'http://env:1' }, 'none')).to.equal(undefined)
  })

  it('refuses proxies it cannot speak to, without echoing credentials', function () {
    expect(() => chosen({ ALL_PROXY: 'socks5://u:pw@p:1080' })).to.throw(/socks5.*not supported/)
    const err = ((): Error | undefined => { try { chosen({}, 'http://u:pw@[bad') } catch (e) { return e as Error } })()
    expect(err?.message).to.match(/not a valid proxy URL/)
    expect(err?.message).not.to.include('pw')
  })

  describe('end to end', function () {
    let server: TunnelServer
    let backend: HashingBackend
    let proxy: ProxyProcess
    before(async function () {
      requireTools(this, ['tinyproxy'])
      server = await startServer()
      backend = await hashingBackend()
      proxy = await startTinyproxy()
    })
    after(async function () {
      await proxy?.close()
      await server?.close()
      await backend?.close()
    })
    const through = (): number => connectLines(proxy.accessLog(), `127.0.0.1:${server.port}`).length

    it('the library follows HTTPS_PROXY, and NO_PROXY bypasses it', async function () {
      const run = async (): Promise<void> => {
        const c = new TunnelClient(`127.0.0.1:${server.port}`, tunnelData(backend.port), { fingerprint: server.fingerprint, logger: testLogger })
        try {
          const { frontendPort } = await c.ready()
          await transferBothWays(frontendPort, backend, 256 * 1024)
        } finally {
          await c.close()
        }
      }
      const before = through()
      await withEnv({ HTTPS_PROXY: proxy.url }, run)
      expect(through()).to.equal(before + 1)
      await withEnv({ HTTPS_PROXY: proxy.url, NO_PROXY: '127.0.0.1' }, run)
      expect(through(), 'NO_PROXY must bypass the proxy').to.equal(before + 1)
    })

    const cli = (args: string[], env: Record<string, string>): ReturnType<typeof runCli> =>
      runCli(process.execPath, [CLI, '-l', 'debug', 'tunnel', '-e', `127.0.0.1:${server.port}`, '-b', `127.0.0.1:${backend.port}`,
        '-p', '0', '--fingerprint', server.fingerprint, ...args], cleanEnv({ TOKEN, ...env }))

    it('the CLI: --proxy wins over a broken HTTPS_PROXY', async function () {
      const before = through()
      const dead = `http://127.0.0.1:${await freePort()}`
      const p = cli(['--proxy', proxy.url], { HTTPS_PROXY: dead })
      try {
        const [line] = await p.waitFor(/registered with [^\n]*:(\d+)\n/)
        await transferBothWays(Number(/:(\d+)\n$/.exec(line)?.[1]), backend, 256 * 1024)
        expect(p.output).to.include(`through proxy ${proxy.url}`)
        expect(through()).to.equal(before + 1)
      } finally {
        await p.stop()
      }
    })

    it('the CLI: --proxy none connects directly despite HTTPS_PROXY', async function () {
      const before = through()
      const p = cli(['--proxy', 'none'], { HTTPS_PROXY: proxy.url })
      try {
        await p.waitFor(/registered with /)
        expect(through()).to.equal(before)
        expect(p.output).not.to.include('through proxy')
      } finally {
        await p.stop()
      }
    })

    it('the CLI: follows ALL_PROXY from the environment when no flag is given', async function () {
      const before = through()
      const p = cli([], { ALL_PROXY: proxy.url })
      try {
        await p.waitFor(/registered with /)
        expect(through()).to.equal(before + 1)
      } finally {
        await p.stop()
      }
    })

    it('the CLI: a bad proxy URL is a usage error at start', async function () {
      const p = cli(['--proxy', 'socks5://127.0.0.1:1080'], {})
      await p.waitFor(/reverselb: --proxy: proxy scheme "socks5:" is not supported/)
      expect((await p.closed).code).to.equal(2)
    })
  })
})
