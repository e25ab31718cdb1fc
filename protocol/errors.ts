/**
 * Every error reverselb throws on purpose carries one of these codes: stable for programs (test
 * `err.code`, never the message), described for people in docs/library.md, whose table a unit test
 * compares with this list.
 */
export const ERROR_CODES = {
  ERR_REVERSELB_INVALID_OPTION: 'an option (or a file it names: tokens, certificate) is invalid; nothing was started',
  ERR_REVERSELB_NOT_LISTENING: 'the server is asked for its address before listen() resolved or after close()',
  ERR_REVERSELB_LISTEN: 'a side endpoint (HTTP API, NATS) could not start, or the cluster could not be joined',
  ERR_REVERSELB_CLIENT_CLOSED: 'ready() was pending when the client was closed',
  ERR_REVERSELB_SERVICE_EXISTS: 'addService: the client already carries a service of that name',
  ERR_REVERSELB_SERVICE_UNKNOWN: 'removeService/updateService: the client carries no service of that name (or it was removed before it registered)',
  ERR_REVERSELB_SERVICE_INVALID: 'a service the client was given is invalid (name, backends, port); nothing changed',
  ERR_REVERSELB_CONFIG: '(CLI) a --config file is unreadable or invalid: file, line and key named; exit code 2',
  ERR_REVERSELB_AUTHORIZATION: 'the server refused the token (permanent)',
  ERR_REVERSELB_TLS_VERIFICATION: "the server's certificate is not trusted or not the pinned one (permanent)",
  ERR_REVERSELB_UPGRADE_REFUSED: 'the server refused the WebSocket upgrade (version, path; permanent)',
  ERR_REVERSELB_UPGRADE_BLOCKED: 'something between client and server stripped, refused or held back the WebSocket upgrade',
  ERR_REVERSELB_REGISTRATION_REFUSED: 'the server refused the registration: port taken, service not allowed... (permanent)',
  ERR_REVERSELB_PROXY: 'the proxy could not be reached or did not open the tunnel (retried)',
  ERR_REVERSELB_PROXY_AUTH: 'the proxy answered 407: missing or wrong credentials (permanent)',
  ERR_REVERSELB_PROXY_REFUSED: 'the proxy refused the CONNECT by policy (permanent)',
  ERR_REVERSELB_PROXY_CLOSED: 'the proxy closed the connection before its answer was complete',
  ERR_REVERSELB_PAC: 'the PAC file could not be fetched or its script failed (retried)',
  ERR_REVERSELB_NEGOTIATE_UNAVAILABLE: 'Kerberos cannot produce a token for this proxy (no module, no ticket...)',
  ERR_REVERSELB_PROTOCOL: 'a tunnel message was malformed',
  ERR_REVERSELB_WEBSOCKET: 'the WebSocket peer broke RFC 6455 (a bad frame, a text message, a message too large): the connection is closed with 1002, 1003 or 1009',
  ERR_REVERSELB_REGISTRATION: '(server side) a registration could not be accepted; the client sees it as ERR_REVERSELB_REGISTRATION_REFUSED',
  ERR_REVERSELB_BACKEND_DIAL: '(server side) a client refused a stream: its backend could not be dialled',
  ERR_REVERSELB_HTTP_TUNNEL_SEQUENCE: 'an HTTP-transport byte offset does not fit what the other side has',
  ERR_REVERSELB_MUX_VERSION: 'muxer: unknown frame version (the connection is closed)',
  ERR_REVERSELB_MUX_FRAME_TYPE: 'muxer: unknown frame type',
  ERR_REVERSELB_MUX_FLAGS: 'muxer: flags invalid for the frame',
  ERR_REVERSELB_MUX_STREAM_ID: 'muxer: stream id invalid or reused',
  ERR_REVERSELB_MUX_WINDOW_EXCEEDED: 'muxer: the peer sent more than the receive window',
  ERR_REVERSELB_MUX_WINDOW_OVERFLOW: 'muxer: a window update overflowed',
  ERR_REVERSELB_MUX_FRAME_TOO_LARGE: 'muxer: a frame larger than allowed',
  ERR_REVERSELB_MUX_TOO_MANY_REFUSED: 'muxer: the peer kept opening streams past the limit',
  ERR_REVERSELB_MUX_GOAWAY: 'muxer: the peer ended the session',
  ERR_REVERSELB_MUX_CLOSED: 'muxer: a stream was opened on a closed connection',
  ERR_REVERSELB_MUX_IDS_EXHAUSTED: 'muxer: no stream id is left on this connection',
  ERR_REVERSELB_STREAM_WRITE_AFTER_END: 'a muxed stream was written after end()',
  ERR_REVERSELB_STREAM_RESET: 'the stream was reset by this side',
  ERR_REVERSELB_STREAM_RESET_BY_PEER: 'the stream was reset by the peer',
  ERR_REVERSELB_TUNNEL_LOST: 'the tunnel connection carrying the stream was lost'
} as const

export type ErrorCode = keyof typeof ERROR_CODES

/** The base of reverselb's errors: `code` is stable, the message is for people. */
export class ReverselbError extends Error {
  override name = 'ReverselbError'
  readonly code: ErrorCode
  constructor (code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
  }
}

/** A bad option (or a file an option names): thrown by constructors and listen() before anything starts. */
export class InvalidOptionError extends ReverselbError {
  override name = 'InvalidOptionError'
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_REVERSELB_INVALID_OPTION', message, options)
  }
}
