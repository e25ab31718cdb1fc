import { ReverselbError } from '../protocol/index.js'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { createPacResolver } from 'pac-resolver'
import { QuickJS } from 'quickjs-wasi'
import type { QuickJSOptions } from 'quickjs-wasi'

/**
 * Proxy auto-config: fetch or read a PAC file, run its FindProxyForURL in pac-resolver's QuickJS
 * sandbox (WebAssembly: the script sees no Node API), and turn the answer into routes to try.
 */

/** The PAC could not be fetched, or its script failed; retried with backoff (the file may be fixed). */
export class PacError extends ReverselbError {
  override name = 'PacError'
  constructor (message: string, options?: ErrorOptions) { super('ERR_REVERSELB_PAC', message, options) }
}

/** One element of a PAC answer: a proxy URL (http:// or https://), or direct. */
export type PacRoute = { direct: true } | { direct: false, proxy: URL }

/** A PAC file's script runs in milliseconds; one that loops is stopped. */
const PAC_RUN_MS = 2000
/** Bounds the sandbox's heap: a PAC is a few kB of string matching. */
const PAC_MEMORY_BYTES = 32 * 1024 * 1024
/** A PAC file is rarely 100 kB. */
const MAX_PAC_BYTES = 4 * 1024 * 1024

// Compiled once; each PAC run gets a fresh instance. (Our TypeScript lib list has no WebAssembly types.)
type WasmModule = QuickJSOptions['wasm']
const { WebAssembly: wasmApi } = globalThis as unknown as { WebAssembly: { compile: (bytes: Uint8Array) => Promise<WasmModule> } }
let wasm: Promise<WasmModule> | undefined
const quickjsModule = async (): Promise<WasmModule> => {
  wasm ??= readFile(fileURLToPath(import.meta.resolve('quickjs-wasi/quickjs.wasm'))).then(async b => await wasmApi.compile(b))
  return await wasm
}

/** `--proxy-pac`'s value for messages: a URL without user info, or the path. */
export function describePac (location: string): string {
  if (!isUrl(location)) return location
  const u = new URL(location)
  u.username = ''
  u.password = ''
  return u.href
}

const isUrl = (location: string): boolean => /^(https?|file):\/\//i.test(location)

/** Whether the PAC must be fetched again on each reconnect (it came from a server). */
export const isRemotePac = (location: string): boolean => /^https?:\/\//i.test(location)

/** The PAC script: fetched over HTTP(S) directly (never through a proxy), or read from a file. */
export async function loadPac (location: string, timeoutMs: number): Promise<string> {
  const name = describePac(location)
  if (isRemotePac(location)) {
    let res: Response
    try {
      res = await fetch(location, { signal: AbortSignal.timeout(timeoutMs), redirect: 'follow' })
    } catch (err) {
      const e = err as Error & { cause?: Error }
      const why = e.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (e.cause?.message ?? e.message)
      throw new PacError(`PAC file ${name} is unreachable: ${why}`)
    }
    if (!res.ok) {
      await res.body?.cancel()
      throw new PacError(`PAC file ${name} could not be fetched: HTTP ${res.status} ${res.statusText}`.trim())
    }
    const text = await res.text()
    if (text.length > MAX_PAC_BYTES) throw new PacError(`PAC file ${name} is larger than ${MAX_PAC_BYTES} bytes`)
    return text
  }
  try {
    return await readFile(location.startsWith('file:') ? fileURLToPath(location) : location, 'utf8')
  } catch (err) {
    throw new PacError(`PAC file ${name} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}

/** Runs the PAC's FindProxyForURL for `url` and returns its raw answer, e.g. "PROXY a:3128; DIRECT". */
export async function findProxyForUrl (script: string, url: string, name: string): Promise<string> {
  let deadline = Infinity
  const vm = await QuickJS.create({
    wasm: await quickjsModule(),
    memoryLimit: PAC_MEMORY_BYTES,
    interruptHandler: () => Date.now() > deadline
  })
  try {
    deadline = Date.now() + PAC_RUN_MS
    const find = createPacResolver(vm, script, { filename: name })
    const answer: unknown = await find(url)
    if (typeof answer !== 'string') throw new Error(`FindProxyForURL returned ${typeof answer}, not a string`)
    return answer
  } catch (err) {
    const msg = (err as Error).message.split('\n')[0]
    throw new PacError(`PAC file ${name} failed for ${url}: ${/interrupted/.test(msg) ? `did not finish within ${PAC_RUN_MS} ms` : msg}`)
  } finally {
    vm.dispose()
  }
}

/**
 * "PROXY a:3128; HTTPS b:443; DIRECT" → routes in that order. SOCKS entries are skipped (we speak
 * HTTP CONNECT only); reported through `skipped`.
 */
export function parsePacAnswer (answer: string, skipped: (entry: string) => void = () => {}): PacRoute[] {
  const routes: PacRoute[] = []
  for (const entry of answer.split(';').map(e => e.trim()).filter(e => e !== '')) {
    const m = /^(DIRECT|PROXY|HTTP|HTTPS)(?:\s+(\S+))?$/i.exec(entry)
    const kind = m?.[1].toUpperCase()
    if (kind === 'DIRECT') routes.push({ direct: true })
    else if (m !== null && m[2] !== undefined) {
      try {
        routes.push({ direct: false, proxy: new URL(`${kind === 'HTTPS' ? 'https' : 'http'}://${m[2]}`) })
      } catch { skipped(entry) }
    } else skipped(entry)
  }
  return routes
}
