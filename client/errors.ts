import { ReverselbError } from '../protocol/index.js'

/** The server refused our token (HTTP 401 at the upgrade). */
export class AuthorizationError extends ReverselbError {
  override name = 'AuthorizationError'
  constructor (message: string) { super('ERR_REVERSELB_AUTHORIZATION', message) }
}

/** The server's certificate could not be trusted, or its pin did not match. */
export class TlsVerificationError extends ReverselbError {
  override name = 'TlsVerificationError'
  constructor (message: string) { super('ERR_REVERSELB_TLS_VERIFICATION', message) }
}

/** The server refused the upgrade for another reason (version, path); the message is the server's. */
export class UpgradeRefusedError extends ReverselbError {
  override name = 'UpgradeRefusedError'
  constructor (message: string) { super('ERR_REVERSELB_UPGRADE_REFUSED', message) }
}

/**
 * The WebSocket upgrade did not get through, and not because the server refused it: a proxy
 * stripped or refused it, or held it back without an answer. `--transport auto` then falls back
 * to the HTTP transport; with `--transport websocket` it stays an error.
 */
export class UpgradeBlockedError extends ReverselbError {
  override name = 'UpgradeBlockedError'
  /** `permanent`: the answer was the proxy's policy (4xx), which retrying will not change. */
  constructor (message: string, readonly permanent = false) { super('ERR_REVERSELB_UPGRADE_BLOCKED', message) }
}

/** The server answered the registration with an error (port taken, service not allowed...). */
export class RegistrationRefusedError extends ReverselbError {
  override name = 'RegistrationRefusedError'
  constructor (message: string) { super('ERR_REVERSELB_REGISTRATION_REFUSED', message) }
}

/** Errors a retry will not fix without a change on one side; ready() rejects with these. */
export function isPermanent (err: unknown): boolean {
  return err instanceof AuthorizationError || err instanceof TlsVerificationError ||
    err instanceof UpgradeRefusedError || err instanceof RegistrationRefusedError ||
    (err instanceof UpgradeBlockedError && err.permanent)
}
