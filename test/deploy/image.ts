/**
 * The Dockerfile replayed without a Docker engine. Each stage gets a host folder standing for its
 * root filesystem; image paths (/src, /tmp, /pkg, /app) map into it.
 * - build stage: the build context (the repository filtered by .dockerignore) is placed in its
 *   WORKDIR, and its RUN commands run verbatim there (npm ci, tsc, npm pack, unpacking to /pkg);
 * - final stage: `COPY --from=build` and context COPYs are performed, and every `npm` RUN runs
 *   verbatim in the WORKDIR. The RUNs that set up the OS (apk, adduser) cannot run here and are
 *   only recorded.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, posix } from 'node:path'
import { REPO, parseDockerfile, parseEnvInstruction, repoFile, runOk, tempDir } from './helpers.js'
import type { DockerStage, Dockerfile } from './helpers.js'

export interface ImageInstall {
  dockerfile: Dockerfile
  runtime: DockerStage
  /** Host folder standing for the final image's / */
  rootfs: string
  /** The image's WORKDIR, as an image path, and its host folder. */
  workdir: string
  hostWorkdir: string
  /** ENV of the final stage. */
  env: Record<string, string>
  entrypoint: string[]
  cmd: string[]
  healthcheck: string[]
  /** RUN commands of the final stage executed here, and those skipped (OS setup). */
  ran: string[]
  skipped: string[]
  /** RUN commands of the build stage, all executed here. */
  buildRan: string[]
  /** Files of the build context, relative to the repository. */
  context: string[]
  /** Maps an absolute image path into the rootfs. */
  hostPath: (imagePath: string) => string
}

/** Drops BuildKit flags (--mount=..., --network=...) in front of a RUN command. */
export function runCommand (args: string): string {
  return args.replace(/^(\s*--[a-z-]+=\S+\s+)+/, '').trim()
}

interface IgnoreRule { negate: boolean, pattern: string }

function ignoreRules (text: string): IgnoreRule[] {
  return text.split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('#')).map(line => {
    const negate = line.startsWith('!')
    return { negate, pattern: (negate ? line.slice(1) : line).replace(/\/$/, '') }
  })
}

/** Whether .dockerignore keeps a path out of the build context ("last matching pattern wins"). */
export function dockerIgnored (ignoreText: string, path: string): boolean {
  let ignored = false
  for (const { negate, pattern } of ignoreRules(ignoreText)) {
    if (pattern === '*' || path === pattern || path.startsWith(pattern + '/')) ignored = !negate
  }
  return ignored
}

/** The files of the build context: the repository as .dockerignore filters it. */
export function buildContext (): string[] {
  const text = repoFile('.dockerignore')
  const exceptions = ignoreRules(text).filter(r => r.negate).map(r => r.pattern)
  const files: string[] = []
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(REPO, rel))) {
      const path = rel === '' ? name : `${rel}/${name}`
      const isDir = statSync(join(REPO, path)).isDirectory()
      if (isDir) {
        // An excluded folder is still entered when an exception names something inside it.
        if (!dockerIgnored(text, path) || exceptions.some(e => e.startsWith(path + '/'))) walk(path)
      } else if (!dockerIgnored(text, path)) {
        files.push(path)
      }
    }
  }
  walk('')
  return files.sort()
}

function jsonArray (args: string, what: string): string[] {
  const v: unknown = JSON.parse(args)
  if (!Array.isArray(v) || !v.every(s => typeof s === 'string')) throw new Error(`${what} must be a JSON (exec form) array: ${args}`)
  return v
}

/** Rewrites the absolute image paths of a shell command into a stage's host folder. */
function mapPaths (command: string, root: string, prefixes: string[]): string {
  return command.replace(new RegExp(`(^|[\\s=:'"])/(${prefixes.join('|')})(?=[/\\s'"]|$)`, 'g'), (_m, lead: string, dir: string) => `${lead}${root}/${dir}`)
}

let install: Promise<ImageInstall> | undefined

/** The Dockerfile replayed once per test run (shared by the Docker and Raspberry Pi tests). */
export async function imageInstall (): Promise<ImageInstall> {
  install ??= replay()
  return await install
}

async function replay (): Promise<ImageInstall> {
  const dockerfile = parseDockerfile(repoFile('Dockerfile'))
  const runtime = dockerfile.stages[dockerfile.stages.length - 1]
  const build = dockerfile.stages.find(s => s.name === 'build')
  if (build === undefined) throw new Error('the Dockerfile has no stage named "build"')
  const npmEnv = (env: Record<string, string>): NodeJS.ProcessEnv =>
    // The stage's ENV applies; the runner's npm settings (registry, cache) stay usable.
    ({ ...process.env, ...env, npm_config_prefer_offline: 'true' })

  // Build stage.
  const context = buildContext()
  const buildRoot = tempDir('build')
  let buildWorkdir = '/'
  const buildEnv: Record<string, string> = {}
  const buildRan: string[] = []
  for (const ins of build.instructions) {
    if (ins.keyword === 'WORKDIR') {
      buildWorkdir = posix.resolve(buildWorkdir, ins.args)
      mkdirSync(join(buildRoot, buildWorkdir), { recursive: true })
    } else if (ins.keyword === 'ENV') {
      Object.assign(buildEnv, parseEnvInstruction(ins.args))
    } else if (ins.keyword === 'COPY') {
      // Every COPY of the build stage takes from the context: place the whole context once
      // (the split into several COPYs only serves the layer cache).
      if (/--from=/.test(ins.args)) throw new Error(`build stage COPY ${ins.args}: not replayable`)
      for (const f of context) {
        mkdirSync(dirname(join(buildRoot, buildWorkdir, f)), { recursive: true })
        cpSync(join(REPO, f), join(buildRoot, buildWorkdir, f))
      }
    } else if (ins.keyword === 'RUN') {
      const command = mapPaths(runCommand(ins.args), buildRoot, ['tmp', 'pkg'])
      mkdirSync(join(buildRoot, 'tmp'), { recursive: true })
      await runOk('sh', ['-c', command], { cwd: join(buildRoot, buildWorkdir), env: npmEnv(buildEnv), timeoutMs: 240_000 })
      buildRan.push(runCommand(ins.args))
    }
  }

  // Final stage.
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
          const source = join(buildRoot, src)
          if (!existsSync(source)) throw new Error(`COPY --from=build ${src}: the build stage did not produce it`)
          cpSync(source, target, { recursive: true })
        } else if (from === undefined) {
          if (!context.includes(src)) throw new Error(`COPY ${src}: not in the build context (.dockerignore)`)
          cpSync(join(REPO, src), dest.endsWith('/') ? join(target, posix.basename(src)) : target, { recursive: true })
        } else {
          throw new Error(`COPY --from=${from}: not replayable`)
        }
        break
      }
      case 'RUN': {
        const command = runCommand(ins.args)
        if (!command.startsWith('npm ')) { skipped.push(command); break }
        await runOk('sh', ['-c', command], { cwd: hostPath(workdir), env: npmEnv(env), timeoutMs: 180_000 })
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
  return { dockerfile, runtime, rootfs, workdir, hostWorkdir: hostPath(workdir), env, entrypoint, cmd, healthcheck, ran, skipped, buildRan, context, hostPath }
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
