import { sniff } from './sniff.js'
import type { Sniffed } from './sniff.js'
import type { Service } from './service.js'
import type { Socket } from 'node:net'

export interface SniffLimits {
  /** Most bytes read while looking for an instance name. */
  maxBytes: number
  /** How long a connection may stay silent before it is dropped (probes never reach a backend). */
  timeoutMs: number
}

export interface InstanceRoute {
  instance: string
  /** Bytes already read from the frontend, to relay first (after any stripped prefix). */
  head?: Buffer
  /** Written to the frontend once a session took the connection (CONNECT's 200). */
  accepted?: string
  /** Written to the frontend when no session could take it. */
  rejected?: string
}

export type Routing = { route: InstanceRoute } | { refuse: string, reply?: string }

/** The routing of every connection to a service without named instances (shared: nobody modifies a routing). */
export const DEFAULT_INSTANCE: Routing = Object.freeze({ route: Object.freeze({ instance: '' }) })

const httpReply = (status: string, text: string): string =>
  `HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text) + 1}\r\nConnection: close\r\n\r\n${text}\n`

/**
 * Chooses the instance of `service` for a new frontend connection. Services with only the
 * default instance are not sniffed at all (server-speaks-first protocols work); otherwise the
 * first bytes decide. Resolves undefined when the peer sent nothing (a probe) or left.
 */
export async function routeConnection (socket: Socket, service: Service, limits: SniffLimits): Promise<Routing | undefined> {
  if (!service.hasNamedInstances()) return DEFAULT_INSTANCE
  const read = await readFirstBytes(socket, limits)
  if (read === undefined) return undefined
  const { buf, sniffed } = read
  const fallback = (what: string, name?: string): Routing => service.instances.has('')
    ? { route: { instance: '', head: buf } }
    : { refuse: `${what}${name !== undefined ? ` "${name}"` : ''} matches no instance of service "${service.name}" and it has no default instance` }

  switch (sniffed.kind) {
    case 'tls': {
      const instance = sniffed.name !== undefined ? service.resolveInstance(sniffed.name) : undefined
      return instance !== undefined ? { route: { instance, head: buf } } : fallback('TLS server name', sniffed.name)
    }
    case 'http': {
      const instance = sniffed.name !== undefined ? service.resolveInstance(sniffed.name) : undefined
      if (instance !== undefined) return { route: { instance, head: buf } }
      const f = fallback('Host', sniffed.name)
      return 'refuse' in f ? { ...f, reply: httpReply('404 Not Found', `reverselb: ${f.refuse}`) } : f
    }
    case 'connect': {
      const instance = service.resolveInstance(sniffed.name)
      if (instance === undefined) {
        const refuse = `CONNECT to unknown instance "${sniffed.name}" of service "${service.name}"`
        return { refuse, reply: httpReply('404 Not Found', `reverselb: ${refuse}`) }
      }
      return {
        route: {
          instance,
          head: buf.subarray(sniffed.consumed),
          accepted: 'HTTP/1.1 200 Connection established\r\n\r\n',
          rejected: httpReply('502 Bad Gateway', `reverselb: no backend of "${sniffed.name}" could be reached`)
        }
      }
    }
    case 'prefix': {
      const instance = service.resolveInstance(sniffed.name)
      if (instance === undefined) return { refuse: `PROXY-> prefix names unknown instance "${sniffed.name}" of service "${service.name}"` }
      return { route: { instance, head: buf.subarray(sniffed.consumed) } }
    }
    default:
      return fallback('unnamed connection')
  }
}

async function readFirstBytes (socket: Socket, limits: SniffLimits): Promise<{ buf: Buffer, sniffed: Sniffed } | undefined> {
  return await new Promise((resolve) => {
    let buf = Buffer.alloc(0)
    const finish = (result: { buf: Buffer, sniffed: Sniffed } | undefined): void => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('close', onEnd)
      socket.pause()
      resolve(result)
    }
    const decide = (final: boolean): void => {
      const sniffed = sniff(buf)
      if (sniffed.kind !== 'more') { finish({ buf, sniffed }); return }
      // Out of patience or room: whatever arrived is relayed as an unnamed connection.
      if (final || buf.length >= limits.maxBytes) finish(buf.length === 0 ? undefined : { buf, sniffed: { kind: 'plain' } })
    }
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk])
      decide(false)
    }
    const onEnd = (): void => decide(true)
    const timer = setTimeout(() => decide(true), limits.timeoutMs)
    socket.on('data', onData)
    socket.once('end', onEnd)
    socket.once('close', onEnd)
    socket.resume()
  })
}
