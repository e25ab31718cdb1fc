/** Wire protocol version; bumped on any incompatible change to messages or framing. */
export const PROTOCOL_VERSION = 1

export const MUXERS = ['yamux', 'mplex'] as const
export type MuxerName = typeof MUXERS[number]

const PREFIX = 'reverselb.v'

/**
 * Suffix of the subprotocol of a client that runs the end-to-end layer (inner TLS, token inside
 * it) in the WebSocket. A server of an older release does not know it and refuses the upgrade, so
 * a client asks for it only when it wants the layer; without it everything is as before.
 */
const E2E_SUFFIX = '.e2e'

/** WebSocket subprotocol offered by the client, e.g. `reverselb.v1.yamux` or `reverselb.v1.yamux.e2e`. */
export function subprotocolFor (muxer: MuxerName, version = PROTOCOL_VERSION, e2e = false): string {
  return `${PREFIX}${version}.${muxer}${e2e ? E2E_SUFFIX : ''}`
}

export type ParsedSubprotocol =
  | { ok: true, version: number, muxer: MuxerName, e2e: boolean }
  | { ok: false, reason: string }

/** Parses what a client offered; explains any refusal in words a user can act on. */
export function parseSubprotocol (offered: string | undefined): ParsedSubprotocol {
  if (offered === undefined || offered === '') {
    return { ok: false, reason: `no reverselb subprotocol offered; expected ${subprotocolFor('yamux')} or ${subprotocolFor('mplex')}` }
  }
  const m = /^reverselb\.v(\d{1,6})\.([a-z0-9]{1,16})(\.e2e)?$/.exec(offered.trim())
  if (m === null) return { ok: false, reason: `unrecognised subprotocol "${offered.slice(0, 64)}"` }
  const version = Number(m[1])
  if (version !== PROTOCOL_VERSION) {
    return { ok: false, reason: `unsupported protocol version v${version}: this server speaks v${PROTOCOL_VERSION}; upgrade the older side` }
  }
  const muxer = m[2] as MuxerName
  if (!MUXERS.includes(muxer)) return { ok: false, reason: `unsupported muxer "${m[2]}"; use one of ${MUXERS.join(', ')}` }
  return { ok: true, version, muxer, e2e: m[3] !== undefined }
}

/** Response header the server sets on a refused upgrade, so clients can print the reason. */
export const REFUSAL_HEADER = 'x-reverselb-error'
/** Path of the tunnel endpoint on the API port. */
export const TUNNEL_PATH = '/tunnel'
