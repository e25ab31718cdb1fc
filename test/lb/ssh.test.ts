import { expect } from 'chai'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI } from '../fixtures/cli.js'
import { eventually, freePort } from '../fixtures/net.js'
import { runOk, start } from '../fixtures/process.js'
import { startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import type { ChildProc } from '../fixtures/process.js'

describe('ssh through a shared port with stdinproxy as ProxyCommand', function () {
  this.timeout(30_000)
  let dir: string
  let sshd: ChildProc | undefined
  let sshdPort: number

  before(async function () {
    if (process.getuid?.() !== 0 || !existsSync('/usr/sbin/sshd') || !existsSync('/usr/bin/ssh')) {
      console.log('      skipped: needs root and OpenSSH (apt-get install openssh-server openssh-client)')
      this.skip()
    }
    dir = await mkdtemp(join(tmpdir(), 'reverselb-ssh-'))
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 })
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host')])
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'client')])
    await writeFile(join(dir, 'authorized_keys'), await readFile(join(dir, 'client.pub')))
    sshdPort = await freePort()
    await writeFile(join(dir, 'sshd_config'), [
      `Port ${sshdPort}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host')}`, `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`, 'StrictModes no', 'PermitRootLogin prohibit-password',
      'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'PrintMotd no'
    ].join('\n') + '\n')
    sshd = start('sshd', '/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')])
  })

  after(async function () {
    await sshd?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('logs in to instance box1 by name', async function () {
    const server = await startServer({ dynPortCount: 1 })
    const box1 = startClient(server, tunnelData(sshdPort, { serviceName: 'ssh:box1' }))
    const box2 = startClient(server, tunnelData(await freePort(), { serviceName: 'ssh:box2' }))
    const port = (await box1.ready()).frontendPort
    await box2.ready()
    try {
      const { stdout } = await eventually(async () => await runOk('ssh', [
        '-F', 'none', '-i', join(dir, 'client'), '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
        '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
        '-o', `ProxyCommand=${process.execPath} ${CLI} stdinproxy -e 127.0.0.1:${port} --instancename box1`,
        'root@box1', 'echo hello from $(hostname) via box1'
      ], { timeoutMs: 15_000 }), 10_000, 500)
      expect(stdout).to.match(/^hello from .* via box1\n$/)
    } finally {
      await box1.close(); await box2.close(); await server.close()
    }
  })
})
