import { Agent, request } from 'node:http'
import type { ClientRequest, ClientRequestArgs, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'

/**
 * Where the HTTP transport's requests go: an agent whose connections are opened by `open` (TLS to
 * the server through CONNECT, or TCP to the server or to a plain-HTTP proxy), kept alive and
 * reused, two at most (the download and the uploads).
 */
export interface HttpRoute {
  agent: Agent
  /** '' (origin-form paths), or 'http://host:port' when a plain-HTTP proxy is asked (absolute form). */
  prefix: string
  /** The Host header: the server's host:port. */
  host: string
  /** Sent with every request (Proxy-Authorization for a plain-HTTP proxy). */
  headers: Record<string, string>
}

/** An Agent whose connections come from an async function (the documented callback form of createConnection). */
class OpeningAgent extends Agent {
  constructor (private readonly opener: () => Promise<Duplex>) {
    super({ keepAlive: true, maxSockets: 2, maxFreeSockets: 2 })
  }

  override createConnection (_options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    // A connection left paused by an exchange with a proxy must flow for the HTTP parser, which
    // attaches its listeners before the next I/O turn. With an error, Node's agent does not look
    // at the stream argument.
    this.opener().then(s => { s.resume(); callback?.(null, s) }, (err: Error) => callback?.(err, null as never))
    return undefined
  }
}

/**
 * A route whose first connection is `first` (opened by the caller, which learnt from it how to
 * talk: the end-to-end choice, the proxy's credentials) and whose later ones come from `next`.
 */
export function httpRoute (first: Duplex, next: () => Promise<Duplex>, o: { host: string, prefix?: string, headers?: Record<string, string> }): HttpRoute {
  let spare: Duplex | undefined = first
  const open = async (): Promise<Duplex> => {
    const s = spare
    spare = undefined
    return s !== undefined && !s.destroyed ? s : await next()
  }
  return { agent: new OpeningAgent(open), prefix: o.prefix ?? '', host: o.host, headers: o.headers ?? {} }
}

export interface RouteRequest {
  method: 'GET' | 'POST'
  path: string
  headers?: Record<string, string>
  body?: Buffer
  /** The answer's head must come within this. */
  timeoutMs: number
}

/** Sends one request on the route; resolves with the answer's head (its body still to read). */
export async function send (route: HttpRoute, r: RouteRequest, track?: Set<ClientRequest>): Promise<IncomingMessage> {
  return await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request({
      agent: route.agent,
      method: r.method,
      path: route.prefix + r.path,
      // The agent's pool is keyed on these; the connection itself comes from the route's opener.
      host: 'reverselb-http-transport',
      headers: {
        host: route.host,
        'cache-control': 'no-cache, no-transform',
        ...route.headers,
        ...r.headers,
        ...(r.method === 'POST' ? { 'content-type': 'application/octet-stream', 'content-length': String(r.body?.length ?? 0) } : {})
      }
    })
    track?.add(req)
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${r.timeoutMs} ms`)), r.timeoutMs)
    req.once('response', (res) => { clearTimeout(timer); resolve(res) })
    req.once('error', (err) => { clearTimeout(timer); reject(err) })
    req.once('close', () => { clearTimeout(timer); track?.delete(req) })
    req.end(r.body)
  })
}

/** Reads a small answer body (a refusal's reason); at most 4 KiB is kept. */
export async function smallBody (res: IncomingMessage): Promise<string> {
  let text = ''
  for await (const chunk of res) if (text.length < 4096) text += (chunk as Buffer).toString('utf8')
  return text.slice(0, 4096).trim()
}
