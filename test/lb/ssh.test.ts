import { expect } from 'chai'
import { eventually, freePort } from '../fixtures/net.js'
import { sshdMissing, startSshd } from '../fixtures/sshd.js'
import { startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import type { Sshd } from '../fixtures/sshd.js'

describe('ssh through a shared port with stdinproxy as ProxyCommand', function () {
  this.timeout(30_000)
  let sshd: Sshd | undefined

  before(async function () {
    const missing = sshdMissing()
    if (missing !== undefined) {
      console.log(`      skipped: ${missing}`)
      this.skip()
    }
    sshd = await startSshd()
  })

  after(async function () {
    await sshd?.close()
  })

  it('logs in to instance box1 by name', async function () {
    const box = sshd
    if (box === undefined) this.skip()
    const server = await startServer({ dynPortCount: 1 })
    const box1 = startClient(server, tunnelData(box.port, { serviceName: 'ssh:box1' }))
    const box2 = startClient(server, tunnelData(await freePort(), { serviceName: 'ssh:box2' }))
    const port = (await box1.ready()).frontendPort
    await box2.ready()
    try {
      const stdout = await eventually(async () => await box.exec(port, 'echo hello from $(hostname) via box1', 'box1'), 10_000, 500)
      expect(stdout).to.match(/^hello from .* via box1\n$/)
    } finally {
      await box1.close(); await box2.close(); await server.close()
    }
  })
})
