import { createHash, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest()

/** What a token may do: register any service, or only those matching its patterns. */
export interface TokenGrant {
  /** Index of the token in the configuration (for logs; never the token itself). */
  index: number
  /** Service name patterns (`*` matches any run of characters); undefined = every service. */
  services?: string[]
}

export interface TokenSpec {
  token: string
  services?: string[]
}

/**
 * Parses a tokens file: one token per line, optionally followed by the service names (or
 * `*` patterns) it may register; `#` starts a comment.
 */
export function parseTokensFile (path: string): TokenSpec[] {
  const specs: TokenSpec[] = []
  for (const [i, raw] of readFileSync(path, 'utf8').split('\n').entries()) {
    const line = raw.replace(/#.*$/, '').trim()
    if (line === '') continue
    const [token, ...services] = line.split(/\s+/)
    if (token.length < 1) throw new Error(`${path}:${i + 1}: empty token`)
    specs.push(services.length > 0 ? { token, services } : { token })
  }
  if (specs.length === 0) throw new Error(`${path}: no tokens`)
  return specs
}

const patternToRegExp = (p: string): RegExp => new RegExp('^' + p.split('*').map(s => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$')

/** Checks bearer tokens in constant time (hashing first makes the lengths equal). */
export class TokenAuth {
  private readonly entries: Array<{ digest: Buffer, services?: RegExp[], grant: TokenGrant }>

  constructor (specs: Array<string | TokenSpec>) {
    const list = specs.map(s => typeof s === 'string' ? { token: s } : s)
    if (list.length === 0 || list.some(s => s.token.length === 0)) throw new Error('a non-empty token is required')
    this.entries = list.map((s, index) => ({
      digest: digest(s.token),
      services: s.services?.map(patternToRegExp),
      grant: s.services === undefined ? { index } : { index, services: s.services }
    }))
  }

  /** The grant of the presented token, or undefined. Every entry is compared, match or not. */
  identify (presented: string | undefined): TokenGrant | undefined {
    if (presented === undefined) return undefined
    const d = digest(presented)
    let found: TokenGrant | undefined
    for (const e of this.entries) if (timingSafeEqual(e.digest, d)) found ??= e.grant
    return found
  }

  check (presented: string | undefined): boolean {
    return this.identify(presented) !== undefined
  }

  /** True when the token behind `grant` may register `service`. */
  allows (grant: TokenGrant, service: string): boolean {
    const patterns = this.entries[grant.index].services
    return patterns === undefined || patterns.some(re => re.test(service))
  }
}

/** The token from `Authorization: Bearer <token>`. */
export function bearerToken (req: IncomingMessage): string | undefined {
  const h = req.headers.authorization
  if (h === undefined) return undefined
  const m = /^Bearer\s+(.+)$/i.exec(h)
  return m?.[1]
}
