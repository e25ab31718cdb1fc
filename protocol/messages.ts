import { parseEndpoint } from './host-port.js'
import { ReverselbError } from './errors.js'
import { MAX_BACKEND_ACCEPT_BACKLOG, MAX_HOST_LENGTH, MAX_NAME_LENGTH, MAX_TARGET_ADDRESSES } from './limits.js'

/** Registration sent by the client on the control stream (the seed's TunnelData). */
export interface TunnelData {
  serviceName: string
  /** Optional instance on a shared port; `serviceName` may also carry it as `service:instance`. */
  instanceName?: string
  /** Accepted for compatibility with the seed; the server authenticates at the WebSocket upgrade. */
  token?: string
  frontendData: { port: number }
  backendAcceptBacklog: number
  targetPort: number
  targetAddresses: string[]
}

/** The server's answer to a registration (the seed's TunnelDataResponse). */
export interface TunnelDataResponse {
  id: string
  serviceName: string
  frontendPort: number
  frontendAddress: string
  /** A cluster's API endpoints (host:port), the answering node first: where to reconnect and spread sessions. */
  endpoints?: string[]
  /**
   * What this server supports beyond the seed's protocol. `services`: after this registration the
   * client may open more control streams on the same connection, one per further service.
   */
  features?: string[]
  error?: string
}

/** The feature a server advertises when one connection may carry several services. */
export const FEATURE_SERVICES = 'services'

/** First message of every relayed stream, server to client. */
export interface StreamHeader {
  serviceName: string
  /** The instance the connection was routed to, so a client with several instances of one service picks the right one. */
  instanceName?: string
  /** The frontend peer, `ip:port`. */
  sourceAddress: string
  /** The frontend address it connected to, `ip:port` (for PROXY protocol headers). */
  destinationAddress?: string
}

/** The client's answer once it has dialled (or failed to dial) the backend. */
export interface StreamAck {
  ok: boolean
  error?: string
}

export class ProtocolError extends ReverselbError {
  override name = 'ProtocolError'
  constructor (message: string, options?: ErrorOptions) { super('ERR_REVERSELB_PROTOCOL', message, options) }
}

type Obj = Record<string, unknown>

function object (v: unknown, what: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ProtocolError(`${what} must be an object`)
  return v as Obj
}

// Printable, no control characters: names end up in logs, JSON and HTTP headers.
const NAME = /^[\x20-\x7e]+$/

function name (v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_NAME_LENGTH || !NAME.test(v)) {
    throw new ProtocolError(`${what} must be 1-${MAX_NAME_LENGTH} printable ASCII characters`)
  }
  return v
}

function int (v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ProtocolError(`${what} must be an integer from ${min} to ${max}`)
  }
  return v + 0 // -0 -> 0: what is accepted must read the same after a trip through JSON
}

const HOST = /^[A-Za-z0-9._:%\-[\]]+$/

function host (v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_HOST_LENGTH || !HOST.test(v)) {
    throw new ProtocolError(`${what} must be a host name or IP address`)
  }
  return v
}

// Control characters (C0 and DEL), in text a peer sends that ends up in logs and events.
const CONTROL = /[\x00-\x1f\x7f]/g
const PRINTABLE_TEXT = /^[^\x00-\x1f\x7f]*$/

/** Free text from the peer (an error): bounded, control characters replaced, never refused. */
function text (v: string, max = 1024): string {
  return v.slice(0, max).replace(CONTROL, ' ')
}

/** An address or similar that the peer built itself: bounded and printable, or refused. */
function printable (v: unknown, what: string, max = 300): string {
  if (typeof v !== 'string' || v.length > max || !PRINTABLE_TEXT.test(v)) throw new ProtocolError(`${what} must be a string of at most ${max} characters without control characters`)
  return v
}

/** Splits `service:instance`; an explicit instanceName wins. */
export function splitServiceName (serviceName: string, instanceName?: string): { service: string, instance: string } {
  const i = serviceName.indexOf(':')
  if (i < 0) return { service: serviceName, instance: instanceName ?? '' }
  return { service: serviceName.slice(0, i), instance: instanceName ?? serviceName.slice(i + 1) }
}

export function validateTunnelData (v: unknown): TunnelData {
  const o = object(v, 'registration')
  const fd = object(o.frontendData ?? { port: 0 }, 'frontendData')
  const serviceName = name(o.serviceName, 'serviceName')
  const { service } = splitServiceName(serviceName)
  if (service.length === 0) throw new ProtocolError('serviceName must not start with ":"')
  if (!Array.isArray(o.targetAddresses)) throw new ProtocolError('targetAddresses must be an array')
  if (o.targetAddresses.length > MAX_TARGET_ADDRESSES) throw new ProtocolError(`targetAddresses may hold at most ${MAX_TARGET_ADDRESSES} entries`)
  const out: TunnelData = {
    serviceName,
    frontendData: { port: int(fd.port, 'frontendData.port', 0, 65535) },
    backendAcceptBacklog: int(o.backendAcceptBacklog ?? 1, 'backendAcceptBacklog', 1, MAX_BACKEND_ACCEPT_BACKLOG),
    targetPort: int(o.targetPort ?? 0, 'targetPort', 0, 65535),
    targetAddresses: o.targetAddresses.map((a, i) => host(a, `targetAddresses[${i}]`))
  }
  if (o.instanceName !== undefined && o.instanceName !== '') out.instanceName = name(o.instanceName, 'instanceName')
  if (o.token !== undefined && typeof o.token !== 'string') throw new ProtocolError('token must be a string')
  return out
}

export function validateTunnelDataResponse (v: unknown): TunnelDataResponse {
  const o = object(v, 'registration response')
  if (o.error !== undefined) {
    if (typeof o.error !== 'string') throw new ProtocolError('error must be a string')
    return { id: '', serviceName: '', frontendPort: 0, frontendAddress: '', error: text(o.error) }
  }
  const response: TunnelDataResponse = {
    id: name(o.id, 'id'),
    serviceName: name(o.serviceName, 'serviceName'),
    frontendPort: int(o.frontendPort, 'frontendPort', 1, 65535),
    frontendAddress: printable(o.frontendAddress, 'frontendAddress'),
    ...(o.endpoints !== undefined ? { endpoints: endpointList(o.endpoints) } : {})
  }
  // Unknown features are ignored, so a newer server's list never breaks this client.
  if (Array.isArray(o.features)) response.features = o.features.filter((f): f is string => typeof f === 'string' && NAME.test(f)).slice(0, 32)
  return response
}

/** A cluster has a few nodes, each a host:port. */
export const MAX_CLUSTER_ENDPOINTS = 64

function endpointList (v: unknown): string[] {
  if (!Array.isArray(v) || v.length > MAX_CLUSTER_ENDPOINTS) throw new ProtocolError(`endpoints must be a list of at most ${MAX_CLUSTER_ENDPOINTS}`)
  return v.map(e => {
    const s = name(e, 'endpoint')
    try { parseEndpoint(s) } catch (err) { throw new ProtocolError((err as Error).message) }
    return s
  })
}

export function validateStreamHeader (v: unknown): StreamHeader {
  const o = object(v, 'stream header')
  const sourceAddress = printable(o.sourceAddress, 'sourceAddress')
  const header: StreamHeader = { serviceName: name(o.serviceName, 'serviceName'), sourceAddress }
  if (o.destinationAddress !== undefined) header.destinationAddress = printable(o.destinationAddress, 'destinationAddress')
  if (o.instanceName !== undefined) header.instanceName = name(o.instanceName, 'instanceName')
  return header
}

export function validateStreamAck (v: unknown): StreamAck {
  const o = object(v, 'stream ack')
  if (typeof o.ok !== 'boolean') throw new ProtocolError('ok must be a boolean')
  if (o.error !== undefined && typeof o.error !== 'string') throw new ProtocolError('error must be a string')
  return o.error === undefined ? { ok: o.ok } : { ok: o.ok, error: text(o.error) }
}
