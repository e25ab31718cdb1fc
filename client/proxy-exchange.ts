import { ReverselbError } from '../protocol/index.js'
import type { Socket } from 'node:net'

/**
 * One exchange with an HTTP proxy on a socket we own: a CONNECT, or (for a plain-HTTP endpoint,
 * where CONNECT may be forbidden) one forwarded GET. Proxy authentication for NTLM and Negotiate
 * is bound to the TCP connection (challenge and answer must travel on the same one), so unlike
 * https-proxy-agent this keeps the socket after a 407, reads (and discards) its body, and lets the
 * caller send the next request on it.
 */

/** What is asked of the proxy: a tunnel to `host:port`, or one GET of an absolute http:// URL. */
export type ProxyAsk = { connect: string } | { get: URL }

/** The proxy's answer to one request. */
export interface ConnectAnswer {
  statusCode: number
  statusText: string
  /** Lower-case names; a repeated header (e.g. several Proxy-Authenticate) keeps every value. */
  headers: Map<string, string[]>
  /** Whether another request may be sent on the same socket. */
  reusable: boolean
}

/** No proxy answer head is this large; a bigger one is not an HTTP proxy talking. */
const MAX_HEAD_BYTES = 64 * 1024
/** A 407 page is small; we read and drop it, but not without bound. */
const MAX_BODY_BYTES = 1024 * 1024

/** The socket closed before the proxy's answer was complete. */
export class ProxyClosedError extends ReverselbError {
  override name = 'ProxyClosedError'
  constructor (message: string, options?: ErrorOptions) { super('ERR_REVERSELB_PROXY_CLOSED', message, options) }
}

/** Buffers what the proxy sends until a whole answer head (and body) is in. */
class AnswerReader {
  private buf = Buffer.alloc(0)
  private ended = false
  private failure?: Error
  private wake?: () => void
  private readonly onData = (chunk: Buffer): void => { this.buf = Buffer.concat([this.buf, chunk]); this.notify() }
  private readonly onEnd = (): void => { this.ended = true; this.notify() }
  private readonly onError = (err: Error): void => { this.failure = err; this.notify() }

  constructor (private readonly socket: Socket) {
    socket.on('data', this.onData)
    socket.on('end', this.onEnd)
    socket.on('close', this.onEnd)
    socket.on('error', this.onError)
    // A previous exchange on this socket left it paused.
    socket.resume()
  }

  private notify (): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  /** Waits until `ready` holds; throws when the socket fails or closes first. */
  private async until (ready: () => boolean): Promise<void> {
    while (!ready()) {
      if (this.failure !== undefined) throw this.failure
      if (this.ended) throw new ProxyClosedError('the proxy closed the connection before its answer was complete')
      await new Promise<void>(resolve => { this.wake = resolve })
    }
  }

  async head (): Promise<string> {
    let end = -1
    await this.until(() => {
      end = this.buf.indexOf('\r\n\r\n')
      if (end < 0 && this.buf.length > MAX_HEAD_BYTES) throw new Error(`the proxy's answer head exceeds ${MAX_HEAD_BYTES} bytes`)
      return end >= 0
    })
    const text = this.buf.subarray(0, end).toString('latin1')
    this.buf = this.buf.subarray(end + 4)
    return text
  }

  async skip (bytes: number): Promise<void> {
    await this.until(() => this.buf.length >= bytes)
    this.buf = this.buf.subarray(bytes)
  }

  async line (): Promise<string> {
    let end = -1
    await this.until(() => { end = this.buf.indexOf('\r\n'); return end >= 0 })
    const text = this.buf.subarray(0, end).toString('latin1')
    this.buf = this.buf.subarray(end + 2)
    return text
  }

  /** Stops listening; bytes read past the answer go back to the socket for whoever reads next. */
  detach (): void {
    this.socket.off('data', this.onData)
    this.socket.off('end', this.onEnd)
    this.socket.off('close', this.onEnd)
    this.socket.off('error', this.onError)
    this.socket.pause()
    if (this.buf.length > 0) this.socket.unshift(this.buf)
  }
}

function parseHead (text: string): Omit<ConnectAnswer, 'reusable'> & { version: string } {
  const [statusLine, ...lines] = text.split('\r\n')
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine)
  if (m === null) throw new Error(`the proxy did not answer in HTTP (${JSON.stringify(statusLine.slice(0, 40))}); is it an HTTP proxy?`)
  const headers = new Map<string, string[]>()
  for (const line of lines) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const name = line.slice(0, colon).trim().toLowerCase()
    headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()])
  }
  return { version: m[1], statusCode: Number(m[2]), statusText: m[3] ?? '', headers }
}

/** Reads a chunked body to its end, dropping it. */
async function skipChunked (reader: AnswerReader): Promise<void> {
  let total = 0
  for (;;) {
    const size = parseInt((await reader.line()).split(';')[0], 16)
    if (!Number.isFinite(size) || size < 0) throw new Error('the proxy sent a malformed chunked body')
    total += size
    if (total > MAX_BODY_BYTES) throw new Error('the proxy\'s answer body is too large')
    if (size === 0) {
      // Trailers, up to the empty line.
      while ((await reader.line()) !== '');
      return
    }
    await reader.skip(size + 2)
  }
}

/**
 * Sends the request (`CONNECT target`, or a GET of an absolute URL) with `headers` and reads the
 * answer. A 2xx to CONNECT leaves the socket paused at the first tunnel byte. Any other answer's
 * body (and a GET's, whatever its status) is read and dropped so that the socket, when
 * `reusable`, is ready for the next request.
 */
export async function proxyExchange (socket: Socket, ask: ProxyAsk, headers: Record<string, string>): Promise<ConnectAnswer> {
  const start = 'connect' in ask
    ? [`CONNECT ${ask.connect} HTTP/1.1`, `Host: ${ask.connect}`]
    : [`GET ${ask.get.href} HTTP/1.1`, `Host: ${ask.get.host}`]
  const lines = [...start, 'Proxy-Connection: keep-alive', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)]
  const reader = new AnswerReader(socket)
  try {
    socket.write(lines.join('\r\n') + '\r\n\r\n')
    const answer = parseHead(await reader.head())
    const one = (name: string): string | undefined => answer.headers.get(name)?.at(-1)
    if ('connect' in ask && answer.statusCode >= 200 && answer.statusCode < 300) return { ...answer, reusable: false }
    const conn = `${one('connection') ?? ''},${one('proxy-connection') ?? ''}`.toLowerCase()
    let reusable = answer.version === '1.1' ? !conn.includes('close') : conn.includes('keep-alive')
    const length = one('content-length')
    if (answer.statusCode === 204 || answer.statusCode === 304) { /* no body */ } else if (/chunked/i.test(one('transfer-encoding') ?? '')) await skipChunked(reader)
    else if (length !== undefined && /^\d+$/.test(length) && Number(length) <= MAX_BODY_BYTES) await reader.skip(Number(length))
    else reusable = false // a body that ends with the connection
    return { ...answer, reusable }
  } finally {
    reader.detach()
  }
}
