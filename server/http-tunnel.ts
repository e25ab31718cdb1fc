import { REFUSAL_HEADER, HTTP_TUNNEL_HEADERS, HTTP_TUNNEL_PATHS, MAX_DOWNLOAD_HOLD_MS, MAX_UPLOAD_BYTES, MIN_DOWNLOAD_HOLD_MS, DEFAULT_DOWNLOAD_HOLD_MS, SequenceError } from '../protocol/index.js'
import { HttpTunnelSession } from './http-tunnel-session.js'
import type { Logger } from '../protocol/index.js'
import type { AdmittedClient, UpgradeGate } from './upgrade-gate.js'
import type { IncomingMessage, ServerResponse } from 'node:http'

export interface HttpTunnelOptions {
  gate: UpgradeGate
  log: Logger
  /** A session without any request for this long is gone. */
  idleMs: number
  /** Runs the tunnel session (registration, muxer) on an opened session's byte stream. */
  onSession: (session: HttpTunnelSession, client: AdmittedClient) => void
}

/** A refusal with its HTTP status; the reason goes in the body and the refusal header. */
class Refusal extends Error {
  constructor (readonly status: number, message: string) { super(message) }
}

const sequence = (v: string | string[] | undefined, name: string): number => {
  if (typeof v !== 'string' || !/^\d{1,15}$/.test(v)) throw new Refusal(400, `${name} must be a byte offset`)
  return Number(v)
}

/**
 * The server side of the HTTP transport (protocol/http/paths.ts) on the tunnel port and on the
 * plain --httptunnelport: opens sessions through the same gate as WebSocket upgrades, and serves
 * their downloads and uploads. Whatever is wrong with a request is answered with a status and the
 * reason, and costs nothing else.
 */
export class HttpTunnel {
  private readonly sessions = new Map<string, HttpTunnelSession>()

  constructor (private readonly opts: HttpTunnelOptions) {}

  /** Sessions open now. */
  get size (): number {
    return this.sessions.size
  }

  /**
   * True when `req` was one of ours (and is answered). `plain`: it came without TLS
   * (--httptunnelport), where only sessions with the end-to-end layer are opened.
   */
  handle (req: IncomingMessage, res: ServerResponse, plain = false): boolean {
    const url = new URL(req.url ?? '/', 'http://x')
    const route = Object.values(HTTP_TUNNEL_PATHS).find(p => p === url.pathname)
    if (route === undefined) return false
    this.serve(route, url, req, res, plain).catch((err: Error) => {
      const status = err instanceof Refusal ? err.status : err instanceof SequenceError ? 416 : 500
      if (status === 500) this.opts.log.warn(`HTTP tunnel request from ${req.socket.remoteAddress ?? '?'} failed: ${err.message}`)
      if (res.headersSent) { res.destroy(); return }
      res.writeHead(status, { 'content-type': 'text/plain', connection: status >= 500 ? 'close' : 'keep-alive', [REFUSAL_HEADER]: err.message.replace(/[^\x20-\x7e]/g, '?') })
        .end(`${err.message}\n`)
      // An unread body is not worth reading: the connection goes.
      if (!req.complete) req.destroy()
    })
    return true
  }

  private async serve (route: string, url: URL, req: IncomingMessage, res: ServerResponse, plain: boolean): Promise<void> {
    if (route === HTTP_TUNNEL_PATHS.open) return this.open(req, res, plain)
    if (route === HTTP_TUNNEL_PATHS.probe) {
      res.writeHead(204, { 'cache-control': 'no-store' }).end()
      return
    }
    const id = req.headers[HTTP_TUNNEL_HEADERS.session]
    const session = typeof id === 'string' ? this.sessions.get(id) : undefined
    // A session without the layer is not served over plain HTTP, where its bytes would be readable.
    if (session === undefined || (plain && !session.e2e)) throw new Refusal(404, 'no such tunnel session (it ended, or the server restarted): open a new one')
    if (route === HTTP_TUNNEL_PATHS.down) {
      if (req.method !== 'GET') throw new Refusal(405, 'downloads are GET requests')
      const holdMs = Math.min(MAX_DOWNLOAD_HOLD_MS, Math.max(MIN_DOWNLOAD_HOLD_MS, Number(url.searchParams.get('hold') ?? DEFAULT_DOWNLOAD_HOLD_MS) || DEFAULT_DOWNLOAD_HOLD_MS))
      session.attachDownload(res, sequence(url.searchParams.get('from') ?? undefined, 'from'), holdMs)
      return
    }
    if (req.method !== 'POST') throw new Refusal(405, 'uploads are POST requests')
    if (route === HTTP_TUNNEL_PATHS.close) {
      session.destroy()
      res.writeHead(204).end()
      return
    }
    const seq = sequence(url.searchParams.get('seq') ?? undefined, 'seq')
    const ack = sequence(req.headers[HTTP_TUNNEL_HEADERS.ack], HTTP_TUNNEL_HEADERS.ack)
    const body = await readBody(req, MAX_UPLOAD_BYTES)
    if (session.uploading) throw new Refusal(409, 'one upload at a time per session')
    session.uploading = true
    let next: number
    try {
      next = await session.upload(seq, body, ack)
    } finally {
      session.uploading = false
    }
    res.writeHead(200, { [HTTP_TUNNEL_HEADERS.ack]: String(next), 'cache-control': 'no-store' }).end()
  }

  private open (req: IncomingMessage, res: ServerResponse, plain: boolean): void {
    if (req.method !== 'POST') throw new Refusal(405, 'sessions are opened with POST')
    const offers = req.headers[HTTP_TUNNEL_HEADERS.protocol]
    const list = typeof offers === 'string' ? offers.split(',') : undefined
    // Checked before the gate looks at any token: without the layer, plain HTTP would carry it readable.
    if (plain && (list === undefined || !list.every(o => o.trim().endsWith('.e2e')))) {
      throw new Refusal(400, 'this plain-HTTP port carries only sessions with the end-to-end layer (subprotocol ...e2e); use the TLS port otherwise')
    }
    const verdict = this.opts.gate.evaluate(req, list)
    if ('status' in verdict) throw new Refusal(verdict.status, verdict.reason)
    const session = new HttpTunnelSession(this.opts.idleMs, verdict.e2e)
    this.sessions.set(session.id, session)
    session.once('close', () => this.sessions.delete(session.id))
    session.on('error', (err) => this.opts.log.debug(`HTTP tunnel session of ${verdict.from}: ${err.message}`))
    this.opts.log.info(`tunnel client ${verdict.from} opened an HTTP-transport session`)
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', [HTTP_TUNNEL_HEADERS.session]: session.id })
      .end(JSON.stringify({ session: session.id }))
    this.opts.onSession(session, verdict)
  }

  /** Ends every session. */
  close (): void {
    for (const s of this.sessions.values()) s.destroy()
  }
}

/** The request body, which must announce its length and stay within `max` bytes. */
async function readBody (req: IncomingMessage, max: number): Promise<Buffer> {
  const length = req.headers['content-length']
  if (length === undefined || !/^\d{1,10}$/.test(length)) throw new Refusal(411, 'an upload needs a Content-Length')
  if (Number(length) > max) throw new Refusal(413, `an upload may hold at most ${max} bytes`)
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  const body = Buffer.concat(chunks)
  if (body.length !== Number(length)) throw new Refusal(400, 'the upload is shorter than its Content-Length')
  return body
}
