/**
 * Reads an instance name from the first bytes of a frontend connection, by what they look like:
 * a TLS ClientHello (SNI), an HTTP CONNECT request, the original's `PROXY->` prefix, or an
 * HTTP/1.x request's Host header. Pure functions over a buffer, so they can be fuzzed.
 */
export type Sniffed =
  /** Not enough bytes yet to decide. */
  | { kind: 'more' }
  /** Nothing recognisable: goes to the default instance. */
  | { kind: 'plain' }
  | { kind: 'tls', name?: string }
  /** `consumed` bytes (the request) are answered by the server, not relayed. */
  | { kind: 'connect', name: string, consumed: number }
  /** `consumed` bytes (the prefix) are stripped before relaying. */
  | { kind: 'prefix', name: string, consumed: number }
  | { kind: 'http', name?: string }

export const PROXY_PREFIX = Buffer.from('PROXY->')
/** Longest name reported: any DNS name (253) fits; instance names are far shorter. */
export const MAX_SNIFFED_NAME = 255
const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE'].map(m => Buffer.from(m + ' '))
const HEADERS_END = Buffer.from('\r\n\r\n')

export function sniff (buf: Buffer): Sniffed {
  if (buf.length === 0) return { kind: 'more' }
  if (buf[0] === 0x16) return sniffTls(buf)
  if (isPrefixOf(buf, PROXY_PREFIX)) {
    if (buf.length < PROXY_PREFIX.length + 1) return { kind: 'more' }
    const len = buf[PROXY_PREFIX.length]
    const end = PROXY_PREFIX.length + 1 + len
    if (buf.length < end) return { kind: 'more' }
    return { kind: 'prefix', name: safeName(buf.subarray(PROXY_PREFIX.length + 1, end).toString('latin1')), consumed: end }
  }
  if (isPrefixOf(buf, Buffer.from('CONNECT '))) {
    const end = buf.indexOf(HEADERS_END)
    if (end < 0) return { kind: 'more' }
    const target = /^CONNECT ([^ \r\n]+) HTTP\/1\.[01]\r\n/.exec(buf.subarray(0, end + 2).toString('latin1'))
    if (target === null) return { kind: 'plain' }
    return { kind: 'connect', name: safeName(hostPart(target[1])), consumed: end + HEADERS_END.length }
  }
  const method = HTTP_METHODS.find(m => isPrefixOf(buf, m))
  if (method !== undefined) {
    if (buf.length < method.length) return { kind: 'more' }
    const end = buf.indexOf(HEADERS_END)
    if (end < 0) return { kind: 'more' }
    const host = /\r\nhost:[ \t]*([^\r\n]*)/i.exec(buf.subarray(0, end + 2).toString('latin1'))
    return host === null ? { kind: 'http' } : { kind: 'http', name: safeName(hostPart(host[1].trim())) }
  }
  return { kind: 'plain' }
}

/**
 * Names come from anyone who can reach a frontend port and end up in log lines, events and error
 * replies: bytes outside printable ASCII are escaped as \xNN and the length is bounded. Routing
 * loses nothing: instance names are printable ASCII of at most 128 characters.
 */
function safeName (raw: string): string {
  return raw.replace(/[^\x20-\x7e]/g, c => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`).slice(0, MAX_SNIFFED_NAME)
}

function isPrefixOf (buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length)
  return buf.subarray(0, n).equals(prefix.subarray(0, n))
}

/** `host:port`, `[v6]:port` or `host` -> host. */
function hostPart (target: string): string {
  const v6 = /^\[([^\]]*)\]/.exec(target)
  if (v6 !== null) return v6[1]
  const i = target.lastIndexOf(':')
  return i >= 0 ? target.slice(0, i) : target
}

/** Walks a TLS record holding a ClientHello to its server_name extension (RFC 8446 4.1.2, RFC 6066 3). */
function sniffTls (buf: Buffer): Sniffed {
  if (buf.length < 5) return { kind: 'more' }
  const recordLen = buf.readUInt16BE(3)
  if (buf.length < 5 + recordLen) return { kind: 'more' }
  const hello = buf.subarray(5, 5 + recordLen)
  if (hello.length < 4 || hello[0] !== 0x01) return { kind: 'tls' }
  let p = 4 + 2 + 32 // handshake header, legacy_version, random
  const skip = (lenBytes: 1 | 2): boolean => {
    if (p + lenBytes > hello.length) return false
    const n = lenBytes === 1 ? hello[p] : hello.readUInt16BE(p)
    p += lenBytes + n
    return p <= hello.length
  }
  if (!skip(1) || !skip(2) || !skip(1)) return { kind: 'tls' } // session id, cipher suites, compression
  if (p + 2 > hello.length) return { kind: 'tls' }
  const extEnd = Math.min(hello.length, p + 2 + hello.readUInt16BE(p))
  p += 2
  while (p + 4 <= extEnd) {
    const type = hello.readUInt16BE(p)
    const len = hello.readUInt16BE(p + 2)
    const body = hello.subarray(p + 4, Math.min(extEnd, p + 4 + len))
    p += 4 + len
    if (type !== 0) continue
    // server_name_list: u16 length, then entries of u8 type (0 = host_name), u16 length, name
    let q = 2
    while (q + 3 <= body.length) {
      const nameType = body[q]
      const nameLen = body.readUInt16BE(q + 1)
      if (q + 3 + nameLen > body.length) break
      if (nameType === 0) return { kind: 'tls', name: safeName(body.subarray(q + 3, q + 3 + nameLen).toString('latin1')) }
      q += 3 + nameLen
    }
  }
  return { kind: 'tls' }
}
