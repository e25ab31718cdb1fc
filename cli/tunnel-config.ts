import { parseEndpoint } from '../client/endpoint.js'
import { ServiceError, serviceEntry } from '../client/services.js'
import { loadConfigFile, resolveSecret } from './config-file.js'
import type { ServiceOptions } from '../client/services.js'
import type { LogLevel, MuxerName, TunnelData } from '../protocol/index.js'
import type { SecretRef } from './config-file.js'

/** A `reverselb tunnel --config` file as written (docs/schema/tunnels.schema.json). */
export interface TunnelFile {
  apiendpoint?: string | string[]
  token?: SecretRef
  insecuretls?: boolean
  ca?: string
  fingerprint?: string
  e2e?: 'auto' | 'always' | 'never'
  transport?: 'auto' | 'websocket' | 'http'
  mux?: MuxerName
  connections?: number
  keepalive?: number
  proxy?: string
  loglevel?: LogLevel
  services: ServiceFile[]
}

export interface ServiceFile {
  servicename: string
  serviceendpoint: string | string[]
  frontendport?: number
  instancename?: string
  proxyprotocol?: 'v1' | 'v2'
}

/** The top level (the client's options, token resolved) and the checked services. */
export interface TunnelConfig {
  top: Omit<TunnelFile, 'services' | 'token'> & { token?: string }
  services: Array<{ data: TunnelData, options: ServiceOptions }>
}

/** Strings or lists of comma-separated strings, flattened (yargs may hand over [undefined] when unset). */
export const listOf = (v: string | Array<string | undefined> | undefined): string[] =>
  [v ?? []].flat().flatMap(s => typeof s === 'string' ? s.split(',') : []).map(s => s.trim()).filter(s => s !== '')

/** Reads, validates and checks a tunnels file; throws ConfigError (file, line, key) on any problem. */
export function loadTunnelConfig (path: string): TunnelConfig {
  const file = loadConfigFile<TunnelFile>(path, 'tunnels.schema.json')
  const { services, token, ...top } = file.value
  const seen = new Map<string, number>()
  const checked = services.map((s, i) => {
    const backends = listOf(s.serviceendpoint).map(e => {
      try { return parseEndpoint(e) } catch { throw file.error(['services', i, 'serviceendpoint'], `"${e}" is not in the form hostname:port`) }
    })
    if (backends.length === 0) throw file.error(['services', i, 'serviceendpoint'], 'no backend given')
    if (new Set(backends.map(b => b.port)).size > 1) throw file.error(['services', i, 'serviceendpoint'], 'every endpoint of a service must use the same port')
    const data: TunnelData = {
      serviceName: s.servicename,
      frontendData: { port: s.frontendport ?? 0 },
      backendAcceptBacklog: top.connections ?? 1,
      targetPort: backends[0].port,
      targetAddresses: backends.map(b => b.host)
    }
    if (s.instancename !== undefined) data.instanceName = s.instancename
    let name: string
    try { name = serviceEntry(data).name } catch (err) {
      throw file.error(['services', i, 'servicename'], err instanceof ServiceError ? err.message : String(err))
    }
    const before = seen.get(name)
    if (before !== undefined) throw file.error(['services', i, 'servicename'], `duplicate service "${name}" (also services.${before})`)
    seen.set(name, i)
    return { data, options: s.proxyprotocol !== undefined ? { proxyProtocol: s.proxyprotocol } : {} }
  })
  return { top: { ...top, ...(token !== undefined ? { token: resolveSecret(token, file, ['token']) } : {}) }, services: checked }
}
