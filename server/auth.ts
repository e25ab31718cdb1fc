import { InvalidOptionError } from '../protocol/index.js'
import { createHash, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { PortRanges } from './port-ranges.js'
import type { IncomingMessage } from 'node:http'
import type { PortPool } from './port-pool.js'

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest()

/** What a token may do: register any service, or only those matching its patterns, on which ports. */
export interface TokenGrant {
  /** Index of the token in the configuration (for logs; never the token itself). */
  index: number
  /** Service name patterns (`*` matches any run of characters); undefined = every service. */
  services?: string[]
  /** Explicit frontend ports it may ask for (`18800-18810,9000`); see TokenSpec. */
  ports?: string
}

export interface TokenSpec {
  token: string
  /** Service name patterns it may register; undefined = every service. */
  services?: string[]
  /**
   * Explicit frontend ports it may ask for, e.g. `18800-18810,9000`. A token with `services` but
   * no `ports` may only take ports the server chooses (port 0 or the dynamic pool); a token
   * with neither is unrestricted.
   */
  ports?: string
}

/**
 * Parses a tokens file: one token per line, optionally followed by the service names (or
 * `*` patterns) it may register and `ports=RANGES`; `#` starts a comment.
 */
export function parseTokensFile (path: string): TokenSpec[] {
  const specs: TokenSpec[] = []
  for (const [i, raw] of readFileSync(path, 'utf8').split('\n').entries()) {
    const line = raw.replace(/#.*$/, '').trim()
    if (line === '') continue
    const [token, ...words] = line.split(/\s+/)
    if (token.length < 1) throw new InvalidOptionError(`${path}:${i + 1}: empty token`)
    const ports = words.filter(w => w.startsWith('ports='))
    const services = words.filter(w => !w.startsWith('ports='))
    if (ports.length > 1) throw new InvalidOptionError(`${path}:${i + 1}: ports= given ${ports.length} times; list every range in one (ports=8000-8010,9000)`)
    const spec: TokenSpec = { token }
    if (services.length > 0) spec.services = services
    if (ports.length === 1) {
      try { spec.ports = PortRanges.parse(ports[0].slice('ports='.length)).toString() } catch (err) { throw new InvalidOptionError(`${path}:${i + 1}: ${ports[0]}: ${(err as Error).message}`) }
    }
    specs.push(spec)
  }
  if (specs.length === 0) throw new InvalidOptionError(`${path}: no tokens`)
  return specs
}

const patternToRegExp = (p: string): RegExp => new RegExp('^' + p.split('*').map(s => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$')

/** Checks bearer tokens in constant time (hashing first makes the lengths equal). */
export class TokenAuth {
  private entries: Array<{ digest: Buffer, services?: RegExp[], ports?: PortRanges, grant: TokenGrant }> = []
  /** Each grant's token digest, across replacements: what a reload matches live sessions by. */
  private readonly digests = new WeakMap<TokenGrant, Buffer>()

  constructor (specs: Array<string | TokenSpec>) {
    this.replace(specs)
  }

  /** Takes a new token list (a reload); grants handed out before are matched with regrant(). */
  replace (specs: Array<string | TokenSpec>): void {
    const list = specs.map(s => typeof s === 'string' ? { token: s } : s)
    if (list.length === 0 || list.some(s => s.token.length === 0)) throw new InvalidOptionError('a non-empty token is required')
    this.entries = list.map((s, index) => {
      let ports: PortRanges | undefined
      // The error names the token by its position, never by its value.
      try { ports = s.ports !== undefined ? PortRanges.parse(s.ports) : undefined } catch (err) { throw new InvalidOptionError(`token #${index + 1}: ports: ${(err as Error).message}`) }
      const grant: TokenGrant = { index }
      if (s.services !== undefined) grant.services = s.services
      if (ports !== undefined) grant.ports = ports.toString()
      const d = digest(s.token)
      this.digests.set(grant, d)
      return { digest: d, services: s.services?.map(patternToRegExp), ports, grant }
    })
  }

  /** The current grant of the token behind an earlier grant, or undefined when that token was removed. */
  regrant (grant: TokenGrant): TokenGrant | undefined {
    const d = this.digests.get(grant)
    return d === undefined ? undefined : this.entries.find(e => e.digest.equals(d))?.grant
  }

  /** The grant of the presented token, or undefined. Every entry is compared, match or not. */
  identify (presented: string | undefined): TokenGrant | undefined {
    if (presented === undefined) return undefined
    const d = digest(presented)
    let found: TokenGrant | undefined
    for (const e of this.entries) if (timingSafeEqual(e.digest, d)) found ??= e.grant
    return found
  }

  /** True when the token behind `grant` may register `service`. */
  allows (grant: TokenGrant, service: string): boolean {
    const patterns = this.entries[grant.index].services
    return patterns === undefined || patterns.some(re => re.test(service))
  }

  /**
   * Why the token behind `grant` may not ask for explicit frontend `port`, or undefined when it
   * may. Restricted tokens get ports the server chooses (the dynamic pool, which a reconnect asks
   * for explicitly) and their `ports`; binding a port to a token is what keeps another team's
   * token off it.
   */
  portRefusal (grant: TokenGrant, port: number, pool: PortPool): string | undefined {
    const { services, ports } = this.entries[grant.index]
    if (services === undefined && ports === undefined) return undefined
    if (port === 0 || pool.contains(port) || ports?.has(port) === true) return undefined
    const dynamic = `frontend port 0 or the dynamic pool ${pool.first}-${pool.first + pool.count - 1}`
    return ports !== undefined
      ? `this token may not use port ${port}; it may use ports ${ports.toString()} and ${dynamic}`
      : `this token may not choose its port (${port}): it has no ports= in the tokens file, so it gets ports the server chooses (${dynamic})`
  }
}

/** The token from `Authorization: Bearer <token>`. */
export function bearerToken (req: IncomingMessage): string | undefined {
  const h = req.headers.authorization
  if (h === undefined) return undefined
  const m = /^Bearer\s+(.+)$/i.exec(h)
  return m?.[1]
}
