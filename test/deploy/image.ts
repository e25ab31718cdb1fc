/**
 * The Dockerfile's final stage, replayed without a Docker engine: the build stage's output (the
 * unpacked `npm pack` tarball plus the lockfile) is placed where `COPY --from=build` puts it, files
 * COPY'd from the context are copied, and every `npm` RUN of the final stage is executed verbatim
 * in the WORKDIR. Paths of the image (/app/...) map into a temporary "rootfs" folder. The RUNs
 * that set up the OS (apk, adduser) cannot run here and are only recorded.
 */
import { cpSync, mkdirSync, readFileSync } from 'node:fs'
import { join, posix } from 'node:path'
import { REPO, packTarball, parseDockerfile, parseEnvInstruction, repoFile, runOk, tempDir } from './helpers.js'
import type { DockerStage, Dockerfile } from './helpers.js'

export interface ImageInstall {
  dockerfile: Dockerfile
  runtime: DockerStage
  /** Host folder standing for the image's / */
  rootfs: string
  /** The image's WORKDIR, as an image path, and its host folder. */
  workdir: string
  hostWorkdir: string
  /** ENV of the final stage (and of the base images' stages, none here). */
  env: Record<string, string>
  entrypoint: string[]
  cmd: string[]
  healthcheck: string[]
  /** RUN commands executed here, and those skipped (OS setup). */
  ran: string[]
  skipped: string[]
  /** Maps an absolute image path into the rootfs. */
  hostPath: (imagePath: string) => string
}

/** Drops BuildKit flags (--mount=..., --network=...) in front of a RUN command. */
export function runCommand (args: string): string {
  return args.replace(/^(\s*--[a-z-]+=\S+\s+)+/, '').trim()
}

/** Paths a .dockerignore lets into the build context ("last matching pattern wins"). */
export function dockerIgnored (ignoreText: string, path: string): boolean {
  let ignored = false
  for (const raw of ignoreText.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const negate = line.startsWith('!')
    const pattern = (negate ? line.slice(1) : line).replace(/\/$/, '')
    const matches = pattern === '*' || path === pattern || path.startsWith(pattern + '/')
    if (matches) ignored = !negate
  }
  return ignored
}

function jsonArray (args: string, what: string): string[] {
  const v: unknown = JSON.parse(args)
  if (!Array.isArray(v) || !v.every(s => typeof s === 'string')) throw new Error(`${what} must be a JSON (exec form) array: ${args}`)
  return v
}

let install: Promise<ImageInstall> | undefined

/** The final stage replayed once per test run (shared by the Docker and Raspberry Pi tests). */
export async function imageInstall (): Promise<ImageInstall> {
  install ??= replay()
  return await install
}

async function replay (): Promise<ImageInstall> {
  const dockerfile = parseDockerfile(repoFile('Dockerfile'))
  const runtime = dockerfile.stages[dockerfile.stages.length - 1]
  const build = dockerfile.stages.find(s => s.name === 'build')
  if (build === undefined) throw new Error('the Dockerfile has no stage named "build"')
  const buildRuns = build.instructions.filter(i => i.keyword === 'RUN').map(i => runCommand(i.args)).join('\n')
  // What the replay does for the build stage must be what the build stage does.
  for (const step of ['npx tsc -p .', 'npm pack --ignore-scripts', 'cp package-lock.json /pkg/']) {
    if (!buildRuns.includes(step)) throw new Error(`the build stage no longer runs "${step}"; update test/deploy/image.ts`)
  }
  const ignore = repoFile('.dockerignore')

  const rootfs = tempDir('rootfs')
  const hostPath = (p: string): string => join(rootfs, posix.normalize(p))
  let workdir = '/'
  const env: Record<string, string> = {}
  let entrypoint: string[] = []
  let cmd: string[] = []
  let healthcheck: string[] = []
  const ran: string[] = []
  const skipped: string[] = []

  for (const ins of runtime.instructions) {
    switch (ins.keyword) {
      case 'WORKDIR':
        workdir = posix.resolve(workdir, ins.args)
        mkdirSync(hostPath(workdir), { recursive: true })
        break
      case 'ENV':
        Object.assign(env, parseEnvInstruction(ins.args))
        break
      case 'COPY': {
        const words = ins.args.split(/\s+/)
        const from = words.find(w => w.startsWith('--from='))?.slice('--from='.length)
        const [src, dest] = words.filter(w => !w.startsWith('--'))
        const target = hostPath(posix.resolve(workdir, dest))
        if (from === 'build') {
          if (src.replace(/\/$/, '') !== '/pkg') throw new Error(`COPY --from=build of ${src}: the replay only knows /pkg`)
          mkdirSync(target, { recursive: true })
          await runOk('tar', ['-xzf', await packTarball(), '-C', target, '--strip-components=1'])
          cpSync(join(REPO, 'package-lock.json'), join(target, 'package-lock.json'))
        } else if (from === undefined) {
          if (dockerIgnored(ignore, src)) throw new Error(`COPY ${src}: .dockerignore keeps it out of the build context`)
          cpSync(join(REPO, src), dest.endsWith('/') ? join(target, posix.basename(src)) : target, { recursive: true })
        } else {
          throw new Error(`COPY --from=${from}: not replayable`)
        }
        break
      }
      case 'RUN': {
        const command = runCommand(ins.args)
        if (!command.startsWith('npm ')) { skipped.push(command); break }
        await runOk('sh', ['-c', command], {
          cwd: hostPath(workdir),
          // The image's ENV applies; the runner's npm settings (registry, cache) stay usable.
          env: { ...process.env, ...env, npm_config_prefer_offline: 'true' },
          timeoutMs: 180_000
        })
        ran.push(command)
        break
      }
      case 'ENTRYPOINT':
        entrypoint = jsonArray(ins.args, 'ENTRYPOINT')
        break
      case 'CMD':
        cmd = jsonArray(ins.args, 'CMD')
        break
      case 'HEALTHCHECK': {
        const m = /\bCMD\s+(\[.*\])\s*$/.exec(ins.args)
        if (m === null) throw new Error(`HEALTHCHECK must use CMD in exec form: ${ins.args}`)
        healthcheck = jsonArray(m[1], 'HEALTHCHECK CMD')
        break
      }
      default:
        break
    }
  }
  return { dockerfile, runtime, rootfs, workdir, hostWorkdir: hostPath(workdir), env, entrypoint, cmd, healthcheck, ran, skipped, hostPath }
}

/**
 * A command line of the image made runnable here: the init (tini --) is dropped, `node` becomes
 * `nodeBin`, and image paths move into the rootfs.
 */
export function hostCommand (img: ImageInstall, argv: string[], nodeBin: string): [string, string[]] {
  let words = [...argv]
  if (words[0] === '/sbin/tini') words = words.slice(words[1] === '--' ? 2 : 1)
  const mapped = words.map(w => w.startsWith('/') ? img.hostPath(w) : w)
  if (mapped[0] !== 'node') throw new Error(`expected a node command line, got ${argv.join(' ')}`)
  return [nodeBin, mapped.slice(1)]
}

/** package.json as shipped in the image. */
export function installedPackageJson (img: ImageInstall): Record<string, unknown> {
  return JSON.parse(readFileSync(join(img.hostWorkdir, 'package.json'), 'utf8')) as Record<string, unknown>
}
