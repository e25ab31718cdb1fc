import { accessSync, constants, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { TunnelClient } from '../client/tunnel-client.js'
import { E2E_MODES, TRANSPORT_MODES } from '../client/dial.js'
import { parseApiEndpoint, parseEndpoint } from '../client/endpoint.js'
import { proxiesFor, redactProxy } from '../client/proxy.js'
import { parseAuthSchemes } from '../client/proxy-auth/schemes.js'
import { describePac, isRemotePac } from '../client/pac.js'
import { routeConnector } from '../client/proxy-route.js'
import { MUXERS, PROTOCOL_VERSION, createLogger } from '../protocol/index.js'
import { UsageError, checkPort, requireToken, env, envBool, envInt, onShutdown } from './env.js'
import { givenOptions } from './config-file.js'
import { reloadOnChange } from './config-reload.js'
import { listOf, loadTunnelConfig } from './tunnel-config.js'
import type { TunnelConfig } from './tunnel-config.js'
import type { Logger, TunnelData } from '../protocol/index.js'
import type { GlobalArgs } from './main.js'
import { hideBin } from 'yargs/helpers'
import type { Argv } from 'yargs'

export const command = 'tunnel'
export const describe = 'creates an ingress tunnel'

export function builder (y: Argv<GlobalArgs>) {
  return y
    .option('apiendpoint', { alias: 'e', type: 'string', array: true, default: env('LB_API_ENDPOINT')?.split(','), describe: 'API endpoint hostname:port (or https://hostname:port); http://hostname:port is the server\'s plain --httptunnelport, for proxies that allow no CONNECT (always with the end-to-end layer); repeat for several servers [$LB_API_ENDPOINT]' })
    .option('frontendport', { alias: 'p', type: 'number', default: envInt('PORT') ?? 8888, describe: 'frontend port where the service is exposed (0 = the server picks) [$PORT]' })
    .option('serviceendpoint', { alias: 'b', type: 'string', array: true, default: env('SERVICE_ENDPOINT')?.split(','), describe: 'backend service endpoint hostname:port; repeat or comma-separate for several [$SERVICE_ENDPOINT]' })
    .option('servicename', { alias: 's', type: 'string', default: env('SERVICE_NAME') ?? 'xxxx', describe: 'service name [$SERVICE_NAME]' })
    .option('instancename', { type: 'string', default: env('INSTANCE_NAME'), describe: 'instance name on a shared port [$INSTANCE_NAME]' })
    .option('insecuretls', { alias: 'i', type: 'boolean', default: envBool('INSECURE_TLS') ?? false, describe: 'skip checking the server certificate (CA/hostname) [$INSECURE_TLS]' })
    .option('ca', { type: 'string', default: env('CA_FILE'), describe: 'PEM file of an extra CA to trust (e.g. a TLS-inspecting proxy) [$CA_FILE]' })
    .option('fingerprint', { type: 'string', default: env('FINGERPRINT'), describe: 'pin the server certificate by its SHA-256 fingerprint [$FINGERPRINT]' })
    .option('e2e', { choices: E2E_MODES, default: (env('E2E') ?? 'auto') as typeof E2E_MODES[number], describe: 'end-to-end layer (TLS to the server inside the tunnel, token inside it) that a TLS-inspecting proxy cannot read; auto: on unless the outer TLS is pinned to the server (--fingerprint that matches) or verified by the built-in CAs alone [$E2E]' })
    .option('transport', { choices: TRANSPORT_MODES, default: (env('TRANSPORT') ?? 'auto') as typeof TRANSPORT_MODES[number], describe: 'auto: WebSocket, falling back to plain HTTP requests (a streaming GET and POSTs) when a proxy blocks the upgrade; websocket or http only [$TRANSPORT]' })
    .option('mux', { choices: MUXERS, default: (env('MUX') ?? 'yamux') as typeof MUXERS[number], describe: 'stream muxer inside the WebSocket: yamux (flow control per stream) or mplex (none: a connection whose reader falls 16 MiB behind is reset) [$MUX]' })
    .option('connections', { type: 'number', default: envInt('CONNECTIONS') ?? 1, describe: 'parallel sessions kept to each server (backendAcceptBacklog) [$CONNECTIONS]' })
    .option('keepalive', { type: 'number', default: envInt('KEEPALIVE') ?? 20, describe: 'seconds between WebSocket pings to the server [$KEEPALIVE]' })
    .option('proxyprotocol', { choices: ['v1', 'v2'] as const, default: env('PROXY_PROTOCOL') as 'v1' | 'v2' | undefined, describe: 'send a HAProxy PROXY protocol header to the backend [$PROXY_PROTOCOL]' })
    .option('proxy', { type: 'string', describe: 'HTTP(S) proxy URL http://[USER:PASSWORD@]HOST:PORT (NTLM: DOMAIN%5Cuser), several comma-separated to fail over, or "none"; wins over $HTTPS_PROXY, $ALL_PROXY, $HTTP_PROXY, $NO_PROXY (used as in curl)' })
    .option('proxy-pac', { type: 'string', default: env('PROXY_PAC'), describe: 'proxy auto-config file, URL (fetched again on each reconnect) or path; wins over --proxy [$PROXY_PAC]' })
    .option('proxy-user', { type: 'string', default: env('PROXY_USER'), describe: 'proxy user (DOMAIN\\user for NTLM) when the proxy URL has none; the password comes from $PROXY_PASSWORD [$PROXY_USER]' })
    .option('config', { type: 'string', default: env('TUNNEL_CONFIG'), describe: 'YAML file of servers, token, TLS and proxy settings and any number of services, carried over one connection per session (docs/config.md); options given here win over its top level; SIGHUP reloads it [$TUNNEL_CONFIG]' })
    .option('watch', { type: 'boolean', default: false, describe: 'with --config: also reload the file when it changes' })
    .option('proxy-auth', { type: 'string', default: env('PROXY_AUTH'), describe: 'proxy authentication schemes allowed, e.g. negotiate,ntlm (default negotiate,ntlm,basic: the strongest the proxy offers) [$PROXY_AUTH]' })
    .check((argv) => {
      if (argv.watch && argv.config === undefined) throw new UsageError('--watch goes with --config')
      // With a config file, what it adds is checked once it is read (see handler).
      return argv.config !== undefined || checkArgs(argv, true)
    })
}

/** What the checks read: the command line, or the command line over a config file's top level. */
interface CheckedArgs {
  token: string | string[]
  apiendpoint?: Array<string | undefined>
  serviceendpoint?: Array<string | undefined>
  frontendport: number
  e2e: string
  connections: number
  keepalive: number
  proxy?: string
  'proxy-auth'?: string
  'proxy-pac'?: string
  'proxy-user'?: string
}

function checkArgs (argv: CheckedArgs, serviceRequired: boolean): true {
  requireToken(argv.token)
  if (listOf(argv.apiendpoint).length === 0) throw new UsageError('Missing required option: --apiendpoint (or $LB_API_ENDPOINT)')
  if (serviceRequired && listOf(argv.serviceendpoint).length === 0) throw new UsageError('Missing required option: --serviceendpoint (or $SERVICE_ENDPOINT)')
  for (const e of listOf(argv.apiendpoint)) {
    const endpoint = tryParseApi(e)
    if (endpoint.plain === true && argv.e2e === 'never') throw new UsageError(`--apiendpoint ${e} is plain HTTP: it needs the end-to-end layer, not --e2e never`)
  }
  for (const e of listOf(argv.serviceendpoint)) tryParse(e, 'serviceendpoint')
  checkPort(argv.frontendport, 'frontendport')
  if (!Number.isInteger(argv.connections) || argv.connections < 1 || argv.connections > 64) throw new UsageError('--connections must be a whole number from 1 to 64')
  if (!(argv.keepalive > 0)) throw new UsageError('--keepalive must be a positive number of seconds')
  // Also checks the *_PROXY variables, so a typo there is reported at start, not on every retry.
  for (const e of listOf(argv.apiendpoint)) {
    try { proxiesFor(parseApiEndpoint(e), argv.proxy) } catch (err) { throw new UsageError((err as Error).message) }
  }
  if (argv['proxy-auth'] !== undefined) {
    try { parseAuthSchemes(argv['proxy-auth']) } catch (err) { throw new UsageError((err as Error).message) }
  }
  // A PAC file that is not there will not appear by retrying; a PAC server may come back.
  const pac = argv['proxy-pac']
  if (pac !== undefined && !isRemotePac(pac)) {
    try { accessSync(pac.startsWith('file:') ? fileURLToPath(pac) : pac, constants.R_OK) } catch (err) {
      throw new UsageError(`--proxy-pac: cannot read ${pac} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
  }
  if (argv['proxy-user'] !== undefined && env('PROXY_PASSWORD') === undefined) {
    throw new UsageError('--proxy-user needs the password in $PROXY_PASSWORD (not on the command line, where other users can read it)')
  }
  return true
}

type Args = Awaited<ReturnType<typeof builder>['argv']>

function tryParse (text: string, option: string): ReturnType<typeof parseEndpoint> {
  try {
    return parseEndpoint(text)
  } catch {
    throw new UsageError(`--${option} "${text}" is not in the form hostname:port`)
  }
}

function tryParseApi (text: string): ReturnType<typeof parseApiEndpoint> {
  try {
    return parseApiEndpoint(text)
  } catch {
    throw new UsageError(`--apiendpoint "${text}" is not in the form hostname:port, https://hostname:port or http://hostname:port`)
  }
}

/** The top-level keys of a config file, with how each is given on the command line or in the environment. */
const TOP_LEVEL = {
  apiendpoint: { alias: 'e', env: 'LB_API_ENDPOINT' },
  token: { alias: 't', env: 'TOKEN' },
  insecuretls: { alias: 'i', env: 'INSECURE_TLS' },
  ca: { env: 'CA_FILE' },
  fingerprint: { env: 'FINGERPRINT' },
  e2e: { env: 'E2E' },
  transport: { env: 'TRANSPORT' },
  mux: { env: 'MUX' },
  connections: { env: 'CONNECTIONS' },
  keepalive: { env: 'KEEPALIVE' },
  proxy: {},
  loglevel: { alias: 'l', env: 'LOGLEVEL' }
} as const

/** The single service's options: a config file's services replace them. */
const SERVICE_OPTIONS = {
  servicename: { alias: 's', env: 'SERVICE_NAME' },
  serviceendpoint: { alias: 'b', env: 'SERVICE_ENDPOINT' },
  frontendport: { alias: 'p', env: 'PORT' },
  instancename: { env: 'INSTANCE_NAME' }
} as const

/** The command line over the file's top level: what is given here (flag or env var) wins. */
function overlay (argv: Args, config: TunnelConfig): Args {
  const given = givenOptions(hideBin(process.argv), TOP_LEVEL)
  const merged: Record<string, unknown> = { ...argv }
  for (const key of Object.keys(TOP_LEVEL) as Array<keyof typeof TOP_LEVEL>) {
    const value = config.top[key]
    if (value === undefined || given.has(key)) continue
    merged[key] = key === 'apiendpoint' ? listOf(value as string | string[]) : value
  }
  return merged as Args
}

export async function handler (argv: Args): Promise<void> {
  if (argv.config === undefined) { single(argv); return }
  const path = argv.config
  const config = loadTunnelConfig(path)
  const args = overlay(argv, config)
  checkArgs(args, false)
  const log = createLogger(args.loglevel, 'tunnel')
  const ignored = [...givenOptions(hideBin(process.argv), SERVICE_OPTIONS)]
  if (ignored.length > 0) log.warn(`${ignored.map(o => `--${o}`).join(', ')} ignored: with --config, services come from ${path}`)
  const client = startClient(args, [], log)
  const apply = (next: TunnelConfig): void => {
    const changes = client.setServices(next.services)
    const what = [['added', changes.added], ['removed', changes.removed], ['changed', changes.changed]].filter(([, l]) => l.length > 0).map(([w, l]) => `${w as string} ${(l as string[]).join(', ')}`)
    log.info(`services: ${what.length > 0 ? what.join('; ') : 'no change'}`)
    void changes.settled.then(failed => { for (const f of failed) log.error(`service ${f.name}: ${f.error.message}`) })
  }
  apply(config)
  if (config.services.length === 0) log.warn(`${path} lists no service; waiting for a reload that adds one`)
  const stop = reloadOnChange({
    path,
    watch: argv.watch,
    load: loadTunnelConfig,
    apply: async (next) => {
      const changed = (Object.keys(TOP_LEVEL) as Array<keyof typeof TOP_LEVEL>).filter(k => JSON.stringify(next.top[k]) !== JSON.stringify(config.top[k]))
      if (changed.length > 0) log.warn(`${path}: ${changed.join(', ')} changed; that takes a restart (the services are applied now)`)
      apply(next)
    },
    log
  })
  onShutdown(async () => { stop(); await client.close() })
}

/** The seed's command line: one service from flags and env vars. */
function single (argv: Args): void {
  const log = createLogger(argv.loglevel, 'tunnel')
  const backends = listOf(argv.serviceendpoint).map(e => tryParse(e, 'serviceendpoint'))
  const ports = new Set(backends.map(b => b.port))
  if (ports.size > 1) throw new UsageError('every --serviceendpoint must use the same port (the tunnel has one targetPort)')
  const client = startClient(argv, [{
    serviceName: argv.servicename,
    instanceName: argv.instancename,
    token: [argv.token].flat().at(-1) ?? '',
    frontendData: { port: argv.frontendport },
    backendAcceptBacklog: argv.connections,
    targetPort: backends[0].port,
    targetAddresses: backends.map(b => b.host)
  }], log)
  log.info(`NewTunnelClient to apiEndpoint [${listOf(argv.apiendpoint).join(', ')}] for service "${argv.servicename}" -> ${listOf(argv.serviceendpoint).join(', ')}`)
  onShutdown(async () => await client.close())
}

/** A TunnelClient with the client-wide options of `argv` (servers, token, TLS, proxies). */
function startClient (argv: Args, services: TunnelData[], log: Logger): TunnelClient {
  let ca: string | undefined
  if (argv.ca !== undefined) {
    try { ca = readFileSync(argv.ca, 'utf8') } catch (err) { throw new UsageError(`--ca: cannot read ${argv.ca}: ${(err as NodeJS.ErrnoException).code ?? ''}`) }
  }
  const client = new TunnelClient(listOf(argv.apiendpoint), services, {
    token: [argv.token].flat().at(-1) ?? '',
    connections: argv.connections,
    insecureTls: argv.insecuretls,
    ca,
    fingerprint: argv.fingerprint,
    e2e: argv.e2e,
    transport: argv.transport,
    muxer: argv.mux,
    // For an http:// endpoint: the proxy its plain requests go to (`connect` opens CONNECT tunnels).
    proxy: argv.proxy,
    keepaliveMs: argv.keepalive * 1000,
    proxyProtocol: argv.proxyprotocol,
    // Routing (proxies, PAC, proxy authentication) is the CLI's to configure.
    connect: routeConnector({
      proxy: argv.proxy,
      pac: argv['proxy-pac'],
      credentials: argv['proxy-user'] !== undefined ? { user: argv['proxy-user'], password: env('PROXY_PASSWORD') ?? '' } : undefined,
      schemes: argv['proxy-auth'] !== undefined ? parseAuthSchemes(argv['proxy-auth']) : undefined,
      ca,
      userAgent: `reverselb/v${PROTOCOL_VERSION}`,
      log
    }),
    logger: log
  })
  for (const e of listOf(argv.apiendpoint)) {
    const proxies = proxiesFor(parseApiEndpoint(e), argv.proxy)
    if (argv['proxy-pac'] !== undefined) log.info(`connecting to ${e} as the PAC file ${describePac(argv['proxy-pac'])} says`)
    else if (proxies.length > 0) log.info(`connecting to ${e} through proxy ${proxies.map(redactProxy).join(', then ')}`)
  }
  return client
}
