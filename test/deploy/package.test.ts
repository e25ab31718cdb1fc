import { expect } from 'chai'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { REPO, packTarball, run, runOk, tempDir } from './helpers.js'

interface PackageJson {
  name: string
  main: string
  types: string
  bin: Record<string, string>
  exports: Record<string, { types: string, import: string }>
  dependencies: Record<string, string>
  optionalDependencies?: Record<string, string>
}

/** A program using the library's public API the way an embedding application would. */
const CONSUMER = `import { TunnelClient, TunnelServer, createLogger, PROTOCOL_VERSION } from 'reverselb'
import type { TunnelData, TunnelServerOptions, ServerAddress } from 'reverselb'

const options: TunnelServerOptions = { port: 0, host: '127.0.0.1', token: 'secret', logger: createLogger('error') }
const server = new TunnelServer(options)
server.on('serviceUp', ({ service }) => { console.log(service) })
const td: TunnelData = {
  serviceName: 'web', token: 'secret', backendAcceptBacklog: 1,
  frontendData: { port: 0 }, targetPort: 80, targetAddresses: ['127.0.0.1']
}
export async function main (): Promise<void> {
  const address: ServerAddress = await server.listen()
  const client = new TunnelClient(\`127.0.0.1:\${address.port}\`, td, { fingerprint: address.fingerprint })
  await client.close()
  await server.close()
  const version: number = PROTOCOL_VERSION
  console.log(version)
}
`

describe('deploy: npm package', function () {
  let tgz: string
  let files: string[]
  let consumer: string

  before(async function () {
    this.timeout(120_000)
    tgz = await packTarball()
    files = (await runOk('tar', ['-tzf', tgz])).stdout.split('\n').filter(f => f !== '').map(f => f.replace(/^package\//, ''))
    // A clean folder, as a user's project: the tarball installed the way npm users do.
    consumer = tempDir('consumer')
    writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
    await runOk('npm', ['install', '--omit=dev', '--omit=optional', '--no-audit', '--no-fund', '--no-package-lock', tgz], {
      cwd: consumer, env: { ...process.env, npm_config_prefer_offline: 'true' }, timeoutMs: 120_000
    })
  })

  it('packs the compiled library, the CLI and the type declarations, and nothing else', function () {
    for (const f of ['package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js']) expect(files, f).to.include(f)
    // The dashboard's files, read at load from beside dist/ (server/dashboard-page.ts).
    for (const f of ['index.html', 'app.js', 'style.css']) expect(files, f).to.include(`server/dashboard/${f}`)
    expect(files.filter(f => f.startsWith('dist/test/') || f.startsWith('dist/bench/')), 'no tests or benchmarks').to.deep.equal([])
    expect(files.filter(f => f.endsWith('.ts') && !f.endsWith('.d.ts')), 'no TypeScript sources').to.deep.equal([])
    expect(files.filter(f => f.startsWith('node_modules/') || f === 'package-lock.json' || f.endsWith('.tgz'))).to.deep.equal([])
    // Every module the package's JavaScript imports has its declaration file next to it.
    for (const js of files.filter(f => f.startsWith('dist/') && f.endsWith('.js'))) {
      expect(files, `${js} has types`).to.include(js.replace(/\.js$/, '.d.ts'))
    }
  })

  it('package.json "bin", "main", "types" and "exports" point at files in the tarball', function () {
    const p = JSON.parse(readFileSync(join(consumer, 'node_modules/reverselb/package.json'), 'utf8')) as PackageJson
    const shipped = (rel: string): boolean => files.includes(rel.replace(/^\.\//, ''))
    expect(shipped(p.bin.reverselb), `bin ${p.bin.reverselb}`).to.equal(true)
    expect(shipped(p.main), `main ${p.main}`).to.equal(true)
    expect(shipped(p.types), `types ${p.types}`).to.equal(true)
    expect(shipped(p.exports['.'].types), 'exports types').to.equal(true)
    expect(shipped(p.exports['.'].import), 'exports import').to.equal(true)
    expect(readFileSync(join(consumer, 'node_modules/reverselb', p.bin.reverselb), 'utf8')).to.match(/^#!\/usr\/bin\/env node\n/)
  })

  it('installs from the tarball in a clean folder (no build step, no native addon) and runs `reverselb --help`', async function () {
    this.timeout(30_000)
    // npm linked the bin; the tarball needs neither a compile (dist/ is inside) nor bufferutil.
    expect(existsSync(join(consumer, 'node_modules/bufferutil')), 'optional native addon left out').to.equal(false)
    expect(existsSync(join(consumer, 'node_modules/typescript')), 'no devDependencies').to.equal(false)
    const bin = join(consumer, 'node_modules/.bin/reverselb')
    const env = { PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` }
    const help = await run(bin, ['--help'], { cwd: consumer, env, timeoutMs: 20_000 })
    expect(help.code, help.stderr).to.equal(0)
    expect(help.stdout).to.match(/reverselb server\b/).and.match(/reverselb tunnel\b/)
    // And the library loads as an ES module by its package name (which reads the dashboard's files).
    const imported = await run(process.execPath, ['--input-type=module', '-e', "const m = await import('reverselb'); console.log(typeof m.TunnelServer, typeof m.TunnelClient)"], { cwd: consumer, env, timeoutMs: 20_000 })
    expect(imported.stdout.trim(), imported.stderr).to.equal('function function')
  })

  it('a strict TypeScript consumer compiles against the published types (and a misuse does not)', async function () {
    this.timeout(60_000)
    const tsc = join(REPO, 'node_modules/.bin/tsc')
    writeFileSync(join(consumer, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2022',
        strict: true,
        noEmit: true,
        // The consumer's own @types/node; everything else must come with the package.
        types: ['node'],
        typeRoots: [join(REPO, 'node_modules/@types')]
      },
      files: ['consumer.ts']
    }))
    writeFileSync(join(consumer, 'consumer.ts'), CONSUMER)
    const ok = await run(tsc, ['-p', consumer], { cwd: consumer, timeoutMs: 50_000 })
    expect(ok.stdout + ok.stderr, 'type errors; if they are "Could not find a declaration file for module \'ws\'", @types/ws must be a dependency').to.equal('')
    expect(ok.code).to.equal(0)

    // The types are real, not `any`: a wrong option type is a compile error.
    writeFileSync(join(consumer, 'consumer.ts'), CONSUMER.replace("token: 'secret', logger", "token: 42, logger"))
    const bad = await run(tsc, ['-p', consumer], { cwd: consumer, timeoutMs: 50_000 })
    expect(bad.code).to.not.equal(0)
    expect(bad.stdout).to.match(/consumer\.ts.*error TS2322/)
  })
})
