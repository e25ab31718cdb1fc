import { createHash, randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { WebSocketConnection } from './connection.js'
import type { MaskMode } from './frame-header.js'
import type { ClientRequest, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
const KEY = /^[+/0-9A-Za-z]{22}==$/

/** The Sec-WebSocket-Accept answering `key` (RFC 6455 4.2.2). */
export function acceptKey (key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64')
}

/** Why an upgrade request is not a WebSocket handshake we take: the HTTP status and its message. */
export interface HandshakeRefusal {
  status: number
  text: string
  message: string
  headers?: Record<string, string>
}

/** Checks the request's WebSocket fields, with the answers `ws` gave before us. */
export function handshakeProblem (req: IncomingMessage): HandshakeRefusal | undefined {
  if (req.method !== 'GET') return { status: 405, text: 'Method Not Allowed', message: 'Invalid HTTP method' }
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') return { status: 400, text: 'Bad Request', message: 'Invalid Upgrade header' }
  const key = req.headers['sec-websocket-key']
  if (key === undefined || !KEY.test(key)) return { status: 400, text: 'Bad Request', message: 'Missing or invalid Sec-WebSocket-Key header' }
  const version = req.headers['sec-websocket-version']
  if (version !== '13' && version !== '8') {
    return { status: 400, text: 'Bad Request', message: 'Missing or invalid Sec-WebSocket-Version header', headers: { 'Sec-WebSocket-Version': '13, 8' } }
  }
  return undefined
}

/** Answers a refused handshake on the raw socket and closes it. */
export function refuseHandshake (socket: Duplex, { status, text, message, headers = {} }: HandshakeRefusal): void {
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\n${extra}` +
    `Content-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`)
}

/**
 * Completes a server-side upgrade that passed handshakeProblem(): writes the 101 with `protocol`
 * (none when undefined) and returns the open connection, or undefined when the socket is gone.
 */
export function acceptHandshake (req: IncomingMessage, socket: Duplex, head: Buffer, protocol: string | undefined, maxPayload: number): WebSocketConnection | undefined {
  if (!socket.readable || !socket.writable) { socket.destroy(); return undefined }
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${acceptKey(req.headers['sec-websocket-key'] ?? '')}\r\n` +
    (protocol !== undefined ? `Sec-WebSocket-Protocol: ${protocol}\r\n` : '') + '\r\n')
  return new WebSocketConnection(socket, { side: 'server', protocol: protocol ?? '', head, maxPayload })
}

export interface UpgradeRequest {
  /** An open socket (TLS done) to the server. */
  socket: Duplex
  /** host[:port] for the Host header. */
  host: string
  path: string
  protocol: string
  headers: Record<string, string>
  mask: Exclude<MaskMode, 'none'>
  maxPayload: number
}

/** How the server answered an upgrade: open, or an HTTP response instead of 101. */
export type UpgradeAnswer =
  | { open: WebSocketConnection }
  | { response: IncomingMessage, request: ClientRequest }

/**
 * The client's side of the handshake over Node's HTTP client. Rejects when the request fails
 * or the 101 is not a valid answer (no Upgrade header, wrong accept key);
 * `started` gets the request, to abort it (destroy) on a timeout.
 */
export async function upgrade (opts: UpgradeRequest, started?: (req: ClientRequest) => void): Promise<UpgradeAnswer> {
  const key = randomBytes(16).toString('base64')
  const req = request({
    createConnection: () => opts.socket,
    path: opts.path,
    headers: {
      ...opts.headers,
      host: opts.host,
      connection: 'Upgrade',
      upgrade: 'websocket',
      'sec-websocket-version': '13',
      'sec-websocket-key': key,
      'sec-websocket-protocol': opts.protocol
    }
  })
  started?.(req)
  return await new Promise<UpgradeAnswer>((resolve, reject) => {
    req.once('error', reject)
    req.once('response', (response) => resolve({ response, request: req }))
    req.once('upgrade', (res: IncomingMessage, socket: Duplex, head: Buffer) => {
      const fail = (message: string): void => { socket.destroy(); reject(new Error(message)) }
      if (res.headers.upgrade?.toLowerCase() !== 'websocket') { fail('Invalid Upgrade header'); return }
      if (res.headers['sec-websocket-accept'] !== acceptKey(key)) { fail('Invalid Sec-WebSocket-Accept header'); return }
      // The caller checks the subprotocol: its refusal says what the server chose.
      const protocol = res.headers['sec-websocket-protocol'] ?? ''
      resolve({ open: new WebSocketConnection(socket, { side: 'client', mask: opts.mask, protocol, head, maxPayload: opts.maxPayload }) })
    })
    req.end()
  })
}
