import { expect } from 'chai'
import fc from 'fast-check'
import {
  MAX_BACKEND_ACCEPT_BACKLOG, MAX_CONTROL_MESSAGE_BYTES, MAX_HOST_LENGTH, MAX_NAME_LENGTH, MAX_TARGET_ADDRESSES,
  ProtocolError, decodeFrame, encodeFrame, splitServiceName, validateStreamAck, validateStreamHeader, validateTunnelData,
  validateTunnelDataResponse
} from '../../protocol/index.js'
import { CONTROL, PRINTABLE_ASCII, bytesOf, fuzzParams, loadCorpus } from './fuzz.js'
import type { ByteCase } from './fuzz.js'
import type { DecodedFrame } from '../../protocol/index.js'

// ---- What a validator may return: checked independently of the implementation ----------------

const isName = (v: unknown): boolean => typeof v === 'string' && v.length >= 1 && v.length <= MAX_NAME_LENGTH && PRINTABLE_ASCII.test(v)
const isPort = (v: unknown, min = 0): boolean => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= 65535
const isHost = (v: unknown): boolean => typeof v === 'string' && v.length >= 1 && v.length <= MAX_HOST_LENGTH && /^[A-Za-z0-9._:%\-[\]]+$/.test(v)
/** Free text from the peer (errors, addresses) ends up in log lines: bounded, no control characters. */
const isText = (v: unknown, max: number): boolean => typeof v === 'string' && v.length <= max && !CONTROL.test(v)

function expectKeys (o: object, allowed: string[]): void {
  for (const k of Object.keys(o)) expect(allowed, `unexpected key ${JSON.stringify(k)}`).to.include(k)
}

function checkTunnelData (td: ReturnType<typeof validateTunnelData>): void {
  expectKeys(td, ['serviceName', 'instanceName', 'frontendData', 'backendAcceptBacklog', 'targetPort', 'targetAddresses'])
  expect(isName(td.serviceName), 'serviceName').to.equal(true)
  expect(splitServiceName(td.serviceName).service).not.to.equal('')
  if (td.instanceName !== undefined) expect(isName(td.instanceName), 'instanceName').to.equal(true)
  expectKeys(td.frontendData, ['port'])
  expect(isPort(td.frontendData.port), 'frontendData.port').to.equal(true)
  expect(Number.isInteger(td.backendAcceptBacklog) && td.backendAcceptBacklog >= 1 && td.backendAcceptBacklog <= MAX_BACKEND_ACCEPT_BACKLOG).to.equal(true)
  expect(isPort(td.targetPort), 'targetPort').to.equal(true)
  expect(Array.isArray(td.targetAddresses) && td.targetAddresses.length <= MAX_TARGET_ADDRESSES).to.equal(true)
  for (const a of td.targetAddresses) expect(isHost(a), `target ${JSON.stringify(a)}`).to.equal(true)
}

function checkResponse (r: ReturnType<typeof validateTunnelDataResponse>): void {
  expectKeys(r, ['id', 'serviceName', 'frontendPort', 'frontendAddress', 'error'])
  if (r.error !== undefined) {
    expect(isText(r.error, 1024), `error ${JSON.stringify(r.error)}`).to.equal(true)
    return
  }
  expect(isName(r.id), `id ${JSON.stringify(r.id)}`).to.equal(true)
  expect(isName(r.serviceName), 'serviceName').to.equal(true)
  expect(isPort(r.frontendPort, 1), 'frontendPort').to.equal(true)
  expect(isText(r.frontendAddress, 300), `frontendAddress ${JSON.stringify(r.frontendAddress)}`).to.equal(true)
}

function checkHeader (h: ReturnType<typeof validateStreamHeader>): void {
  expectKeys(h, ['serviceName', 'sourceAddress', 'destinationAddress'])
  expect(isName(h.serviceName), 'serviceName').to.equal(true)
  expect(isText(h.sourceAddress, 300), `sourceAddress ${JSON.stringify(h.sourceAddress)}`).to.equal(true)
  if (h.destinationAddress !== undefined) expect(isText(h.destinationAddress, 300), 'destinationAddress').to.equal(true)
}

function checkAck (a: ReturnType<typeof validateStreamAck>): void {
  expectKeys(a, ['ok', 'error'])
  expect(a.ok).to.be.a('boolean')
  if (a.error !== undefined) expect(isText(a.error, 1024), `error ${JSON.stringify(a.error)}`).to.equal(true)
}

const VALIDATORS = {
  registration: { validate: validateTunnelData, check: checkTunnelData },
  response: { validate: validateTunnelDataResponse, check: checkResponse },
  header: { validate: validateStreamHeader, check: checkHeader },
  ack: { validate: validateStreamAck, check: checkAck }
} as const
type Kind = keyof typeof VALIDATORS

/**
 * The contract: a validator returns a well-formed message (which validates again to itself) or
 * throws a ProtocolError whose message is safe to log and send back. Nothing else, ever.
 */
function contract (kind: Kind, input: unknown): void {
  const { validate, check } = VALIDATORS[kind]
  let out: unknown
  try {
    out = validate(input)
  } catch (err) {
    expect(err, `${kind}: threw ${String(err)}`).to.be.instanceOf(ProtocolError)
    const msg = (err as Error).message
    expect(msg.length).to.be.within(1, 1024)
    expect(CONTROL.test(msg), `error message with control characters: ${JSON.stringify(msg)}`).to.equal(false)
    return
  }
  check(out as never)
  // What passed travels as JSON: it must survive the trip and validate to the same thing.
  expect((validate as (v: unknown) => unknown)(JSON.parse(JSON.stringify(out)))).to.deep.equal(out)
}

/** The wire path: body bytes -> frame -> decodeFrame -> validator. */
function contractOnBytes (kind: Kind, body: Uint8Array): void {
  const framed = Buffer.alloc(4 + body.length)
  framed.writeUInt32BE(body.length, 0)
  framed.set(body, 4)
  let decoded: DecodedFrame | undefined
  try {
    decoded = decodeFrame(framed, MAX_CONTROL_MESSAGE_BYTES, kind)
  } catch (err) {
    expect(err).to.be.instanceOf(ProtocolError)
    return
  }
  if (body.length > MAX_CONTROL_MESSAGE_BYTES) expect.fail('oversized frame accepted')
  expect(decoded).not.to.equal(undefined)
  contract(kind, decoded?.message)
}

// ---- Generators: near-valid messages with every field sometimes wrong --------------------------

const junk = fc.oneof(
  fc.anything({ maxDepth: 2, withNullPrototype: true, withObjectString: true }),
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(null, undefined, true, false, 0, -1, 1.5, NaN, Infinity, -0, '', [], {}, '__proto__', { __proto__: null }, Object.create(null))
)
const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'binary-ascii', maxLength: 40 }),
  fc.string({ minLength: MAX_NAME_LENGTH - 2, maxLength: MAX_NAME_LENGTH + 2 }),
  fc.constantFrom('a\nb', 'evil\r\nINFO forged', 'tab\there', 'nul\u0000', 'esc\u001b[31m', 'del\u007f', '\u2028', '\u00e9', '\ud800', ':', 'a:', ':a', 'a:b:c', ' ')
)
const nameLike = fc.oneof(fc.stringMatching(/^[a-z][a-z0-9-]{0,12}(:[a-z0-9.]{0,8})?$/), text, junk)
const portLike = fc.oneof(fc.integer({ min: -3, max: 65_540 }), fc.constantFrom(0, 1, 65535, 65536, -1, 2 ** 31, 2 ** 53, 1.5, '80', '0x50'), fc.double(), junk)
const hostLike = fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain(), fc.constantFrom('[::1]', 'a b', 'x\n', '', 'h'.repeat(254), 'fe80::1%eth0'), text, junk)
const addressLike = fc.oneof(fc.ipV4().map(ip => `${ip}:1234`), fc.ipV6().map(ip => `[${ip}]:80`), text, fc.string({ minLength: 295, maxLength: 305 }), junk)
const opt = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined, freq: 3 })

const registration = fc.record({
  serviceName: nameLike,
  instanceName: opt(nameLike),
  token: opt(fc.oneof(fc.string(), junk)),
  frontendData: opt(fc.oneof(fc.record({ port: portLike }, { requiredKeys: [] }), junk)),
  backendAcceptBacklog: opt(portLike),
  targetPort: opt(portLike),
  targetAddresses: fc.oneof(fc.array(hostLike, { maxLength: 4 }), fc.array(fc.constant('127.0.0.1'), { minLength: 60, maxLength: 70 }), junk)
}, { requiredKeys: [] })

const response = fc.oneof(
  fc.record({ id: fc.oneof(fc.uuid(), text, junk), serviceName: nameLike, frontendPort: portLike, frontendAddress: fc.oneof(fc.domain(), fc.constant(''), text, junk) }, { requiredKeys: [] }),
  fc.record({ error: fc.oneof(text, fc.string({ minLength: 1000, maxLength: 1100 }), junk), id: opt(text) }, { requiredKeys: [] })
)
const header = fc.record({ serviceName: nameLike, sourceAddress: addressLike, destinationAddress: opt(addressLike) }, { requiredKeys: [] })
const ack = fc.record({ ok: fc.oneof(fc.boolean(), junk), error: opt(fc.oneof(text, fc.string({ minLength: 1000, maxLength: 1100 }), junk)) }, { requiredKeys: [] })

const messageArbs: Record<Kind, fc.Arbitrary<unknown>> = { registration, response, header, ack }

/** JSON text bytes: valid JSON of any shape, mangled JSON, or raw bytes. */
const bodyBytes = fc.oneof(
  fc.json({ maxDepth: 3 }).map(s => Buffer.from(s)),
  fc.string({ unit: 'binary', maxLength: 80 }).map(s => Buffer.from(s)),
  fc.uint8Array({ maxLength: 80 }),
  fc.integer({ min: 1, max: 20_000 }).map(n => Buffer.from('['.repeat(n) + ']'.repeat(n))),
  fc.integer({ min: 1, max: 20_000 }).map(n => Buffer.from('{"a":'.repeat(n) + '1' + '}'.repeat(n)))
)

interface MessageCase { kind: Kind, input: unknown, note: string }

describe('fuzz: control messages (fast-check, fixed seed)', function () {
  this.timeout(60_000)
  const corpus = loadCorpus<MessageCase>('messages.json')

  it('corpus: every case found so far keeps the contract', function () {
    expect(corpus.length).to.be.greaterThan(0)
    for (const c of corpus) contract(c.kind, c.input)
  })

  for (const kind of Object.keys(VALIDATORS) as Kind[]) {
    it(`${kind}: near-valid messages -> a well-formed message or a ProtocolError (direct and over JSON)`, function () {
      fc.assert(fc.property(messageArbs[kind], (m) => {
        contract(kind, m)
        // The same value as the wire would carry it (undefined fields dropped, NaN -> null...).
        const json = JSON.stringify(m)
        if (json !== undefined) contractOnBytes(kind, Buffer.from(json))
      }), fuzzParams(3000, corpus.filter(c => c.kind === kind).map(c => [c.input] as [unknown])))
    })

    it(`${kind}: arbitrary bytes as the frame body -> a well-formed message or a ProtocolError`, function () {
      fc.assert(fc.property(bodyBytes, (body) => contractOnBytes(kind, body)), fuzzParams(1500))
    })
  }

  it('valid messages survive: a plain registration and its answers are accepted unchanged', function () {
    const td = { serviceName: 'svc:box1', frontendData: { port: 8080 }, backendAcceptBacklog: 2, targetPort: 22, targetAddresses: ['127.0.0.1', 'db.internal', '[::1]'] }
    expect(validateTunnelData(td)).to.deep.equal(td)
    const r = { id: '3f1c1c9e-2b43-4a43-9b0e-2f0f4d1b5a77', serviceName: 'svc:box1', frontendPort: 8080, frontendAddress: 'lb.example.com' }
    expect(validateTunnelDataResponse(r)).to.deep.equal(r)
    expect(validateTunnelDataResponse({ ...r, frontendAddress: '' })).to.deep.equal({ ...r, frontendAddress: '' })
    const h = { serviceName: 'svc', sourceAddress: '[::ffff:127.0.0.1]:51234', destinationAddress: '127.0.0.1:8080' }
    expect(validateStreamHeader(h)).to.deep.equal(h)
    expect(validateStreamAck({ ok: false, error: 'backend unreachable (127.0.0.1:1: ECONNREFUSED)' })).to.deep.equal({ ok: false, error: 'backend unreachable (127.0.0.1:1: ECONNREFUSED)' })
  })
})

describe('fuzz: framing (4-byte length + JSON)', function () {
  this.timeout(60_000)
  const corpus = loadCorpus<ByteCase>('frames.json')

  /** Feeds `bytes` in the given pieces, decoding as readFrame does; returns message and leftover. */
  function decodeInPieces (bytes: Buffer, cuts: number[], maxBytes: number): { message: unknown, rest: Buffer } | 'more' {
    let buf = Buffer.alloc(0)
    const points = [...new Set(cuts.map(c => c % (bytes.length + 1)))].sort((a, b) => a - b)
    let from = 0
    for (const to of [...points, bytes.length]) {
      buf = Buffer.concat([buf, bytes.subarray(from, to)])
      from = to
      const d = decodeFrame(buf, maxBytes, 'frame')
      if (d !== undefined) return { message: d.message, rest: Buffer.concat([buf.subarray(d.length), bytes.subarray(from)]) }
    }
    return 'more'
  }

  it('corpus: byte inputs found so far decode or fail with a ProtocolError', function () {
    for (const c of corpus) {
      try {
        const d = decodeFrame(bytesOf(c), MAX_CONTROL_MESSAGE_BYTES, 'frame')
        if (d !== undefined) expect(d.length).to.be.at.most(bytesOf(c).length)
      } catch (err) {
        expect(err, c.note).to.be.instanceOf(ProtocolError)
      }
    }
  })

  it('any bytes: undefined (need more), a frame within the buffer, or a ProtocolError; stable as bytes arrive', function () {
    const lengthPrefixed = fc.tuple(fc.integer({ min: 0, max: 64 }), fc.uint8Array({ maxLength: 80 })).map(([n, b]) => {
      const out = Buffer.alloc(4 + b.length)
      out.writeUInt32BE(n, 0)
      out.set(b, 4)
      return out
    })
    const input = fc.oneof(fc.uint8Array({ maxLength: 100 }), lengthPrefixed, fc.uint8Array({ minLength: 4, maxLength: 4 }))
    fc.assert(fc.property(input, fc.uint8Array({ maxLength: 20 }), fc.integer({ min: 2, max: 64 }), (bytes, more, maxBytes) => {
      const b = Buffer.from(bytes)
      let d: DecodedFrame | undefined
      try {
        d = decodeFrame(b, maxBytes, 'frame')
      } catch (err) {
        expect(err).to.be.instanceOf(ProtocolError)
        // A frame that is refused stays refused when more bytes come.
        expect(() => decodeFrame(Buffer.concat([b, more]), maxBytes, 'frame')).to.throw(ProtocolError)
        return
      }
      if (d === undefined) {
        if (b.length >= 4) expect(b.length).to.be.below(4 + b.readUInt32BE(0))
        return
      }
      expect(d.length).to.equal(4 + b.readUInt32BE(0))
      expect(d.length).to.be.at.most(b.length)
      expect(b.readUInt32BE(0)).to.be.at.most(maxBytes)
      // More bytes behind a complete frame do not change it.
      expect(decodeFrame(Buffer.concat([b, more]), maxBytes, 'frame')).to.deep.equal(d)
    }), fuzzParams(5000, corpus.map(c => [new Uint8Array(bytesOf(c)), new Uint8Array(0), 64] as [Uint8Array, Uint8Array, number])))
  })

  it('encode -> any split into pieces -> decode gives the message and leaves trailing bytes untouched', function () {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 3 }), fc.uint8Array({ maxLength: 40 }), fc.array(fc.nat(), { maxLength: 8 }), (value, trailing, cuts) => {
      const frame = Buffer.from(encodeFrame(value))
      const wire = Buffer.concat([frame, trailing])
      const got = decodeInPieces(wire, cuts, Math.max(frame.length, 4))
      expect(got).not.to.equal('more')
      if (got === 'more') return
      expect(got.message).to.deep.equal(JSON.parse(JSON.stringify(value)))
      expect(got.rest.equals(Buffer.from(trailing))).to.equal(true)
    }), fuzzParams(3000))
  })

  it('a frame one byte over the limit is refused before its body arrives', function () {
    const head = Buffer.alloc(4)
    head.writeUInt32BE(MAX_CONTROL_MESSAGE_BYTES + 1, 0)
    expect(() => decodeFrame(head, MAX_CONTROL_MESSAGE_BYTES, 'registration')).to.throw(ProtocolError, /exceeds the limit/)
    head.writeUInt32BE(MAX_CONTROL_MESSAGE_BYTES, 0)
    expect(decodeFrame(head, MAX_CONTROL_MESSAGE_BYTES, 'registration')).to.equal(undefined)
  })
})
