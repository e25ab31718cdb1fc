import { EventEmitter } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { REFUSAL_HEADER, openLink } from '../../protocol/index.js'
import { NODE_HEADER, dialPeer, peerAuthorized } from './peer-dial.js'
import { completeUpgrade } from '../websocket-upgrade.js'
import type { Link, Logger, MuxSession, MuxStream } from '../../protocol/index.js'
import type { NodeRecord } from './membership.js'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'

export interface PeerLinksOptions {
  self: string
  secret: string
  keepaliveMs: number
  maxQueuedBytes: number
  dialTimeoutMs: number
  log: Logger
  /** A stream another node opened on its link to us: a connection it forwards. */
  onForwarded: (stream: MuxStream, from: string) => void
}

export interface PeerLinksEvents {
  /** A link to this node is open: forwarding to its sessions works. */
  up: [string, MuxSession]
  down: [string]
}

/**
 * The node-to-node links: this node dials every other node (the tunnel's WSS and yamux, TLS
 * pinned to the certificate the peer announced, the cluster secret in the upgrade) and opens a
 * stream on that link for each connection it forwards there; links dialed by the others carry
 * theirs to us. A lost link is dialed again for as long as its node is a member.
 */
export class PeerLinks extends EventEmitter<PeerLinksEvents> {
  private readonly wanted = new Map<string, NodeRecord>()
  private readonly open = new Map<string, Link>()
  private readonly inbound = new Set<Link>()
  private closed = false

  constructor (private readonly opts: PeerLinksOptions) {
    super()
  }

  mux (node: string): MuxSession | undefined {
    return this.open.get(node)?.mux
  }

  /** Keeps a link to `node` until disconnect() (or a record with another start time replaces it). */
  connect (node: NodeRecord): void {
    if (this.closed) return
    const known = this.wanted.get(node.name)
    this.wanted.set(node.name, node)
    if (known === undefined) void this.keep(node.name)
  }

  disconnect (name: string): void {
    this.wanted.delete(name)
    this.open.get(name)?.close(1001)
  }

  private async keep (name: string): Promise<void> {
    let delay = 100
    for (let node = this.wanted.get(name); node !== undefined && !this.closed; node = this.wanted.get(name)) {
      try {
        const ws = await dialPeer(node, this.opts.self, this.opts.secret, this.opts.dialTimeoutMs)
        if (this.wanted.get(name) === undefined || this.closed) { ws.terminate(); break }
        const link = openLink(ws, {
          side: 'client',
          muxer: 'yamux',
          keepaliveMs: this.opts.keepaliveMs,
          maxQueuedBytes: this.opts.maxQueuedBytes,
          accept: () => false,
          onDead: () => this.opts.log.warn(`cluster: node ${name} stopped answering on its link; cutting it`),
          onProtocolError: (err) => this.opts.log.warn(`cluster: link to node ${name} broke the protocol: ${err.message}`),
          onStreamOverflow: () => {}
        })
        ws.on('error', (err) => this.opts.log.debug(`cluster: link to ${name}: ${err.message}`))
        this.open.set(name, link)
        delay = 100
        this.opts.log.info(`cluster: link to node ${name} (${node.api}) open`)
        this.emit('up', name, link.mux)
        await link.closed
        this.open.delete(name)
        this.emit('down', name)
        if (!this.closed && this.wanted.has(name)) this.opts.log.warn(`cluster: link to node ${name} lost; dialing it again`)
      } catch (err) {
        if (!this.closed && this.wanted.has(name)) this.opts.log.warn(`cluster: ${(err as Error).message}`)
      }
      await sleep(delay)
      delay = Math.min(2000, delay * 2)
    }
  }

  /** An upgrade at the cluster path: another node's link, if it knows the secret. */
  accept (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const from = `${String(req.headers[NODE_HEADER] ?? '?').slice(0, 64)} (${req.socket.remoteAddress ?? '?'})`
    if (this.closed || !peerAuthorized(req, this.opts.secret)) {
      this.opts.log.warn(`cluster: refused a node-to-node link from ${from}: wrong or missing cluster secret`)
      const reason = 'wrong or missing cluster secret'
      socket.end(`HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n${REFUSAL_HEADER}: ${reason}\r\nContent-Length: 0\r\n\r\n`)
      return
    }
    const ws = completeUpgrade(req, socket, head)
    if (ws === undefined) return
    ws.on('error', (err) => this.opts.log.debug(`cluster: link from ${from}: ${err.message}`))
    const link = openLink(ws, {
      side: 'server',
      muxer: 'yamux',
      keepaliveMs: this.opts.keepaliveMs,
      maxQueuedBytes: this.opts.maxQueuedBytes,
      accept: (stream) => { this.opts.onForwarded(stream, from); return true },
      onDead: () => this.opts.log.warn(`cluster: node ${from} stopped answering on its link; cutting it`),
      onProtocolError: (err) => this.opts.log.warn(`cluster: link from node ${from} broke the protocol: ${err.message}`),
      onStreamOverflow: () => {}
    })
    this.inbound.add(link)
    void link.closed.then(() => this.inbound.delete(link))
  }

  close (): void {
    this.closed = true
    this.wanted.clear()
    for (const link of [...this.open.values(), ...this.inbound]) link.close(1001)
  }
}
