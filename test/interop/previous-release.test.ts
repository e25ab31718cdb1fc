import { expect } from 'chai'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { MUXERS } from '../../protocol/index.js'
import { runCli } from '../fixtures/cli.js'
import { echoServer, eventually, exchange, freePort, freePortRange, randomPayload, sha256 } from '../fixtures/net.js'
import { captureLogger } from '../fixtures/proxies.js'
import { TunnelClient } from '../../index.js'
import { TOKEN, startServer, testLogger, tunnelData } from '../fixtures/tunnel.js'
import { runOk } from '../deploy/helpers.js'
import type { TcpServer } from '../fixtures/net.js'

/**
 * The npm tarball of the release before our own muxer (main at 420eafd, libp2p's yamux and
 * mplex inside): a client of this version must work with its server, and the other way round.
 */
const TARBALL = fileURLToPath(new URL('../../../test/interop/previous-release/reverselb-0.1.0-420eafd.tgz', import.meta.url))

describe('interop: the previous release (libp2p muxers) and this one', function () {
  this.timeout(240_000)
  let dir: string
  let oldCli: string
  let backend: TcpServer

  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'reverselb-previous-'))
    await runOk('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--omit=dev', '--prefix', dir, TARBALL], { timeoutMs: 200_000 })
    oldCli = join(dir, 'node_modules/reverselb/dist/cli/main.js')
    backend = await echoServer()
  })
  after(async function () {
    await backend?.close()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  it('a client asking for the end-to-end layer or the HTTP transport is told the previous release has neither', async function () {
    const port = await freePort()
    const dynPort = await freePortRange(1)
    const server = runCli(['-t', TOKEN, 'server', '-p', String(port), '--dynport', String(dynPort), '--dynportcount', '1'], {}, oldCli)
    try {
      const [, fingerprint] = await server.waitFor(/fingerprint: ([0-9A-F:]+)/)
      for (const [opts, message] of [
        [{ e2e: 'always' }, /older release without it; upgrade the server, or pass --e2e never/],
        [{ transport: 'http' }, /answered HTTP 426 .*to opening an HTTP-transport session.*this release or later/]
      ] as const) {
        const client = new TunnelClient(`127.0.0.1:${port}`, tunnelData(backend.port), { fingerprint, proxy: 'none', logger: testLogger, ...opts })
        try {
          const err = await client.ready().then(() => undefined, (e: Error) => e)
          expect(err?.message).to.match(message)
        } finally {
          await client.close()
        }
      }
    } finally {
      await server.stop()
    }
  })

  it('a client with several services registers only the first with a previous-release server, and says why', async function () {
    const port = await freePort()
    const dynPort = await freePortRange(2)
    const server = runCli(['-t', TOKEN, 'server', '-p', String(port), '--dynport', String(dynPort), '--dynportcount', '2'], {}, oldCli)
    try {
      const [, fingerprint] = await server.waitFor(/fingerprint: ([0-9A-F:]+)/)
      const { logger, lines } = captureLogger()
      const client = new TunnelClient(`127.0.0.1:${port}`, [tunnelData(backend.port, { serviceName: 'first' }), tunnelData(backend.port, { serviceName: 'second' })], { fingerprint, proxy: 'none', logger })
      try {
        const { frontendPort } = await client.ready()
        expect((await exchange(frontendPort, Buffer.from('old server'))).toString()).to.equal('old server')
        await eventually(() => { expect(lines.join('')).to.match(/takes one service per connection \(a previous release without "services"\): only first is registered there; not second/) })
        expect(client.services().find(s => s.name === 'second')?.frontendPorts).to.deep.equal({})
      } finally {
        await client.close()
      }
    } finally {
      await server.stop()
    }
  })

  for (const muxer of MUXERS) {
    it(`a client of this version through a server of the previous release (${muxer})`, async function () {
      const port = await freePort()
      const dynPort = await freePortRange(1)
      const server = runCli(['-t', TOKEN, 'server', '-p', String(port), '--dynport', String(dynPort), '--dynportcount', '1'], {}, oldCli)
      try {
        const [, fingerprint] = await server.waitFor(/fingerprint: ([0-9A-F:]+)/)
        const client = new TunnelClient(`127.0.0.1:${port}`, tunnelData(backend.port), { fingerprint, muxer, proxy: 'none', logger: testLogger })
        try {
          const { frontendPort } = await client.ready()
          const payload = randomPayload(3 * 1024 * 1024)
          expect(sha256(await exchange(frontendPort, payload))).to.equal(sha256(payload))
        } finally {
          await client.close()
        }
      } finally {
        await server.stop()
      }
    })

    it(`a client of the previous release through a server of this version (${muxer})`, async function () {
      const server = await startServer()
      const frontendPort = await freePort()
      const client = runCli(['-t', TOKEN, 'tunnel', '-e', `127.0.0.1:${server.port}`, '-s', `old-${muxer}`, '-p', String(frontendPort),
        '-b', `127.0.0.1:${backend.port}`, '--fingerprint', server.fingerprint, '--mux', muxer], {}, oldCli)
      try {
        await client.waitFor(/registered/)
        const payload = randomPayload(3 * 1024 * 1024)
        expect(sha256(await exchange(frontendPort, payload))).to.equal(sha256(payload))
      } finally {
        await client.stop()
        await server.close()
      }
    })
  }
})
