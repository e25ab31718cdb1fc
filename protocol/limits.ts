/** Largest control message (registration, stream header, ack) either side accepts. */
export const MAX_CONTROL_MESSAGE_BYTES = 16 * 1024
export const MAX_NAME_LENGTH = 128
export const MAX_HOST_LENGTH = 253
export const MAX_TARGET_ADDRESSES = 64
export const MAX_BACKEND_ACCEPT_BACKLOG = 64
/** Largest WebSocket message accepted; muxer frames are far smaller. */
export const MAX_WS_PAYLOAD = 4 * 1024 * 1024
