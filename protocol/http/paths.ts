/**
 * The HTTP transport: the same muxer over plain HTTP/1.1 requests any proxy passes, for where
 * WebSocket upgrades are refused (or CONNECT is). The server->client bytes come in long-lived
 * streaming GETs, the client->server bytes in bounded POSTs; each direction is one byte stream
 * whose byte offsets are the sequence numbers, so a cut GET resumes and a lost POST is retried
 * without losing or repeating a byte.
 */
export const HTTP_TUNNEL_PATHS = {
  /** POST: opens a session (authenticates as the WebSocket upgrade does); answers its id. */
  open: '/tunnel/http/open',
  /** GET ?from=OFFSET: the server's bytes from OFFSET on, streamed until the server ends the response. */
  down: '/tunnel/http/down',
  /** POST ?seq=OFFSET: the client's bytes at OFFSET. */
  up: '/tunnel/http/up',
  /** POST: the client is done with the session. */
  close: '/tunnel/http/close',
  /** GET: 204, nothing else; what a client sends first through a proxy to authenticate its connection with it. */
  probe: '/tunnel/http/probe'
} as const

export const HTTP_TUNNEL_HEADERS = {
  /** The session id: in a header, not the URL, so proxy access logs do not record it. */
  session: 'x-reverselb-session',
  /** The subprotocol (muxer, version, e2e), as the WebSocket upgrade's. */
  protocol: 'x-reverselb-protocol',
  /** On an upload: how much of the server's stream the client has (acknowledges the download). On its answer: how much of the client's the server has. */
  ack: 'x-reverselb-ack'
} as const

/** Largest upload body; a client splits what it sends into bodies of at most this. */
export const MAX_UPLOAD_BYTES = 1024 * 1024
/** Bytes the server sends ahead of the client's acknowledgement (what it keeps for a resumed download). */
export const DOWNLOAD_WINDOW_BYTES = 4 * 1024 * 1024
/** The client acknowledges the download at least every this many bytes. */
export const DOWNLOAD_ACK_EVERY = DOWNLOAD_WINDOW_BYTES / 4
/** How long the server holds one download open before ending it (the client re-opens it): under common proxy timeouts. */
export const DEFAULT_DOWNLOAD_HOLD_MS = 25_000
export const MIN_DOWNLOAD_HOLD_MS = 1_000
export const MAX_DOWNLOAD_HOLD_MS = 120_000

/** Answer headers of a download: no proxy may cache, transform or buffer it. */
export const DOWNLOAD_HEADERS = {
  'content-type': 'application/octet-stream',
  'cache-control': 'no-cache, no-store, no-transform',
  // nginx-style proxies stream instead of buffering the whole answer.
  'x-accel-buffering': 'no'
} as const
