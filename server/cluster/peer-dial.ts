import { createHash, timingSafeEqual } from 'node:crypto'
import { once } from 'node:events'
import { connect as tlsConnect } from 'node:tls'
import { isIP } from 'node:net'
import { MAX_WS_PAYLOAD, REFUSAL_HEADER, parseEndpoint, subprotocolFor, upgrade } from '../../protocol/index.js'
import type { WebSocketConnection } from '../../protocol/index.js'
import type { NodeRecord } from './membership.js'
import type { IncomingMessage } from 'node:http'

/** Where nodes of a cluster upgrade to their node-to-node link, on the API port. */
export const CLUSTER_PATH = '/cluster'
/** Header that names the dialing node. */
export const NODE_HEADER = 'x-reverselb-node'
export const PEER_SUBPROTOCOL = subprotocolFor('yamux')

/**
 * Opens the node-to-node WebSocket to `peer`: TLS first, and only once the peer's certificate is
 * the one it announced in the membership (its SHA-256 fingerprint) is the cluster secret sent.
 */
export async function dialPeer (peer: NodeRecord, self: string, secret: string, timeoutMs: number): Promise<WebSocketConnection> {
  const { host, port } = parseEndpoint(peer.api)
  const socket = tlsConnect({ host, port, rejectUnauthorized: false, ...(isIP(host) === 0 ? { servername: host } : {}) })
  socket.setNoDelay(true)
  const timer = setTimeout(() => socket.destroy(new Error(`no link to node ${peer.name} (${peer.api}) within ${timeoutMs} ms`)), timeoutMs)
  try {
    await once(socket, 'secureConnect')
    const fp = socket.getPeerCertificate().fingerprint256
    if (fp !== peer.fingerprint) {
      throw new Error(`node ${peer.name} at ${peer.api} presented certificate ${fp}, not the one it announced (${peer.fingerprint}); the cluster secret was not sent`)
    }
    const answer = await upgrade({
      socket,
      host: peer.api,
      path: CLUSTER_PATH,
      protocol: PEER_SUBPROTOCOL,
      headers: { authorization: `Bearer ${secret}`, [NODE_HEADER]: self },
      // TLS is pinned to the certificate the peer announced: masks buy nothing (see client/dial.ts).
      mask: 'zero',
      maxPayload: MAX_WS_PAYLOAD
    }).catch((err: Error) => { throw new Error(`node-to-node link to ${peer.name} at ${peer.api} failed: ${err.message}`) })
    if ('response' in answer) {
      const { response: res, request: req } = answer
      req.destroy()
      throw new Error(`node ${peer.name} at ${peer.api} refused the node-to-node link: HTTP ${res.statusCode ?? '?'} ${String(res.headers[REFUSAL_HEADER] ?? '')}`)
    }
    return answer.open
  } catch (err) {
    socket.destroy()
    throw err
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
