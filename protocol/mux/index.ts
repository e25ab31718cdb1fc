import { MplexSession } from './mplex.js'
import { DEFAULT_MUX_OPTIONS } from './session.js'
import { YamuxSession } from './yamux.js'
import type { MuxerName } from '../version.js'
import type { MuxSession, MuxSessionOptions } from './session.js'
import type { MuxTransport } from './transport.js'

export { MuxSession, DEFAULT_MUX_OPTIONS } from './session.js'
export type { MuxSessionOptions } from './session.js'
export { MuxStream } from './stream.js'
export type { StreamHandlers } from './stream.js'
export type { MuxTransport, MuxSink } from './transport.js'
export { MuxProtocolError, StreamResetError } from './errors.js'
export { YamuxSession } from './yamux.js'
export { MplexSession } from './mplex.js'

/** A muxer session of the negotiated kind on `transport`; unset options take DEFAULT_MUX_OPTIONS. */
export function createMuxSession (name: MuxerName, transport: MuxTransport, opts: Partial<MuxSessionOptions> & Pick<MuxSessionOptions, 'client' | 'accept'>): MuxSession {
  const full: MuxSessionOptions = {
    ...DEFAULT_MUX_OPTIONS,
    onProtocolError: () => {},
    onStreamOverflow: () => {},
    ...opts
  }
  return name === 'mplex' ? new MplexSession(transport, full) : new YamuxSession(transport, full)
}
