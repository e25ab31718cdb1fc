import { createHash, timingSafeEqual } from 'node:crypto'
import { connect as tlsConnect } from 'node:tls'
import { isIP } from 'node:net'
import { WebSocket } from 'ws'
import { MAX_WS_PAYLOAD, REFUSAL_HEADER, parseEndpoint, subprotocolFor } from '../../protocol/index.js'
import type { NodeRecord } from './membership.js'
import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'

/** Where nodes of a cluster upgrade to their node-to-node link, on the API port. */
export const CLUSTER_PATH = '/cluster'
/** Header that names the dialing node. */
export const NODE_HEADER = 'x-reverselb-node'
export const PEER_SUBPROTOCOL = subprotocolFor('yamux')

export interface DialedPeer {
  ws: WebSocket
  socket: TLSSocket
}

/**
 * Opens the node-to-node WebSocket to `peer`: TLS first, and only once the peer's certificate is
 * the one it announced in the membership (its SHA-256 fingerprint) is the cluster secret sent.
 */
export async function dialPeer (peer: NodeRecord, self: string, secret: string, timeoutMs: number): Promise<DialedPeer> {
  const { host, port } = parseEndpoint(peer.api)
  const socket = tlsConnect({ host, port, rejectUnauthorized: false, ...(isIP(host) === 0 ? { servername: host } : {}) })
  socket.setNoDelay(true)
  let timer: NodeJS.Timeout | undefined
  try {
    return await new Promise<DialedPeer>((resolve, reject) => {
      timer = setTimeout(() => { reject(new Error(`no link to node ${peer.name} (${peer.api}) within ${timeoutMs} ms`)); socket.destroy() }, timeoutMs)
      socket.once('error', reject)
      socket.once('secureConnect', () => {
        const fp = socket.getPeerCertificate().fingerprint256
        if (fp !== peer.fingerprint) {
          socket.destroy()
          reject(new Error(`node ${peer.name} at ${peer.api} presented certificate ${fp}, not the one it announced (${peer.fingerprint}); the cluster secret was not sent`))
          return
        }
        const ws = new WebSocket(`wss://${peer.api}${CLUSTER_PATH}`, PEER_SUBPROTOCOL, {
          createConnection: () => socket,
          headers: { authorization: `Bearer ${secret}`, [NODE_HEADER]: self },
          maxPayload: MAX_WS_PAYLOAD,
          perMessageDeflate: false,
          autoPong: false
        })
        ws.once('unexpected-response', (req, res) => {
          req.destroy()
          socket.destroy()
          reject(new Error(`node ${peer.name} at ${peer.api} refused the node-to-node link: HTTP ${res.statusCode ?? '?'} ${String(res.headers[REFUSAL_HEADER] ?? '')}`))
        })
        ws.once('error', (err) => reject(new Error(`node-to-node link to ${peer.name} at ${peer.api} failed: ${err.message}`)))
        ws.once('open', () => resolve({ ws, socket }))
      })
    })
  } finally {
    clearTimeout(timer)
  }
}

/** Whether an upgrade carries the cluster secret (compared in constant time). */
export function peerAuthorized (req: IncomingMessage, secret: string): boolean {
  const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')
  if (m === null) return false
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest()
  return timingSafeEqual(digest(m[1]), digest(secret))
}
