/** The server refused our token (HTTP 401 at the upgrade). */
export class AuthorizationError extends Error {
  override name = 'AuthorizationError'
}

/** The server's certificate could not be trusted, or its pin did not match. */
export class TlsVerificationError extends Error {
  override name = 'TlsVerificationError'
}

/** The server refused the upgrade for another reason (version, path); the message is the server's. */
export class UpgradeRefusedError extends Error {
  override name = 'UpgradeRefusedError'
}

/**
 * The WebSocket upgrade did not get through, and not because the server refused it: a proxy
 * stripped or refused it, or held it back without an answer. `--transport auto` then falls back
 * to the HTTP transport; with `--transport websocket` it stays an error.
 */
export class UpgradeBlockedError extends Error {
  override name = 'UpgradeBlockedError'
  readonly code = 'ERR_UPGRADE_BLOCKED'
  /** `permanent`: the answer was the proxy's policy (4xx), which retrying will not change. */
  constructor (message: string, readonly permanent = false) { super(message) }
}

/** The server answered the registration with an error (port taken, service not allowed...). */
export class RegistrationRefusedError extends Error {
  override name = 'RegistrationRefusedError'
}

/** Errors a retry will not fix without a change on one side; ready() rejects with these. */
export function isPermanent (err: unknown): boolean {
  return err instanceof AuthorizationError || err instanceof TlsVerificationError ||
    err instanceof UpgradeRefusedError || err instanceof RegistrationRefusedError ||
    (err instanceof UpgradeBlockedError && err.permanent)
}
