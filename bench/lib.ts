// Shared helpers of the benchmark: process bookkeeping, /proc memory readings, small statistics.
import { execFileSync } from 'node:child_process'
import { appendFileSync, readFileSync, readdirSync } from 'node:fs'
import { once } from 'node:events'
import { connect as tlsConnect } from 'node:tls'
import { setTimeout as sleep } from 'node:timers/promises'
import { start as startProcess } from '../test/fixtures/process.js'
import type { ChildProcess } from 'node:child_process'

export const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

export interface Proc {
  name: string
  pid: number
  child: ChildProcess
  logFile: string
  exited: Promise<number | null>
}

/**
 * Every process the bench starts, in start order. Each runs in its own process group (detached),
 * so a group kill also reaches what it spawned; descendants that left the group are found by
 * walking /proc parent links.
 */
export const procs: Proc[] = []
let pgidFile: string | undefined

/** Where the process groups are recorded for the reaper (see run.ts) that survives a SIGKILL of the bench. */
export function setPgidFile (file: string): void { pgidFile = file }

/** Raises the open-files limit to the hard limit, then runs the command (`bash -c RAISE_NOFILE name cmd args`). */
export const RAISE_NOFILE = 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"'

/**
 * Starts `cmd args` through bash with the open-files limit raised to the hard limit (10k idle
 * connections need more than the usual soft limit of 1024), output into `logFile`.
 */
export function start (name: string, logFile: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const started = startProcess(name, 'bash', ['-c', RAISE_NOFILE, 'bench-start', cmd, ...args], { detached: true, logFile, env: { ...process.env, ...env } })
  const p: Proc = { name, pid: started.pid, child: started.child, logFile, exited: started.closed.then(r => r.code) }
  procs.push(p)
  if (pgidFile !== undefined) appendFileSync(pgidFile, `${p.pid}\n`)
  return p
}

export function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

/** Child PIDs of `pid` (from /proc/<pid>/task/<pid>/children). */
export function children (pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(s => s !== '').map(Number)
  } catch {
    return []
  }
}

/** Process group of `pid`, or -1. */
export function pgid (pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2])
  } catch {
    return -1
  }
}

export function descendants (pid: number): number[] {
  const out: number[] = []
  const stack = [pid]
  for (let guard = 0; stack.length > 0 && guard < 10_000; guard++) {
    for (const c of children(stack.pop() as number)) { out.push(c); stack.push(c) }
  }
  return out
}

/** SIGTERM to the process group and all descendants; SIGKILL after `graceMs`. */
export async function stop (p: Proc, graceMs = 3000): Promise<void> {
  const idx = procs.indexOf(p)
  if (idx >= 0) procs.splice(idx, 1)
  const tree = [p.pid, ...descendants(p.pid)]
  // One SIGTERM each: to the group, and to descendants that left it (a second SIGTERM makes some
  // programs, reverselb included, skip their orderly shutdown).
  try { process.kill(-p.pid, 'SIGTERM') } catch { try { process.kill(p.pid, 'SIGTERM') } catch { /* gone */ } }
  for (const pid of tree) { if (pgid(pid) !== p.pid) { try { process.kill(pid, 'SIGTERM') } catch { /* gone */ } } }
  const deadline = Date.now() + graceMs
  while (Date.now() < deadline && tree.some(alive)) await sleep(50)
  if (tree.some(alive)) {
    log(`SIGKILL leftover processes of ${p.name}`)
    try { process.kill(-p.pid, 'SIGKILL') } catch { /* gone */ }
    for (const pid of tree) { try { process.kill(pid, 'SIGKILL') } catch { /* gone */ } }
  }
  await Promise.race([p.exited, sleep(1000)])
}

/** Synchronous last-resort cleanup for 'exit' handlers. */
export function killAllSync (): void {
  for (const p of [...procs].reverse()) {
    const tree = [p.pid, ...descendants(p.pid)]
    try { process.kill(-p.pid, 'SIGKILL') } catch { /* gone */ }
    for (const pid of tree) { try { process.kill(pid, 'SIGKILL') } catch { /* gone */ } }
  }
  procs.length = 0
}

export async function stopAll (): Promise<void> {
  for (const p of [...procs].reverse()) await stop(p)
}

/** Resident set size in bytes (VmRSS), 0 when the process is gone. */
export function rss (pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? 0 : Number(m[1]) * 1024
  } catch {
    return 0
  }
}

/** CPU time (user + system) a process has used so far, in seconds; 0 when it is gone. */
export function cpuSeconds (pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15, in clock ticks (100/s)
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return 0
  }
}

export function comm (pid: number): string {
  try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() } catch { return '' }
}

/** Samples a memory figure every `everyMs` until stopped; returns the peak. */
export function peakSampler (read: () => number, everyMs = 50): { stop: () => number } {
  let peak = read()
  const timer = setInterval(() => { peak = Math.max(peak, read()) }, everyMs)
  return {
    stop: () => {
      clearInterval(timer)
      peak = Math.max(peak, read())
      return peak
    }
  }
}

export function isListening (port: number): boolean {
  try {
    return execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' }).trim() !== ''
  } catch {
    return false
  }
}

export async function waitListen (port: number, p: Proc, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (isListening(port)) return
    if (p.child.exitCode !== null || !alive(p.pid)) throw new Error(`${p.name} exited before port ${port} was listening (see ${p.logFile})`)
    await sleep(50)
  }
  throw new Error(`timeout waiting for port ${port} (${p.name}, see ${p.logFile})`)
}

/** Runs a command to completion with a hard time limit; returns stdout. Fails on non-zero exit. */
export async function run (cmd: string, args: string[], timeoutMs: number, logFile?: string): Promise<string> {
  const started = startProcess(cmd, 'bash', ['-c', RAISE_NOFILE, 'bench-run', cmd, ...args], { detached: true })
  const proc: Proc = { name: cmd, pid: started.pid, child: started.child, logFile: logFile ?? '', exited: Promise.resolve(null) }
  procs.push(proc)
  try {
    const { code, signal, stdout, stderr } = await started.finish(timeoutMs)
    if (code === 0) return stdout
    throw new Error(`${cmd} ${args.slice(0, 3).join(' ')} failed (${signal ?? `exit ${String(code)}`}): ${stderr.trim().split('\n').slice(-2).join(' | ')}`)
  } finally {
    procs.splice(procs.indexOf(proc), 1)
    if (logFile !== undefined) appendFileSync(logFile, `$ ${cmd} ${args.join(' ')}\n${started.stdout}${started.stderr}\n`)
  }
}

export function median (xs: number[]): number | undefined {
  const v = xs.filter(x => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return undefined
  const m = Math.floor(v.length / 2)
  return v.length % 2 === 1 ? v[m] : (v[m - 1] + v[m]) / 2
}

export function quantile (sorted: Float64Array | number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

export function listPids (): number[] {
  return readdirSync('/proc').filter(d => /^\d+$/.test(d)).map(Number)
}

/**
 * The SHA-256 fingerprint of the certificate a TLS server on loopback presents, as a user reads it
 * from the server's log or with openssl s_client, to pin it with --fingerprint.
 */
export async function tlsFingerprint (port: number, timeoutMs: number): Promise<string> {
  const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false })
  try {
    await once(socket, 'secureConnect', { signal: AbortSignal.timeout(timeoutMs) })
    return socket.getPeerCertificate().fingerprint256
  } finally {
    socket.destroy()
  }
}

