import { once } from 'node:events'
import { connect } from 'node:net'
import { basename } from 'node:path'
import { expect } from 'chai'
import { randomPayload, sha256, tcpServer } from '../fixtures/net.js'
import { start } from '../fixtures/process.js'
import { connectLines } from '../fixtures/proxies.js'
import type { TunnelClient } from '../../index.js'
import type { ProxyProcess } from '../fixtures/proxies.js'
import type { TcpServer } from '../fixtures/net.js'
import type { ChildProc } from '../fixtures/process.js'

/** Environment variables that would route a child or this process through some proxy. */
export const PROXY_VARS = ['https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY', 'no_proxy', 'NO_PROXY']

/** The current environment minus every *_PROXY variable, plus `extra`. */
export function cleanEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env }
  for (const v of PROXY_VARS) delete env[v]
  return { ...env, ...extra }
}

/** Clears every *_PROXY variable and sets `vars` in process.env; returns the undo. */
export function setEnv (vars: Record<string, string | undefined>): () => void {
  const saved = new Map(PROXY_VARS.concat(Object.keys(vars)).map(k => [k, process.env[k]]))
  for (const v of PROXY_VARS) delete process.env[v]
  for (const [k, v] of Object.entries(vars)) { if (v === undefined) delete process.env[k]; else process.env[k] = v }
  return () => { for (const [k, v] of saved) { if (v === undefined) delete process.env[k]; else process.env[k] = v } }
}

/** Runs `fn` with `vars` as the proxy environment, then restores it, so tests do not leak proxies. */
export async function withEnv<T> (vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const restore = setEnv(vars)
  try { return await fn() } finally { restore() }
}

/**
 * A backend that hashes everything it receives and, once the peer half-closes, answers with its
 * own random payload: a transfer checks both directions with different bytes.
 */
export interface HashingBackend extends TcpServer {
  download: Buffer
  /** SHA-256 of what each connection delivered, in order of completion. */
  received: string[]
}

export async function hashingBackend (downloadBytes = 2 * 1024 * 1024): Promise<HashingBackend> {
  const download = randomPayload(downloadBytes)
  const received: string[] = []
  const server = await tcpServer((socket) => {
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('end', () => {
      received.push(sha256(Buffer.concat(chunks)))
      socket.end(download)
    })
  })
  return Object.assign(server, { download, received })
}

/**
 * Sends `uploadBytes` random bytes through the frontend, reads the backend's answer, and checks
 * SHA-256 of both directions. Bounded by `timeoutMs`.
 */
export async function transferBothWays (frontendPort: number, backend: HashingBackend, uploadBytes = 2 * 1024 * 1024, timeoutMs = 20_000): Promise<void> {
  const upload = randomPayload(uploadBytes)
  const socket = connect({ port: frontendPort, host: '127.0.0.1', allowHalfOpen: true })
  const timer = setTimeout(() => socket.destroy(new Error(`transfer through port ${frontendPort} timed out`)), timeoutMs)
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  try {
    await once(socket, 'connect')
    const before = backend.received.length
    socket.end(upload)
    await once(socket, 'end')
    expect(sha256(Buffer.concat(chunks)), 'download SHA-256').to.equal(sha256(backend.download))
    expect(backend.received.length).to.equal(before + 1)
    expect(backend.received[before], 'upload SHA-256').to.equal(sha256(upload))
  } finally {
    clearTimeout(timer)
    socket.destroy()
  }
}

/** The first 'error' a TunnelClient reports (it keeps retrying), or a timeout error. */
export async function firstError (client: TunnelClient, timeoutMs = 10_000): Promise<Error> {
  return await new Promise<Error>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no error reported within ${timeoutMs} ms`)), timeoutMs)
    client.once('error', (err: Error) => { clearTimeout(timer); resolve(err) })
  })
}

/** A reverselb child (or a command in a namespace) with `env` as its whole environment. */
export type CliProcess = ChildProc
export const runCli = (cmd: string, args: string[], env: NodeJS.ProcessEnv): CliProcess => start(basename(cmd), cmd, args, { env })

/**
 * squid's access-log lines for CONNECTs to `target` by `user` ('-' for none), waited for: squid
 * writes a CONNECT's line when the tunnel closes, so close the client first. Bounded (5 s).
 */
export async function loggedConnects (proxy: ProxyProcess, target: string, user: string | RegExp = '-'): Promise<string[]> {
  let lines: string[] = []
  for (let i = 0; i < 50 && lines.length === 0; i++) {
    lines = connectLines(proxy.accessLog(), target).filter(l => typeof user === 'string' ? l.includes(` ${user} `) : user.test(l))
    if (lines.length === 0) await new Promise(resolve => setTimeout(resolve, 100))
  }
  return lines
}
