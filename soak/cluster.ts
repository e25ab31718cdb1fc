import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { selfSignedCertificate } from '../server/certificate.js'
import { CLI, runCli } from '../test/fixtures/cli.js'
import type { CliProcess } from '../test/fixtures/cli.js'

/** A reverselb child process: its log, a way to wait for a line, and stop(). */
export type CliProc = CliProcess

/** Keeps the log's tail only: a long soak must not grow the parent's memory with child logs. */
const startCli = (args: string[]): CliProc => runCli(args, {}, CLI, 256 * 1024)

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
  const p = startCli(serverArgs(o))
  try {
    await p.waitFor(/tunnel service listening/)
  } catch (err) {
    await p.stop('SIGKILL')
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
  const p = startCli(tunnelArgs(o))
  try {
    await p.waitFor(/ registered with /)
  } catch (err) {
    await p.stop('SIGKILL')
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
