import { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  DOWNLOAD_ACK_EVERY, HTTP_TUNNEL_HEADERS, HTTP_TUNNEL_PATHS, MAX_UPLOAD_BYTES, REFUSAL_HEADER, ReplayBuffer
} from '../protocol/index.js'
import { send, smallBody } from './http-route.js'
import type { HttpRoute } from './http-route.js'
import type { Logger } from '../protocol/index.js'
import type { ClientRequest, IncomingMessage } from 'node:http'

export interface HttpCarrierOptions {
  route: HttpRoute
  session: string
  /** How long the server holds each download open (the client re-opens it right after). */
  holdMs: number
  /** Time allowed for each request's answer. */
  timeoutMs: number
  /** Requests failing for this long, none succeeding, end the session (the server is gone). */
  deadMs: number
  /** For messages: the server, and the route. */
  where: string
  log: Logger
}

/** Bytes written and not yet acknowledged by the server above which writes wait. */
const UPLOAD_HIGH_WATER = 2 * MAX_UPLOAD_BYTES
const RETRY_MIN_MS = 100
const RETRY_MAX_MS = 2_000

/** A request that got an answer which no retry will change: the session is over. */
class SessionOver extends Error {}

/**
 * The client's end of one HTTP-transport session as a byte stream (protocol/http/paths.ts): what
 * the server sends comes in a download that is re-opened from the byte reached whenever it ends
 * or is cut; what is written goes out in uploads of at most MAX_UPLOAD_BYTES, one at a time, in
 * order, each retried until acknowledged and kept until then. Both directions feel backpressure:
 * a full reader pauses the download, a slow server holds writes back.
 */
export class HttpCarrier extends Duplex {
  /** Bytes of the server's stream received: where the next download starts. */
  private down = 0
  /** The download offset last acknowledged to the server. */
  private downAcked = 0
  private readonly up = new ReplayBuffer()
  private uploading = false
  private writeWaiter: (() => void) | undefined
  private finalWaiter: (() => void) | undefined
  private download: IncomingMessage | undefined
  private readonly requests = new Set<ClientRequest>()
  private lastSuccess = Date.now()

  constructor (private readonly opts: HttpCarrierOptions) {
    super({ allowHalfOpen: false })
    void this.downloadLoop()
  }

  private get sessionHeaders (): Record<string, string> {
    return { [HTTP_TUNNEL_HEADERS.session]: this.opts.session }
  }

  /** Waits before a retry, or ends the session when nothing has succeeded for deadMs. */
  private async failed (what: string, err: Error, attempt: number): Promise<void> {
    if (err instanceof SessionOver || Date.now() - this.lastSuccess > this.opts.deadMs) {
      this.destroy(new Error(`HTTP transport to ${this.opts.where}: ${what} failed: ${err.message}`))
      return
    }
    this.opts.log.debug(`HTTP transport to ${this.opts.where}: ${what} failed (${err.message}); retrying`)
    await sleep(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** attempt))
  }

  /** Why an answer other than `ok` ends or fails a request. */
  private async refusal (res: IncomingMessage, what: string): Promise<Error> {
    const reason = res.headers[REFUSAL_HEADER]
    const text = typeof reason === 'string' ? reason : await smallBody(res)
    const err = new Error(`${what} answered HTTP ${res.statusCode ?? '?'}${text !== '' ? `: ${text.slice(0, 200)}` : ''}`)
    res.resume()
    // The server no longer has the session, or refuses its sequence numbers: no retry fixes that.
    // (409, an upload still being taken, passes: that one was given up here, the retry is a replay.)
    return [404, 411, 413, 416].includes(res.statusCode ?? 0) ? new SessionOver(err.message) : err
  }

  private async downloadLoop (): Promise<void> {
    let attempt = 0
    while (!this.destroyed) {
      try {
        const res = await send(this.opts.route, {
          method: 'GET',
          path: `${HTTP_TUNNEL_PATHS.down}?from=${this.down}&hold=${this.opts.holdMs}`,
          headers: this.sessionHeaders,
          timeoutMs: this.opts.timeoutMs
        }, this.requests)
        if (res.statusCode === 410) { res.resume(); this.push(null); return }
        if (res.statusCode !== 200) throw await this.refusal(res, 'download')
        this.lastSuccess = Date.now()
        attempt = 0
        await this.receive(res)
      } catch (err) {
        if (this.destroyed) return
        await this.failed('download', err as Error, attempt++)
      }
    }
  }

  /** Takes one download's bytes until it ends or is cut (either way the next one resumes from this.down). */
  private async receive (res: IncomingMessage): Promise<void> {
    this.download = res
    // The server ends each download after holdMs; one silent much longer than that is dead on the way.
    let watchdog: NodeJS.Timeout | undefined
    const watch = (): void => {
      clearTimeout(watchdog)
      watchdog = setTimeout(() => res.destroy(new Error('download stalled')), this.opts.holdMs + this.opts.timeoutMs)
    }
    watch()
    try {
      await new Promise<void>(resolve => {
        res.on('data', (chunk: Buffer) => {
          this.down += chunk.length
          if (this.down - this.downAcked >= DOWNLOAD_ACK_EVERY) this.pump()
          if (!this.push(chunk)) { res.pause(); clearTimeout(watchdog) } else watch()
        })
        res.once('close', resolve)
        res.once('error', () => {})
      })
    } finally {
      clearTimeout(watchdog)
      this.download = undefined
    }
  }

  override _read (): void {
    const d = this.download
    if (d?.isPaused() === true) d.resume()
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.up.append(chunk)
    this.pump()
    if (this.up.unacked < UPLOAD_HIGH_WATER) callback(); else this.writeWaiter = () => callback()
  }

  override _final (callback: (err?: Error | null) => void): void {
    this.finalWaiter = () => {
      // Best effort: the server ends the session by itself when it hears no more.
      send(this.opts.route, { method: 'POST', path: HTTP_TUNNEL_PATHS.close, headers: this.sessionHeaders, timeoutMs: this.opts.timeoutMs }, this.requests)
        .then(res => res.resume(), () => {})
        .finally(() => callback())
    }
    this.pump()
  }

  /** Sends the next upload unless one is under way: the bytes not yet acknowledged, or an acknowledgement of the download. */
  private pump (): void {
    if (this.uploading || this.destroyed) return
    if (this.up.unacked === 0 && this.down - this.downAcked < DOWNLOAD_ACK_EVERY) {
      const f = this.finalWaiter
      this.finalWaiter = undefined
      f?.()
      return
    }
    this.uploading = true
    this.uploadLoop().finally(() => {
      this.uploading = false
      if (!this.destroyed) this.pump()
    }).catch(() => {})
  }

  /** One upload, retried (the same bytes at the same offset) until the server has it. */
  private async uploadLoop (): Promise<void> {
    const seq = this.up.base
    const body = Buffer.concat(this.up.slice(seq, MAX_UPLOAD_BYTES))
    for (let attempt = 0; !this.destroyed; attempt++) {
      const ack = this.down
      try {
        const res = await send(this.opts.route, {
          method: 'POST',
          path: `${HTTP_TUNNEL_PATHS.up}?seq=${seq}`,
          headers: { ...this.sessionHeaders, [HTTP_TUNNEL_HEADERS.ack]: String(ack) },
          body,
          // The answer waits until the server's reader has room: backpressure, not a failure.
          timeoutMs: this.opts.deadMs
        }, this.requests)
        if (res.statusCode !== 200) throw await this.refusal(res, 'upload')
        res.resume()
        const next = Number(res.headers[HTTP_TUNNEL_HEADERS.ack])
        if (!Number.isSafeInteger(next) || next < seq + body.length || next > this.up.end) throw new SessionOver(`the server acknowledged byte ${String(next)} of an upload ending at ${seq + body.length}`)
        this.up.ack(next)
        this.downAcked = Math.max(this.downAcked, ack)
        this.lastSuccess = Date.now()
        if (this.up.unacked < UPLOAD_HIGH_WATER) {
          const w = this.writeWaiter
          this.writeWaiter = undefined
          w?.()
        }
        return
      } catch (err) {
        if (this.destroyed) return
        await this.failed('upload', err as Error, attempt)
      }
    }
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    for (const r of this.requests) r.destroy()
    this.opts.route.agent.destroy()
    callback(err)
  }
}
