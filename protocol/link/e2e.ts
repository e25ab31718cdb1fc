/**
 * The end-to-end layer: TLS 1.3 between client and server inside the WebSocket, so that a proxy
 * that terminates the outer TLS (TLS inspection) sees neither the token, which travels in the
 * registration inside it, nor any tunneled byte. The server presents its own certificate, the
 * one clients pin with --fingerprint; the client checks it as it would the outer one.
 */

/** ALPN name of the inner TLS: a stray TLS client (or server) on the wrong layer fails at once. */
export const E2E_ALPN = 'reverselb-e2e'
export const E2E_MIN_VERSION = 'TLSv1.3'
/** How a registration refused for its token (inside the layer) begins; the client reports it as an authorization failure. */
export const E2E_AUTH_FAILED = 'authorization failed'
