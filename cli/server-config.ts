import { PortRanges } from '../server/port-ranges.js'
import { loadConfigFile, resolveSecret } from './config-file.js'
import type { TokenSpec } from '../server/auth.js'
import type { SecretRef } from './config-file.js'

/** The server's options a config file may set, with how each is given on the command line or in the environment. */
export const SERVER_OPTIONS = {
  port: { alias: 'p', env: 'PORT' },
  host: { env: 'HOST' },
  autocertsubjectname: { alias: 's', env: 'AUTO_CERT_SUBJECT_NAME' },
  autocertdir: { env: 'AUTO_CERT_DIR' },
  'tls-cert': { env: 'TLS_CERT' },
  'tls-key': { env: 'TLS_KEY' },
  httpport: { env: 'HTTP_PORT' },
  httpstls: { env: 'HTTPS_TLS' },
  natsport: { env: 'NATS_PORT' },
  natsurl: { env: 'NATS_URL' },
  natsca: { env: 'NATS_CA' },
  cluster: { env: 'CLUSTER' },
  advertise: { env: 'ADVERTISE' },
  clustersecret: { env: 'CLUSTER_SECRET' },
  httptunnelport: { env: 'HTTP_TUNNEL_PORT' },
  dynport: { env: 'DYN_PORT' },
  dynportcount: { env: 'DYN_PORT_COUNT' },
  frontendhost: { env: 'FRONTEND_HOST' },
  lbpolicy: { env: 'LB_POLICY' },
  keepalive: { env: 'KEEPALIVE' },
  loglevel: { alias: 'l', env: 'LOGLEVEL' },
  token: { alias: 't', env: 'TOKEN' },
  tokensfile: { env: 'TOKENS_FILE' },
  allowports: { env: 'ALLOW_PORTS' },
  maxservices: { env: 'MAX_SERVICES' },
  maxsessions: { env: 'MAX_SESSIONS' },
  maxconns: { env: 'MAX_CONNS' },
  maxstreams: { env: 'MAX_STREAMS' },
  maxservicestreams: { env: 'MAX_SERVICE_STREAMS' },
  maxcontrolbytes: { env: 'MAX_CONTROL_BYTES' },
  handshaketimeout: { env: 'HANDSHAKE_TIMEOUT' },
  idletimeout: { env: 'IDLE_TIMEOUT' },
  sniffbytes: { env: 'SNIFF_BYTES' },
  snifftimeout: { env: 'SNIFF_TIMEOUT' },
  authfailures: { env: 'AUTH_FAILURES' },
  portgrace: { env: 'PORT_GRACE' },
  drain: { env: 'DRAIN' }
} as const

export type ServerOptionName = keyof typeof SERVER_OPTIONS

/** A `reverselb server --config` file (docs/schema/server.schema.json), its secrets resolved. */
export interface ServerConfig {
  /** Options by their long name, as the command line would give them. */
  options: Partial<Record<ServerOptionName, unknown>>
  /** The `tokens` list: each token and what it may register. */
  tokens: TokenSpec[]
}

interface ServerFile extends Partial<Record<ServerOptionName, unknown>> {
  token?: SecretRef
  tokens?: Array<{ token: SecretRef, services?: string[], ports?: string }>
}

/** Reads, validates and checks a server config file; throws ConfigError (file, line, key) on any problem. */
export function loadServerConfig (path: string): ServerConfig {
  const file = loadConfigFile<ServerFile>(path, 'server.schema.json')
  const { tokens = [], token, ...options } = file.value
  const specs = tokens.map((t, i): TokenSpec => {
    const spec: TokenSpec = { token: resolveSecret(t.token, file, ['tokens', i, 'token']) }
    if (t.services !== undefined) spec.services = t.services
    if (t.ports !== undefined) {
      try { spec.ports = PortRanges.parse(t.ports).toString() } catch (err) { throw file.error(['tokens', i, 'ports'], (err as Error).message) }
    }
    return spec
  })
  if (options.allowports !== undefined) {
    try { PortRanges.parse(options.allowports as string) } catch (err) { throw file.error(['allowports'], (err as Error).message) }
  }
  return { options: { ...options, ...(token !== undefined ? { token: resolveSecret(token, file, ['token']) } : {}) }, tokens: specs }
}
