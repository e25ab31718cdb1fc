import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:https'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { selfSignedCertificate } from '../../server/certificate.js'
import { freePort } from '../fixtures/net.js'
import { start } from '../fixtures/process.js'

export interface ApiResponse {
  status: number
  headers: Headers
  text: string
  /** The body parsed as JSON (undefined when it is not JSON). */
  body: any
}

/** One request to the HTTP API; `token` undefined sends no Authorization header. */
export async function api (base: string, path: string, opts: { method?: string, token?: string } = {}): Promise<ApiResponse> {
  const headers: Record<string, string> = {}
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`
  const res = await fetch(base + path, { method: opts.method ?? 'GET', headers, signal: AbortSignal.timeout(10_000) })
  const text = await res.text()
  let body: unknown
  try { body = JSON.parse(text) } catch { body = undefined }
  return { status: res.status, headers: res.headers, text, body }
}

/** GET over HTTPS trusting nothing but a certificate with this fingerprint. */
export async function httpsGetPinned (port: number, path: string, fingerprint: string, token: string): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, rejectUnauthorized: false, headers: { authorization: `Bearer ${token}` }, timeout: 10_000 }, (res) => {
      const fp = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256
      if (fp !== fingerprint) { res.destroy(); reject(new Error(`unexpected certificate ${fp}`)); return }
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** Prometheus text format -> samples by `name{label="v",...}` (labels sorted). */
export function parseMetrics (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null) throw new Error(`unparsable metrics line: ${line}`)
    const labels = m[2] === undefined || m[2] === '' ? [] : [...m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map(x => `${x[1]}="${x[2]}"`)
    out.set(key(m[1], labels), Number(m[3]))
  }
  return out
}

function key (name: string, labels: string[]): string {
  return labels.length === 0 ? name : `${name}{${[...labels].sort().join(',')}}`
}

/** A sample's value; `labels` as an object. */
export function sample (samples: Map<string, number>, name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.get(key(name, Object.entries(labels).map(([k, v]) => `${k}="${v}"`)))
}

export interface CertFiles {
  dir: string
  cert: string
  key: string
  certFile: string
  keyFile: string
  fingerprint: string
  remove: () => Promise<void>
}

/** A fresh self-signed certificate for localhost/127.0.0.1 written to a temp dir. */
export async function certFiles (): Promise<CertFiles> {
  const c = await selfSignedCertificate('localhost')
  const dir = await mkdtemp(join(tmpdir(), 'reverselb-test-cert-'))
  const certFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  await writeFile(certFile, c.cert)
  await writeFile(keyFile, c.key, { mode: 0o600 })
  return { dir, cert: c.cert, key: c.key, certFile, keyFile, fingerprint: c.fingerprint, remove: async () => await rm(dir, { recursive: true, force: true }) }
}

export interface TestNatsServer {
  port: number
  stop: () => Promise<void>
}

/** A nats-server of the test's own: TLS with `cert` and token auth, on loopback. */
export async function startNatsServer (cert: CertFiles, token: string): Promise<TestNatsServer> {
  const port = await freePort()
  const conf = join(cert.dir, `nats-${port}.conf`)
  await writeFile(conf, JSON.stringify({
    host: '127.0.0.1', port, tls: { cert_file: cert.certFile, key_file: cert.keyFile }, authorization: { token }
  }), { mode: 0o600 })
  const nats = start('test nats-server', 'nats-server', ['-c', conf])
  try {
    await nats.waitFor(/Server is ready/, 10_000)
  } catch (err) {
    await nats.stop('SIGKILL')
    throw err
  }
  return { port, stop: async () => { await nats.stop() } }
}

/** True when nothing accepts TCP connections on 127.0.0.1:port. */
export async function portIsClosed (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const s = connect({ port, host: '127.0.0.1' })
    s.on('connect', () => { s.destroy(); resolve(false) })
    s.on('error', () => resolve(true))
  })
}

/** Whether process `pid` exists. */
export function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}
