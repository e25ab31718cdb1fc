/** Why a muxed connection was closed as broken; `code` is stable for programs, the message for people. */
export type MuxErrorCode =
  | 'ERR_MUX_VERSION'
  | 'ERR_MUX_FRAME_TYPE'
  | 'ERR_MUX_FLAGS'
  | 'ERR_MUX_STREAM_ID'
  | 'ERR_MUX_WINDOW_EXCEEDED'
  | 'ERR_MUX_WINDOW_OVERFLOW'
  | 'ERR_MUX_FRAME_TOO_LARGE'
  | 'ERR_MUX_TOO_MANY_REFUSED'
  | 'ERR_MUX_GOAWAY'

export class MuxProtocolError extends Error {
  override name = 'MuxProtocolError'
  readonly code: MuxErrorCode
  constructor (code: MuxErrorCode, message: string) {
    super(message)
    this.code = code
  }
}

/** The stream was reset, by the peer or by us; `code` says which. */
export class StreamResetError extends Error {
  override name = 'StreamResetError'
  readonly code: 'ERR_STREAM_RESET_BY_PEER' | 'ERR_STREAM_RESET' | 'ERR_TUNNEL_LOST'
  constructor (code: StreamResetError['code'], message: string) {
    super(message)
    this.code = code
  }
}

export const resetByPeer = (): StreamResetError => new StreamResetError('ERR_STREAM_RESET_BY_PEER', 'stream reset by the peer')
export const tunnelLost = (): StreamResetError => new StreamResetError('ERR_TUNNEL_LOST', 'tunnel connection lost')
