import { MAX_WS_PAYLOAD, acceptHandshake, handshakeProblem, parseSubprotocol, refuseHandshake } from '../protocol/index.js'
import type { WebSocketConnection } from '../protocol/index.js'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'

/**
 * Completes a WebSocket upgrade the gate let through (tunnel clients, cluster peers): a request
 * that is no valid handshake is answered 400/405 and closed; else the 101 names the first offered
 * subprotocol we speak, and the connection is returned.
 */
export function completeUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): WebSocketConnection | undefined {
  const problem = handshakeProblem(req)
  if (problem !== undefined) { refuseHandshake(socket, problem); return undefined }
  const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map(p => p.trim())
  return acceptHandshake(req, socket, head, offered.find(p => parseSubprotocol(p).ok), MAX_WS_PAYLOAD)
}
