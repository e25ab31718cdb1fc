import { expect } from 'chai'
import { execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { CLI } from '../fixtures/cli.js'
import { eventually, freePort } from '../fixtures/net.js'
import { startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import type { ChildProcess } from 'node:child_process'

const run = promisify(execFile)

describe('ssh through a shared port with stdinproxy as ProxyCommand', function () {
  this.timeout(30_000)
  let dir: string
  let sshd: ChildProcess | undefined
  let sshdPort: number

  before(async function () {
    if (process.getuid?.() !== 0 || !existsSync('/usr/sbin/sshd') || !existsSync('/usr/bin/ssh')) {
      console.log('      skipped: needs root and OpenSSH (apt-get install openssh-server openssh-client)')
      this.skip()
    }
    dir = await mkdtemp(join(tmpdir(), 'reverselb-ssh-'))
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 })
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host')])
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'client')])
    await writeFile(join(dir, 'authorized_keys'), await readFile(join(dir, 'client.pub')))
    sshdPort = await freePort()
    await writeFile(join(dir, 'sshd_config'), [
      `Port ${sshdPort}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host')}`, `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`, 'StrictModes no', 'PermitRootLogin prohibit-password',
      'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'PrintMotd no'
    ].join('\n') + '\n')
    sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: 'ignore' })
  })

  after(async function () {
    sshd?.kill()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('logs in to instance box1 by name', async function () {
    const server = await startServer({ dynPortCount: 1 })
    const box1 = startClient(server, tunnelData(sshdPort, { serviceName: 'ssh:box1' }))
    const box2 = startClient(server, tunnelData(await freePort(), { serviceName: 'ssh:box2' }))
    const port = (await box1.ready()).frontendPort
    await box2.ready()
    try {
      const { stdout } = await eventually(async () => await run('ssh', [
        '-F', 'none', '-i', join(dir, 'client'), '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
        '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
        '-o', `ProxyCommand=${process.execPath} ${CLI} stdinproxy -e 127.0.0.1:${port} --instancename box1`,
        'root@box1', 'echo hello from $(hostname) via box1'
      ], { timeout: 15_000 }), 10_000, 500)
      expect(stdout).to.match(/^hello from .* via box1\n$/)
    } finally {
      await box1.close(); await box2.close(); await server.close()
    }
  })
})
