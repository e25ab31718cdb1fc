import { expect } from 'chai'
import fc from 'fast-check'
import { PROXY_PREFIX, sniff } from '../../server/sniff.js'
import { realClientHello } from '../fixtures/net.js'
import { PRINTABLE_ASCII, bytesOf, fuzzParams, loadCorpus } from './fuzz.js'
import type { Sniffed } from '../../server/sniff.js'
import type { ByteCase } from './fuzz.js'

/** Longest name a sniffer may return: a DNS name (253) fits, a 64 KiB header value does not. */
const MAX_SNIFFED_NAME = 255

/**
 * The sniffer's contract, for any bytes: it never throws; it says 'more' or decides; what it
 * consumes lies within the buffer; names are bounded and printable (they go to logs, error
 * replies and instance lookups); and a decision, once made, does not change when more bytes
 * arrive (routing must not depend on how TCP split the first flight).
 */
function checkSniff (buf: Buffer, more: Buffer): Sniffed {
  let s: Sniffed
  try {
    s = sniff(buf)
  } catch (err) {
    expect.fail(`sniff threw ${String(err)} on ${buf.toString('hex')}`)
  }
  expect(['more', 'plain', 'tls', 'connect', 'prefix', 'http']).to.include(s.kind)
  if (buf.length === 0) expect(s.kind).to.equal('more')
  if (s.kind === 'connect' || s.kind === 'prefix') {
    expect(Number.isInteger(s.consumed)).to.equal(true)
    expect(s.consumed).to.be.within(1, buf.length)
  }
  if ('name' in s && s.name !== undefined) {
    expect(s.name.length, `name of ${s.name.length} characters`).to.be.at.most(MAX_SNIFFED_NAME)
    expect(PRINTABLE_ASCII.test(s.name), `name ${JSON.stringify(s.name)} is not printable`).to.equal(true)
  }
  if (s.kind !== 'more') {
    const later = sniff(Buffer.concat([buf, more]))
    expect(later, `decision changed when ${more.length} bytes were appended to ${buf.toString('hex')}`).to.deep.equal(s)
  } else {
    // 'more' on a buffer means 'more' on every prefix of it too.
    for (let i = 0; i < buf.length; i += Math.max(1, buf.length >> 3)) expect(sniff(buf.subarray(0, i)).kind).to.equal('more')
  }
  return s
}

// ---- Generators ---------------------------------------------------------------------------------

const u16 = (n: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16BE(n & 0xffff, 0); return b }
const u24 = (n: number): Buffer => Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff])

interface HelloSpec {
  names: Array<{ type: number, name: Uint8Array }>
  sessionId: Uint8Array
  suites: Uint8Array
  extraBefore: Array<{ type: number, body: Uint8Array }>
  extraAfter: Array<{ type: number, body: Uint8Array }>
}

/** A syntactically faithful ClientHello (RFC 8446 4.1.2) with an SNI extension (RFC 6066 3). */
function clientHello (h: HelloSpec): Buffer {
  const ext = (type: number, body: Buffer | Uint8Array): Buffer => Buffer.concat([u16(type), u16(body.length), body])
  const list = Buffer.concat(h.names.map(n => Buffer.concat([Buffer.from([n.type]), u16(n.name.length), n.name])))
  const sni = ext(0, Buffer.concat([u16(list.length), list]))
  const exts = Buffer.concat([...h.extraBefore.map(e => ext(e.type, e.body)), sni, ...h.extraAfter.map(e => ext(e.type, e.body))])
  const body = Buffer.concat([
    Buffer.from([0x03, 0x03]), Buffer.alloc(32, 7),
    Buffer.from([h.sessionId.length]), h.sessionId,
    u16(h.suites.length), h.suites,
    Buffer.from([1, 0]),
    u16(exts.length), exts
  ])
  const hs = Buffer.concat([Buffer.from([0x01]), u24(body.length), body])
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(hs.length), hs])
}

const hostName = fc.oneof(
  fc.domain().map(d => Buffer.from(d)),
  fc.uint8Array({ maxLength: 40 }),
  fc.constantFrom('box1', 'a\nb', 'x\u0000y', 'é.example', '').map(s => Buffer.from(s, 'latin1')),
  fc.integer({ min: 250, max: 600 }).map(n => Buffer.alloc(n, 0x61))
)
const extension = fc.record({ type: fc.integer({ min: 1, max: 0xffff }), body: fc.uint8Array({ maxLength: 24 }) })
const helloSpec = fc.record({
  names: fc.array(fc.record({ type: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 })), name: hostName }), { minLength: 0, maxLength: 3 }),
  sessionId: fc.uint8Array({ maxLength: 32 }),
  suites: fc.uint8Array({ minLength: 2, maxLength: 16 }),
  extraBefore: fc.array(extension, { maxLength: 3 }),
  extraAfter: fc.array(extension, { maxLength: 2 })
})

/** Flip, overwrite, truncate or re-length: the ways a hostile or broken peer bends a valid hello. */
const mutate = (base: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> => fc.tuple(base, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.option(fc.nat()))
  .map(([b, edits, cut]) => {
    const out = Buffer.from(b)
    for (const [at, value] of edits) if (out.length > 0) out[at % out.length] = value
    return cut === null ? out : out.subarray(0, cut % (out.length + 1))
  })

const tlsInput = fc.oneof(helloSpec.map(clientHello), mutate(helloSpec.map(clientHello)))

const header = fc.tuple(fc.constantFrom('Host', 'host', 'HOST', 'X-Host', 'Hostname'), fc.constantFrom(':', ': ', ':\t', ' : '), fc.oneof(fc.domain(), fc.string({ maxLength: 30 }), fc.string({ unit: 'binary', maxLength: 20 }), fc.constantFrom('[::1]:80', 'a:b:c', 'x\u0000y', 'a'.repeat(300), '')))
  .map(([k, sep, v]) => `${k}${sep}${v}`)
const httpInput = fc.tuple(
  fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT', 'GE', 'get', 'BREW'),
  fc.oneof(fc.constantFrom('/', '*', 'box2:22', '[fd00::1]:443', 'a b', ''), fc.string({ maxLength: 20 })),
  fc.constantFrom(' HTTP/1.1', ' HTTP/1.0', ' HTTP/2', '', ' HTTP/1.1 extra'),
  fc.array(header, { maxLength: 3 }),
  fc.constantFrom('\r\n\r\n', '\r\n', '\n\n', '', '\r\n\r\nbody'),
  fc.string({ maxLength: 10 })
).map(([m, target, version, headers, end, tail]) => Buffer.from(`${m} ${target}${version}\r\n${headers.join('\r\n')}${end}${tail}`, 'latin1'))

const prefixInput = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 300 }), fc.boolean())
  .map(([len, bytes, honest]) => Buffer.concat([PROXY_PREFIX, Buffer.from([honest ? Math.min(len, bytes.length) : len]), bytes]))

const anyInput = fc.oneof(
  { arbitrary: fc.uint8Array({ maxLength: 64 }).map(b => Buffer.from(b)), weight: 2 },
  { arbitrary: tlsInput, weight: 4 },
  { arbitrary: mutate(httpInput), weight: 1 },
  { arbitrary: httpInput, weight: 3 },
  { arbitrary: prefixInput, weight: 2 },
  { arbitrary: mutate(prefixInput), weight: 1 }
)
const appended = fc.oneof(fc.uint8Array({ maxLength: 64 }).map(b => Buffer.from(b)), anyInput)


describe('fuzz: first-bytes sniffer (fast-check, fixed seed)', function () {
  this.timeout(60_000)
  const corpus = loadCorpus<ByteCase>('sniff.json')
  let real: Buffer

  before(async function () { real = await realClientHello('box1.example.test') })

  it('corpus: every case found so far keeps the contract', function () {
    expect(corpus.length).to.be.greaterThan(0)
    for (const c of corpus) checkSniff(bytesOf(c), Buffer.from('GET / HTTP/1.1\r\n\r\n'))
  })

  it('random and structured first flights (TLS, HTTP, CONNECT, PROXY->): the contract holds', function () {
    fc.assert(fc.property(anyInput, appended, (buf, more) => { checkSniff(buf, more) }),
      fuzzParams(6000, corpus.map(c => [bytesOf(c), Buffer.alloc(0)] as [Buffer, Buffer])))
  })

  it('a well-formed ClientHello yields its first host_name, whatever surrounds it', function () {
    fc.assert(fc.property(helloSpec, (spec) => {
      const s = checkSniff(clientHello(spec), Buffer.alloc(0))
      expect(s.kind).to.equal('tls')
      const first = spec.names.find(n => n.type === 0)
      if (first === undefined) { expect(s).to.deep.equal({ kind: 'tls' }); return }
      // Bytes outside printable ASCII come back escaped as \xNN, and the name is cut at 255.
      const escaped = [...Buffer.from(first.name)].map(b => b >= 0x20 && b <= 0x7e ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`).join('')
      expect(s).to.deep.equal({ kind: 'tls', name: escaped.slice(0, MAX_SNIFFED_NAME) })
    }), fuzzParams(3000))
  })

  it('a real ClientHello split at every byte: "more" until the record is whole, then the same answer', function () {
    const whole = sniff(real)
    expect(whole).to.deep.equal({ kind: 'tls', name: 'box1.example.test' })
    for (let i = 0; i < real.length; i++) expect(sniff(real.subarray(0, i)).kind, `at ${i}`).to.equal('more')
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (tail) => {
      expect(sniff(Buffer.concat([real, tail]))).to.deep.equal(whole)
    }), fuzzParams(300))
  })

  it('mutated real ClientHellos: never throws, bounded printable names', function () {
    fc.assert(fc.property(mutate(fc.constant(real)), appended, (buf, more) => { checkSniff(buf, more) }), fuzzParams(3000))
  })
})
