import { InvalidOptionError } from '../../protocol/index.js'
/** Proxy authentication schemes we speak, strongest first: the order we pick them in. */
export const AUTH_SCHEMES = ['negotiate', 'ntlm', 'basic'] as const
export type AuthScheme = typeof AUTH_SCHEMES[number]

/** How the scheme is written on the wire. */
export const SCHEME_NAME: Record<AuthScheme, string> = { negotiate: 'Negotiate', ntlm: 'NTLM', basic: 'Basic' }

/** `--proxy-auth negotiate,ntlm` → the allowed schemes; throws on an unknown name. */
export function parseAuthSchemes (text: string): AuthScheme[] {
  const names = text.split(',').map(s => s.trim().toLowerCase()).filter(s => s !== '')
  for (const n of names) {
    if (!(AUTH_SCHEMES as readonly string[]).includes(n)) throw new InvalidOptionError(`--proxy-auth: unknown scheme "${n}"; use any of ${AUTH_SCHEMES.join(', ')}`)
  }
  if (names.length === 0) throw new InvalidOptionError(`--proxy-auth: name at least one of ${AUTH_SCHEMES.join(', ')}`)
  return names as AuthScheme[]
}

/**
 * The schemes a 407's Proxy-Authenticate headers offer, each with its token (the base64 after the
 * scheme name, '' for none). One header may list several challenges, comma-separated, and Basic's
 * parameters (realm="a, b") also contain commas: only a known scheme name starts a challenge.
 */
export function offeredSchemes (values: string[]): Map<AuthScheme, string> {
  const offered = new Map<AuthScheme, string>()
  for (const value of values) {
    const re = /(?:^|,)\s*(Negotiate|NTLM|Basic)\b\s*([A-Za-z0-9+/]+=*(?=\s*(?:,|$)))?/gi
    for (const m of value.matchAll(re)) {
      const scheme = m[1].toLowerCase() as AuthScheme
      if (!offered.has(scheme)) offered.set(scheme, m[2] ?? '')
    }
  }
  return offered
}

/** The schemes to try, in order: offered by the proxy, allowed by the user, strongest first. */
export function schemesToTry (offered: Map<AuthScheme, string>, allowed: readonly AuthScheme[] = AUTH_SCHEMES): AuthScheme[] {
  return AUTH_SCHEMES.filter(s => offered.has(s) && allowed.includes(s))
}
