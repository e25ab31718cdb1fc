import { createHash } from 'node:crypto'
import { HTTP_TUNNEL_PATHS } from '../protocol/index.js'
import { once } from 'node:events'
import { isIP, connect as netConnect } from 'node:net'
import { connect as tlsConnect, rootCertificates } from 'node:tls'
import { ProxyClosedError, proxyExchange } from './proxy-exchange.js'
import { formatEndpoint } from './endpoint.js'
import { TlsVerificationError } from './errors.js'
import { credentialsFor } from './proxy-auth/credentials.js'
import { NegotiateContext, NegotiateUnavailableError } from './proxy-auth/negotiate.js'
import { ntlmAuthenticate, ntlmNegotiate } from './proxy-auth/ntlm.js'
import { AUTH_SCHEMES, SCHEME_NAME, offeredSchemes, schemesToTry } from './proxy-auth/schemes.js'
import { ProxyAuthError, ProxyError, ProxyRefusedError, proxyAddress, proxyEndpoint } from './proxy.js'
import type { ConnectAnswer, ProxyAsk } from './proxy-exchange.js'
import type { Credentials } from './proxy-auth/credentials.js'
import type { AuthScheme } from './proxy-auth/schemes.js'
import type { Connector, ConnectUse } from './proxy.js'
import type { Socket } from 'node:net'

export interface ProxyConnectorOptions {
  /** Extra CA (PEM) for an https:// proxy. */
  ca?: string
  userAgent?: string
  /** Used when the proxy URL carries none (--proxy-user with $PROXY_PASSWORD). */
  credentials?: Credentials
  /** Schemes the user allows (--proxy-auth); default all, strongest first. */
  schemes?: readonly AuthScheme[]
  /** Where the chosen scheme is reported (debug). */
  debug?: (message: string) => void
}

/** Each scheme's exchange: the first header value, then answers to the proxy's challenges. */
interface AuthExchange {
  first: string
  /** The next header value for a 407 carrying `token`, or undefined when the proxy has rejected us. */
  next?: (token: string) => Promise<string | undefined>
  /** Checks the token a 200 may carry (Negotiate mutual authentication). */
  verify?: (token: string) => Promise<void>
}

/** Rounds a connection-bound exchange may take: NTLM needs 2, Negotiate rarely more than 2. */
const MAX_ROUNDS = 4
/**
 * Credentials a proxy rejected, and until when they are not sent again. A client that retries
 * forever would otherwise lock a Windows account after a few attempts with a stale password; the
 * password cannot become right while this process runs with it.
 */
const REJECTED_HOLD_MS = 15 * 60_000
const rejected = new Map<string, number>()
const rejectionKey = (where: string, scheme: AuthScheme, c: Credentials): string =>
  createHash('sha256').update(`${where}\0${scheme}\0${c.user}\0${c.password}`).digest('hex')

/** Basic credentials a forwarding connection's requests must each carry (Basic is not bound to the connection). */
const forwardAuth = new WeakMap<Socket, string>()

/**
 * Headers every request on a connection opened for forwarding must carry: Proxy-Authorization
 * when the proxy took Basic; none after NTLM or Negotiate, which authenticated the connection.
 */
export const forwardHeaders = (socket: Socket): Record<string, string> => {
  const basic = forwardAuth.get(socket)
  return basic !== undefined ? { 'proxy-authorization': basic } : {}
}

/**
 * A Connector through `proxy`. For a tunnel it opens a CONNECT tunnel and returns the raw socket:
 * TLS to the server, and its verification, stay with the caller, so the token is only ever sent
 * after the server's certificate was checked. For forwarding (a plain http:// endpoint) it asks no
 * CONNECT: it authenticates the connection with one GET of the server's probe path and returns it
 * for absolute-form requests. Authenticates with the strongest scheme both sides allow.
 */
export function proxyConnector (proxy: URL, opts: ProxyConnectorOptions = {}): Connector {
  const where = proxyAddress(proxy)
  const creds = credentialsFor(proxy, opts.credentials)
  const allowed = opts.schemes ?? AUTH_SCHEMES
  return async (endpoint, timeoutMs, use: ConnectUse = 'tunnel') => {
    const target = formatEndpoint(endpoint)
    const request: ProxyAsk = use === 'forward' ? { get: new URL(`http://${target}${HTTP_TUNNEL_PATHS.probe}`) } : { connect: target }
    const asked = 'get' in request ? `GET ${request.get.href}` : `CONNECT to ${target}`
    let basic: string | undefined
    const abort = new AbortController()
    const timer = setTimeout(() => abort.abort(), timeoutMs)
    let socket: Socket | undefined
    const open = async (): Promise<Socket> => {
      socket?.destroy()
      socket = await openProxySocket(proxy, opts.ca, abort.signal)
      return socket
    }
    const ask = async (auth?: string): Promise<ConnectAnswer> => await proxyExchange(socket ?? await open(), request, {
      'User-Agent': opts.userAgent ?? 'reverselb',
      ...(auth !== undefined ? { 'Proxy-Authorization': auth } : {})
    })
    try {
      let answer = await ask()
      if (answer.statusCode === 407) answer = await authenticate(answer)
      if (use === 'forward') {
        if (answer.statusCode < 200 || answer.statusCode > 299) throw refusal(answer, { where, target, asked, port: endpoint.port })
        if (!answer.reusable) throw new ProxyError(`proxy ${where} closed the connection after forwarding ${asked}; plain-HTTP requests need a kept-alive connection`)
        if (basic !== undefined) forwardAuth.set(socket as Socket, basic)
      } else if (answer.statusCode !== 200) throw refusal(answer, { where, target, asked, port: endpoint.port })
      return socket as Socket
    } catch (err) {
      socket?.destroy()
      throw connectFailure(err as NodeJS.ErrnoException, { proxy, where, target, asked, timedOut: abort.signal.aborted, timeoutMs })
    } finally {
      clearTimeout(timer)
    }

    // After the first 407: each allowed scheme the proxy offers, strongest first, until one is
    // accepted. A scheme we cannot even start (no Kerberos ticket) gives way to the next.
    async function authenticate (challenge: ConnectAnswer): Promise<ConnectAnswer> {
      const offered = offeredSchemes(challenge.headers.get('proxy-authenticate') ?? [])
      const candidates = schemesToTry(offered, allowed)
      const skipped: string[] = []
      for (const scheme of candidates) {
        // NTLM and Basic need a user and password; without them only Negotiate can answer.
        if (scheme !== 'negotiate' && creds === undefined) continue
        let exchange: AuthExchange
        try {
          exchange = await start(scheme)
        } catch (err) {
          if (!(err instanceof NegotiateUnavailableError)) throw err
          skipped.push(`${SCHEME_NAME[scheme]}: ${err.message}`)
          opts.debug?.(`proxy ${where}: cannot use ${SCHEME_NAME[scheme]} (${err.message}); trying the next scheme`)
          continue
        }
        opts.debug?.(`proxy ${where}: authenticating with ${SCHEME_NAME[scheme]}`)
        return await run(scheme, exchange, challenge.reusable)
      }
      throw noScheme(offered, candidates, skipped, challenge)
    }

    async function start (scheme: AuthScheme): Promise<AuthExchange> {
      if (scheme === 'negotiate') {
        const { context, token } = await NegotiateContext.start(proxyEndpoint(proxy).host)
        const step = async (t: string): Promise<string> => `Negotiate ${await context.step(t)}`
        return { first: `Negotiate ${token}`, next: async t => t !== '' ? await step(t) : undefined, verify: async t => { await context.step(t) } }
      }
      if (creds === undefined) throw new Error(`${SCHEME_NAME[scheme]} needs credentials`)
      const held = rejected.get(rejectionKey(where, scheme, creds))
      if (held !== undefined && held > Date.now()) {
        throw new ProxyAuthError(`proxy ${where} rejected the credentials of user "${creds.user}" (${SCHEME_NAME[scheme]}) earlier; ` +
          `not sending them again for ${Math.ceil((held - Date.now()) / 60_000)} min so as not to lock the account: fix the password and restart`)
      }
      if (scheme === 'ntlm') {
        // One Type 3 per connection: a second challenge after it means the first was refused,
        // and answering again would count as another failed logon against the account.
        let answered = false
        return {
          first: ntlmNegotiate(creds),
          next: async t => {
            if (t === '' || answered) return undefined
            answered = true
            return ntlmAuthenticate(t, creds)
          }
        }
      }
      basic = `Basic ${Buffer.from(`${creds.user}:${creds.password}`).toString('base64')}`
      return { first: basic }
    }

    async function run (scheme: AuthScheme, exchange: AuthExchange, reusable: boolean): Promise<ConnectAnswer> {
      if (!reusable) await open()
      let auth: string | undefined = exchange.first
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const answer = await ask(auth)
        const token = offeredSchemes(answer.headers.get('proxy-authenticate') ?? []).get(scheme) ?? ''
        if (answer.statusCode === 200) {
          if (token !== '' && exchange.verify !== undefined) await exchange.verify(token)
          return answer
        }
        if (answer.statusCode !== 407) return answer
        auth = exchange.next !== undefined ? await exchange.next(token) : undefined
        if (auth === undefined) {
          if (creds !== undefined && scheme !== 'negotiate') rejected.set(rejectionKey(where, scheme, creds), Date.now() + REJECTED_HOLD_MS)
          throw rejection(scheme, answer)
        }
        if (!answer.reusable) {
          throw new ProxyError(`proxy ${where} closed the connection in the middle of ${SCHEME_NAME[scheme]} authentication; ` +
            'this scheme needs one kept-alive connection (is something between us and the proxy closing it?)')
        }
      }
      throw new ProxyError(`proxy ${where} kept asking for more ${SCHEME_NAME[scheme]} rounds; giving up after ${MAX_ROUNDS}`)
    }

    function rejection (scheme: AuthScheme, answer: ConnectAnswer): Error {
      const status = statusOf(answer)
      if (scheme === 'negotiate') {
        return new ProxyAuthError(`proxy ${where} rejected our Kerberos ticket (Negotiate): ${status}; ` +
          'the proxy may lack a keytab for its HTTP/ principal, or know another name for itself')
      }
      const user = creds?.user ?? ''
      return new ProxyAuthError(`proxy ${where} rejected the credentials of user "${user}" (${SCHEME_NAME[scheme]}): ${status}` +
        (scheme === 'ntlm' ? '; wrong password, or an account that is locked or unknown to the proxy\'s domain (write it DOMAIN\\user)' : ''))
    }

    function noScheme (offered: Map<AuthScheme, string>, candidates: AuthScheme[], skipped: string[], answer: ConnectAnswer): Error {
      const names = [...offered.keys()].map(s => SCHEME_NAME[s])
      const offers = names.length > 0 ? names.join(', ') : (answer.headers.get('proxy-authenticate') ?? []).map(v => v.split(/\s/)[0]).join(', ') || 'no scheme'
      if (offered.size > 0 && candidates.length === 0) {
        return new ProxyAuthError(`proxy ${where} offers only ${offers} authentication, which --proxy-auth does not allow (${allowed.join(',')})`)
      }
      // Why each offered scheme could not be used, and what would help.
      const hints = [...skipped]
      const wantCredentials = candidates.filter(s => s !== 'negotiate')
      if (creds === undefined && wantCredentials.length > 0) {
        hints.push(`give credentials${candidates.includes('negotiate') ? ` for ${wantCredentials.map(s => SCHEME_NAME[s]).join(' or ')}` : ''} ` +
          `in the proxy URL, http://USER:PASSWORD@${where} (percent-encode special characters; DOMAIN%5Cuser for NTLM), ` +
          'or --proxy-user with $PROXY_PASSWORD')
      }
      if (hints.length === 0) hints.push(`reverselb speaks ${AUTH_SCHEMES.map(s => SCHEME_NAME[s]).join(', ')} only`)
      return new ProxyAuthError(`proxy ${where} requires authentication (${statusOf(answer)}, offers ${offers}): ${hints.join('; ')}`)
    }
  }
}

/** A TCP (or, for an https:// proxy, TLS) connection to the proxy that `signal` can tear down. */
async function openProxySocket (proxy: URL, ca: string | undefined, signal: AbortSignal): Promise<Socket> {
  const { host, port } = proxyEndpoint(proxy)
  const tcp = netConnect({ host, port, noDelay: true, signal })
  if (proxy.protocol !== 'https:') {
    await once(tcp, 'connect', { signal })
    return tcp
  }
  // tls.connect ignores `signal`: it gets a TCP socket that honours it.
  const tls = tlsConnect({
    socket: tcp,
    host,
    servername: isIP(host) === 0 ? host : undefined,
    ca: ca !== undefined ? [...rootCertificates, ca] : undefined
  })
  try {
    await once(tls, 'secureConnect', { signal })
  } catch (err) {
    tls.destroy()
    throw err
  }
  return tls
}

const first = (answer: ConnectAnswer, name: string): string | undefined => answer.headers.get(name)?.[0]

function statusOf (answer: ConnectAnswer): string {
  const status = `HTTP ${answer.statusCode} ${answer.statusText}`.trim()
  // Squid names the reason (ERR_ACCESS_DENIED, ERR_DNS_FAIL, ...) in a header.
  const squid = first(answer, 'x-squid-error')
  return squid !== undefined ? `${status} (${squid})` : status
}

function connectFailure (err: NodeJS.ErrnoException, ctx: { proxy: URL, where: string, target: string, asked: string, timedOut: boolean, timeoutMs: number }): Error {
  if (err instanceof ProxyError || err instanceof ProxyAuthError || err instanceof ProxyRefusedError) return err
  if (ctx.timedOut) {
    const what = ctx.asked.startsWith('GET') ? `answer ${ctx.asked}` : `open a tunnel to ${ctx.target}`
    return new ProxyError(`proxy ${ctx.where} did not ${what} within ${ctx.timeoutMs} ms`)
  }
  switch (err.code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ProxyError(`cannot resolve the proxy host "${ctx.proxy.hostname}" (DNS lookup failed: ${err.code})`)
    case 'ECONNREFUSED':
    case 'ECONNRESET':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ETIMEDOUT':
      return new ProxyError(`proxy ${ctx.where} is unreachable: ${err.message}`)
  }
  if (ctx.proxy.protocol === 'https:' && /CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS|ERR_SSL/.test(err.code ?? '')) {
    return new TlsVerificationError(`TLS with proxy ${ctx.where} failed: ${err.message} (${err.code ?? ''}); ` +
      'if the proxy has a private CA, pass it with --ca FILE')
  }
  if (err instanceof ProxyClosedError) {
    return new ProxyError(`proxy ${ctx.where} closed the connection without answering ${ctx.asked} (is it an HTTP proxy?)`)
  }
  return new ProxyError(`proxy ${ctx.where}: ${ctx.asked} failed: ${err.message}`)
}

function refusal (answer: ConnectAnswer, ctx: { where: string, target: string, asked: string, port: number }): Error {
  let message = `proxy ${ctx.where} refused ${ctx.asked}: ${statusOf(answer)}`
  if (ctx.asked.startsWith('GET')) {
    message = `${ctx.asked} through proxy ${ctx.where} was answered ${statusOf(answer)}: the proxy refused to forward it, ` +
      `or ${ctx.target} is not a reverselb server's --httptunnelport`
  } else if (answer.statusCode === 403 && ctx.port !== 443) message += '; many proxies allow CONNECT only to port 443: run the server there (reverselb server --port 443)'
  const policy = answer.statusCode >= 400 && answer.statusCode < 500 && answer.statusCode !== 408 && answer.statusCode !== 429
  return policy ? new ProxyRefusedError(message) : new ProxyError(message)
}
