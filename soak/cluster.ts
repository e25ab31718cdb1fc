import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { selfSignedCertificate } from '../server/certificate.js'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'

/** The reverselb CLI as built by tsc (dist/cli/main.js). */
export const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url))

/** A reverselb child process: its log, a way to wait for a line, and kill/stop. */
export class CliProc {
  readonly child: ChildProcessWithoutNullStreams
  readonly args: string[]
  private log = ''
  private readonly waiters = new Set<() => void>()
  readonly exited: Promise<number | null>

  constructor (args: string[]) {
    this.args = args
    this.child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: 'pipe' })
    const onData = (c: Buffer): void => {
      // Keep the tail only: a long soak must not grow the parent's memory with child logs.
      this.log = (this.log + c.toString()).slice(-256 * 1024)
      for (const w of this.waiters) w()
    }
    this.child.stderr.on('data', onData)
    this.child.stdout.on('data', onData)
    this.exited = once(this.child, 'exit').then(([code]) => code as number | null)
  }

  get pid (): number {
    if (this.child.pid === undefined) throw new Error('child did not start')
    return this.child.pid
  }

  get output (): string {
    return this.log
  }

  get running (): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** Resolves when the log matches `re` `count` times in all; rejects after `timeoutMs`. */
  async waitFor (re: RegExp, timeoutMs = 15_000, count = 1): Promise<void> {
    const global = new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g')
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if ((this.log.match(global)?.length ?? 0) >= count) { done(); resolve() }
      }
      const timer = setTimeout(() => { done(); reject(new Error(`timed out after ${timeoutMs} ms waiting for ${String(re)} x${count}; log:\n${this.log.slice(-4000)}`)) }, timeoutMs)
      const done = (): void => { clearTimeout(timer); this.waiters.delete(check) }
      this.waiters.add(check)
      check()
    })
  }

  /** Sends `signal` (SIGKILL by default) and waits for the exit. */
  async kill (signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    if (this.running) this.child.kill(signal)
    return await this.exited
  }
}

export interface Certificate {
  certFile: string
  keyFile: string
  fingerprint: string
  dir: string
  remove: () => void
}

/** A self-signed certificate in PEM files, so a restarted server keeps the fingerprint clients pin. */
export async function writeCertificate (): Promise<Certificate> {
  const dir = mkdtempSync(join(tmpdir(), 'reverselb-cert-'))
  const cert = await selfSignedCertificate('localhost')
  const certFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  writeFileSync(certFile, cert.cert)
  writeFileSync(keyFile, cert.key, { mode: 0o600 })
  return { certFile, keyFile, fingerprint: cert.fingerprint, dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

export interface ServerProcOptions {
  token: string
  apiPort: number
  dynPort: number
  dynPortCount: number
  cert: Certificate
  keepaliveSeconds?: number
  loglevel?: string
}

export function serverArgs (o: ServerProcOptions): string[] {
  return ['-t', o.token, '-l', o.loglevel ?? 'info', 'server', '--port', String(o.apiPort), '--host', '127.0.0.1',
    '--frontendhost', '127.0.0.1', '--dynport', String(o.dynPort), '--dynportcount', String(o.dynPortCount),
    '--tls-cert', o.cert.certFile, '--tls-key', o.cert.keyFile, '--keepalive', String(o.keepaliveSeconds ?? 20)]
}

/** Starts `reverselb server` and waits until it listens. */
export async function startServerProc (o: ServerProcOptions): Promise<CliProc> {
  const p = new CliProc(serverArgs(o))
  try {
    await p.waitFor(/tunnel service listening/)
  } catch (err) {
    await p.kill()
    throw err
  }
  return p
}

export interface TunnelProcOptions {
  token: string
  apiPort: number
  frontendPort: number
  backendPort: number
  serviceName: string
  fingerprint: string
  muxer?: 'yamux' | 'mplex'
  keepaliveSeconds?: number
  loglevel?: string
}

export function tunnelArgs (o: TunnelProcOptions): string[] {
  return ['-t', o.token, '-l', o.loglevel ?? 'info', 'tunnel', '-e', `127.0.0.1:${o.apiPort}`, '-p', String(o.frontendPort),
    '-b', `127.0.0.1:${o.backendPort}`, '-s', o.serviceName, '--fingerprint', o.fingerprint, '--mux', o.muxer ?? 'yamux',
    '--keepalive', String(o.keepaliveSeconds ?? 20)]
}

/** Starts `reverselb tunnel` and waits for its registration. */
export async function startTunnelProc (o: TunnelProcOptions): Promise<CliProc> {
  const p = new CliProc(tunnelArgs(o))
  try {
    await p.waitFor(/ registered with /)
  } catch (err) {
    await p.kill()
    throw err
  }
  return p
}

/** Resident set size (bytes) and open file descriptors of a process, from /proc (Linux). */
export function procStats (pid: number): { rss: number, fds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? 0)
  return { rss: kb * 1024, fds: readdirSync(`/proc/${pid}/fd`).length }
}

export { freePort, freePortRange } from '../test/fixtures/net.js'
