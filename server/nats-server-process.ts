import { ReverselbError } from '../protocol/index.js'
import { execFile, spawn } from 'node:child_process'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Logger } from '../protocol/index.js'
import type { ChildProcess } from 'node:child_process'

export const NATS_SERVER_BINARY = 'nats-server'
export const NATS_INSTALL_HINT = 'install it with "apt-get install nats-server" (Debian/Ubuntu) or "apk add nats-server" (Alpine), ' +
  'or publish to an existing NATS server with --natsurl'

export const SETPRIV_HINT = 'install util-linux\'s setpriv ("apt-get install util-linux" on Debian/Ubuntu, "apk add setpriv" on Alpine)'
const SETPRIV_PREFIX = ['setpriv', '--pdeathsig', 'KILL', '--']
let setprivWorks = false

/**
 * The command prefix that makes nats-server die with this process, even when this process is
 * killed with SIGKILL and cannot stop it: util-linux's `setpriv --pdeathsig KILL` sets the
 * kernel's parent-death signal (prctl PR_SET_PDEATHSIG) and then execs nats-server, which keeps
 * setpriv's pid. Linux only; needs util-linux's setpriv (Debian: always there; Alpine: "apk add
 * setpriv" — BusyBox's setpriv applet has no --pdeathsig). Checked by running it (a success is
 * remembered); `missing` says why there is no prefix.
 */
export async function parentDeathPrefix (): Promise<{ prefix: string[], missing?: string }> {
  if (setprivWorks) return { prefix: SETPRIV_PREFIX }
  if (process.platform !== 'linux') return { prefix: [], missing: `no parent-death signal on ${process.platform}` }
  const [cmd, ...args] = SETPRIV_PREFIX
  return await new Promise(resolve => {
    execFile(cmd, [...args, process.execPath, '-e', ''], { timeout: 10_000 }, (err) => {
      setprivWorks = err === null
      resolve(setprivWorks
        ? { prefix: SETPRIV_PREFIX }
        : { prefix: [], missing: `"setpriv --pdeathsig" does not work here (${err?.message.split('\n')[0] ?? ''}): ${SETPRIV_HINT}` })
    })
  })
}

export interface NatsServerProcessOptions {
  port: number
  /** Address to bind; nats-server's default (0.0.0.0) when undefined. */
  host?: string
  /** PEM certificate and key the NATS port serves (the tunnel server's own). */
  cert: string
  key: string
  /** Token clients must present. */
  token: string
  log: Logger
  /** Restarts allowed within `restartWindowMs` before giving up. Default 5 in 60 s. */
  maxRestarts?: number
  restartWindowMs?: number
  /** Time allowed for nats-server to report "Server is ready". Default 10 s. */
  startTimeoutMs?: number
}

/**
 * Runs and supervises a `nats-server` binary from PATH: TLS with the given certificate, token
 * auth, nothing else. Its configuration (with the token) and the key live in a private temp dir
 * (mode 0700, files 0600) and are passed as a config file, so the token is never on a command line.
 * When it dies it is restarted with backoff, at most `maxRestarts` times per window. On Linux it
 * runs under `setpriv --pdeathsig KILL` (see parentDeathPrefix), so it does not outlive this
 * process even when this process is SIGKILLed.
 */
export class NatsServerProcess {
  private readonly opts: Required<Omit<NatsServerProcessOptions, 'host'>> & NatsServerProcessOptions
  private dir?: string
  private child?: ChildProcess
  private stopping = false
  private restarts: number[] = []
  private restartTimer?: NodeJS.Timeout
  private warned = false
  /** Called after a restart once the new nats-server is ready. */
  onRestart?: () => void
  /** Called when it died too often and is no longer restarted. */
  onGiveUp?: (reason: string) => void

  constructor (opts: NatsServerProcessOptions) {
    this.opts = { maxRestarts: 5, restartWindowMs: 60_000, startTimeoutMs: 10_000, ...opts }
  }

  /** The pid of the running nats-server, if one runs. */
  get pid (): number | undefined {
    const c = this.child
    return c !== undefined && c.exitCode === null && c.signalCode === null ? c.pid : undefined
  }

  async start (): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), 'reverselb-nats-'))
    await chmod(this.dir, 0o700)
    const certFile = join(this.dir, 'cert.pem')
    const keyFile = join(this.dir, 'key.pem')
    const confFile = join(this.dir, 'nats.conf')
    // nats-server's config syntax accepts JSON, so JSON.stringify does all the quoting.
    const conf = {
      port: this.opts.port,
      ...(this.opts.host !== undefined ? { host: this.opts.host } : {}),
      tls: { cert_file: certFile, key_file: keyFile, timeout: 5 },
      authorization: { token: this.opts.token },
      no_sys_acc: true,
      max_payload: 1048576
    }
    await writeFile(certFile, this.opts.cert, { mode: 0o600 })
    await writeFile(keyFile, this.opts.key, { mode: 0o600 })
    await writeFile(confFile, JSON.stringify(conf, null, 2) + '\n', { mode: 0o600 })
    try {
      await this.spawn()
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  private async spawn (): Promise<void> {
    const confFile = join(this.dir ?? '', 'nats.conf')
    const { prefix, missing } = await parentDeathPrefix()
    if (missing !== undefined && !this.warned) {
      this.warned = true
      this.opts.log.warn(`nats-server may outlive this process if it is killed with SIGKILL: ${missing}`)
    }
    const [cmd, ...args] = [...prefix, NATS_SERVER_BINARY, '-c', confFile]
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    this.child = child
    const tail: string[] = []
    let ready = false
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new ReverselbError('ERR_REVERSELB_LISTEN', `nats-server did not start within ${this.opts.startTimeoutMs} ms: ${tail.join(' | ')}`))
      }, this.opts.startTimeoutMs)
      let buffered = ''
      child.stderr?.setEncoding('utf8')
      child.stderr?.on('data', (chunk: string) => {
        buffered += chunk
        const lines = buffered.split('\n')
        buffered = lines.pop() ?? ''
        for (const line of lines) {
          const text = line.replace(/^\[\d+\] \S+ \S+ /, '')
          this.opts.log.debug(`nats-server: ${text}`)
          if (!ready) {
            tail.push(text)
            if (tail.length > 5) tail.shift()
          }
          if (!ready && text.includes('Server is ready')) {
            ready = true
            clearTimeout(timer)
            resolve()
          }
        }
      })
      const notOnPath = new ReverselbError('ERR_REVERSELB_LISTEN', `--natsport needs the nats-server binary, which is not on PATH: ${NATS_INSTALL_HINT}`)
      child.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer)
        reject(err.code === 'ENOENT' ? notOnPath : new ReverselbError('ERR_REVERSELB_LISTEN', `cannot run nats-server: ${err.message}`))
      })
      child.once('exit', (code, signal) => {
        if (ready) { this.onExit(child, code, signal); return }
        clearTimeout(timer)
        // 127: setpriv could not find the command it was to execute.
        reject(prefix.length > 0 && code === 127
          ? notOnPath
          : new ReverselbError('ERR_REVERSELB_LISTEN', `nats-server exited at start (${signal ?? `code ${String(code)}`}): ${tail.join(' | ')}`))
      })
    })
    this.opts.log.info(`NATS endpoint listening on tls://${this.opts.host ?? '0.0.0.0'}:${this.opts.port} (nats-server pid ${String(child.pid)})`)
  }

  private onExit (child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.stopping || child !== this.child) return
    const now = Date.now()
    this.restarts = this.restarts.filter(t => now - t < this.opts.restartWindowMs)
    if (this.restarts.length >= this.opts.maxRestarts) {
      const reason = `nats-server died ${this.restarts.length + 1} times within ${this.opts.restartWindowMs / 1000} s; not restarting it again`
      this.opts.log.error(reason)
      this.onGiveUp?.(reason)
      return
    }
    const delay = Math.min(200 * 2 ** this.restarts.length, 5000)
    this.restarts.push(now)
    this.opts.log.warn(`nats-server exited (${signal ?? `code ${String(code)}`}); restarting it in ${delay} ms`)
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined
      if (this.stopping) return
      this.spawn().then(() => this.onRestart?.(), (err: Error) => {
        this.opts.log.error(`nats-server restart failed: ${err.message}`)
        const failed = this.child
        if (failed !== undefined) this.onExit(failed, failed.exitCode, failed.signalCode)
      })
    }, delay)
  }

  /** Stops nats-server (TERM, then KILL after 3 s) and removes its private directory. */
  async stop (): Promise<void> {
    this.stopping = true
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer)
    const child = this.child
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
      await exited
      clearTimeout(timer)
    }
    if (this.dir !== undefined) await rm(this.dir, { recursive: true, force: true })
    this.dir = undefined
  }
}
