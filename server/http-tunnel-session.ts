import { randomBytes } from 'node:crypto'
import { Duplex } from 'node:stream'
import { DOWNLOAD_HEADERS, DOWNLOAD_WINDOW_BYTES, InOrderReceiver, ReplayBuffer } from '../protocol/index.js'
import type { ServerResponse } from 'node:http'

/** How long a session that ended keeps its unacknowledged bytes for the client's last download. */
const LINGER_MS = 2_000

/**
 * The server's end of one HTTP-transport session, as the byte stream the muxer (or the end-to-end
 * layer) runs on: what it writes goes out in the client's current download, and stays kept
 * (up to DOWNLOAD_WINDOW_BYTES, then writes wait) until the client acknowledges it; uploads come
 * in in order. A session with no download and no request for `idleMs` is gone.
 */
export class HttpTunnelSession extends Duplex {
  /** 192 random bits: the session's only name, known to the client that opened it. */
  readonly id = randomBytes(24).toString('base64url')
  private readonly sent = new ReplayBuffer()
  private readonly received = new InOrderReceiver()
  private download: ServerResponse | undefined
  private holdTimer: NodeJS.Timeout | undefined
  private readonly idleTimer: NodeJS.Timeout
  private lastSeen = Date.now()
  /** A write waiting for the window or the download to drain. */
  private pendingWrite: (() => void) | undefined
  /** An upload waiting for the reader to want more. */
  private readWaiter: (() => void) | undefined
  /** An upload is being taken (one at a time). */
  uploading = false
  private ending = false

  /** `e2e`: the client runs the end-to-end layer in it (only such sessions may use the plain-HTTP port). */
  constructor (private readonly idleMs: number, readonly e2e: boolean) {
    super({ allowHalfOpen: false })
    this.idleTimer = setInterval(() => {
      if (this.download === undefined && !this.uploading && Date.now() - this.lastSeen > this.idleMs) {
        this.destroy(new Error(`no request from the client for ${this.idleMs} ms`))
      }
    }, Math.max(100, Math.min(1000, idleMs / 4)))
    this.idleTimer.unref()
  }

  /** Serves a download from byte `from` (which acknowledges what came before); ends it after `holdMs`. Throws a SequenceError for an offset not kept. */
  attachDownload (res: ServerResponse, from: number, holdMs: number): void {
    if (this.ending && from === this.sent.end) {
      // All of it arrived: the orderly end, not a lost session.
      res.writeHead(410, { 'content-type': 'text/plain' }).end('the session has ended\n')
      return
    }
    const replay = this.sent.slice(from)
    this.sent.ack(from)
    this.seen()
    this.endDownload()
    res.writeHead(200, DOWNLOAD_HEADERS)
    res.flushHeaders()
    for (const chunk of replay) res.write(chunk)
    if (this.ending) { res.end(); return }
    this.download = res
    res.on('drain', this.checkRoom)
    res.once('close', () => {
      if (this.download === res) { this.download = undefined; clearTimeout(this.holdTimer) }
      this.seen()
    })
    this.holdTimer = setTimeout(() => this.endDownload(), holdMs)
    this.checkRoom()
  }

  /** Takes an upload at `seq`, acknowledging the download up to `ack`; resolves with how much of the client's stream the server has, once the reader has room. */
  async upload (seq: number, body: Buffer, ack: number): Promise<number> {
    this.seen()
    this.sent.ack(ack)
    this.checkRoom()
    const fresh = this.received.take(seq, body)
    if (fresh.length > 0 && !this.push(fresh)) await new Promise<void>(resolve => { this.readWaiter = resolve })
    this.seen()
    return this.received.next
  }

  private seen (): void {
    this.lastSeen = Date.now()
  }

  private endDownload (): void {
    clearTimeout(this.holdTimer)
    const d = this.download
    this.download = undefined
    d?.end()
  }

  private readonly checkRoom = (): void => {
    const w = this.pendingWrite
    if (w === undefined || this.sent.unacked >= DOWNLOAD_WINDOW_BYTES || this.download?.writableNeedDrain === true) return
    this.pendingWrite = undefined
    w()
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.sent.append(chunk)
    this.download?.write(chunk)
    this.pendingWrite = () => callback()
    this.checkRoom()
  }

  override _read (): void {
    const w = this.readWaiter
    this.readWaiter = undefined
    w?.()
  }

  override _final (callback: () => void): void {
    // The client gets what is left in its next download, then finds the session gone.
    this.ending = true
    this.endDownload()
    setTimeout(() => this.destroy(), LINGER_MS).unref()
    callback()
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    clearInterval(this.idleTimer)
    this.endDownload()
    this.readWaiter?.()
    callback(err)
  }
}
