import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest()

/** Checks bearer tokens in constant time (hashing first makes the lengths equal). */
export class TokenAuth {
  private readonly digests: Buffer[]

  constructor (tokens: string[]) {
    if (tokens.length === 0 || tokens.some(t => t.length === 0)) throw new Error('a non-empty token is required')
    this.digests = tokens.map(digest)
  }

  check (presented: string | undefined): boolean {
    if (presented === undefined) return false
    const d = digest(presented)
    let ok = false
    for (const known of this.digests) ok = timingSafeEqual(known, d) || ok
    return ok
  }
}

/** The token from `Authorization: Bearer <token>`. */
export function bearerToken (req: IncomingMessage): string | undefined {
  const h = req.headers.authorization
  if (h === undefined) return undefined
  const m = /^Bearer\s+(.+)$/i.exec(h)
  return m?.[1]
}
