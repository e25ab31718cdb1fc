import { InvalidOptionError, MAX_CONTROL_MESSAGE_BYTES } from '../protocol/index.js'

/** What the operator allows; every field has a safe default (documented in docs/cli.md and docs/deploy.md). */
export interface Limits {
  /** Explicit frontend ports clients may ask for (the dynamic pool is always allowed). Default 1024-65535. */
  allowedPorts: string
  /** Distinct services one client address may register. Default 64. */
  maxServicesPerAddress: number
  /** Tunnel connections (sessions) one client address may hold. Default 256. */
  maxSessionsPerAddress: number
  /** Concurrent frontend connections relayed through one session. Default 10,000. */
  maxStreamsPerSession: number
  /** Concurrent frontend connections of one service. Default 20,000. */
  maxStreamsPerService: number
  /** Largest registration or stream header accepted. Default 16 KiB. */
  maxControlMessageBytes: number
  /** Close a frontend connection idle (no bytes either way) this long; 0 = never. Default 0. */
  idleTimeoutMs: number
  /**
   * Connections one client address may hold open on the HTTP API port, and on the tunnel port
   * besides its maxSessionsPerAddress sessions (TLS and upgrades in progress). Default 128.
   */
  maxConnectionsPerAddress: number
  /** Failed authorizations one address may make per window before it is refused outright. Default 10 per 60 s. */
  authFailuresPerWindow: number
  authFailureWindowMs: number
  /**
   * Bytes queued toward one tunnel client above which the server stops reading from it (what it
   * sends the client is mostly answers to what the client sends). Default 4 MiB.
   */
  maxQueuedBytes: number
  /** Streams a client may try to open (it may open only its registration stream) before it is disconnected. Default 8. */
  maxRefusedStreams: number
  /**
   * How long a service's frontend port stays reserved for it after its last session left, so a
   * client that reconnects finds it free (no other service may take it meanwhile). Default 120 s.
   */
  portGraceMs: number
}

export const DEFAULT_LIMITS: Limits = {
  allowedPorts: '1024-65535',
  maxServicesPerAddress: 64,
  maxSessionsPerAddress: 256,
  maxStreamsPerSession: 10_000,
  maxStreamsPerService: 20_000,
  maxConnectionsPerAddress: 128,
  maxControlMessageBytes: MAX_CONTROL_MESSAGE_BYTES,
  idleTimeoutMs: 0,
  authFailuresPerWindow: 10,
  authFailureWindowMs: 60_000,
  maxQueuedBytes: 4 * 1024 * 1024,
  maxRefusedStreams: 8,
  portGraceMs: 120_000
}

/** Throws a clear error for limits that would silently disable a protection (NaN, negative). */
export function checkLimits (l: Limits): void {
  if (!(l.portGraceMs >= 0)) throw new InvalidOptionError(`limits.portGraceMs must be 0 or more, got ${String(l.portGraceMs)}`)
  if (!Number.isInteger(l.maxConnectionsPerAddress) || l.maxConnectionsPerAddress < 1) {
    throw new InvalidOptionError(`limits.maxConnectionsPerAddress must be a whole number above 0, got ${String(l.maxConnectionsPerAddress)}`)
  }
}
