import { ReverselbError } from '../errors.js'
import type { ErrorCode } from '../errors.js'

/** Why a muxed connection was closed as broken; `code` is stable for programs, the message for people. */
export type MuxErrorCode = Extract<ErrorCode, `ERR_REVERSELB_MUX_${string}`>

export class MuxProtocolError extends ReverselbError {
  override name = 'MuxProtocolError'
  declare readonly code: MuxErrorCode
  constructor (code: MuxErrorCode, message: string) {
    super(code, message)
  }
}

/** The stream was reset, by the peer or by us; `code` says which. */
export class StreamResetError extends ReverselbError {
  override name = 'StreamResetError'
  declare readonly code: 'ERR_REVERSELB_STREAM_RESET_BY_PEER' | 'ERR_REVERSELB_STREAM_RESET' | 'ERR_REVERSELB_TUNNEL_LOST'
  constructor (code: StreamResetError['code'], message: string) {
    super(code, message)
  }
}

export const resetByPeer = (): StreamResetError => new StreamResetError('ERR_REVERSELB_STREAM_RESET_BY_PEER', 'stream reset by the peer')
export const tunnelLost = (): StreamResetError => new StreamResetError('ERR_REVERSELB_TUNNEL_LOST', 'tunnel connection lost')
