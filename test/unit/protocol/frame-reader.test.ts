import { expect } from 'chai'
import fc from 'fast-check'
import { FrameReader } from '../../../protocol/link/websocket/frame-reader.js'
import type { WebSocketProtocolError } from '../../../protocol/link/websocket/frame-reader.js'

/** One frame as the test writes it (independently of the product's writer). */
interface Frame { fin: boolean, opcode: number, payload: Buffer, key?: Buffer, rsv?: number, lengthBytes?: 0 | 2 | 8 }

function encode ({ fin, opcode, payload, key, rsv = 0, lengthBytes }: Frame): Buffer {
  const len = payload.length
  const ext = lengthBytes ?? (len < 126 ? 0 : len < 65536 ? 2 : 8)
  const head = Buffer.alloc(2 + ext + (key !== undefined ? 4 : 0))
  head[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode
  head[1] = (key !== undefined ? 0x80 : 0) | (ext === 0 ? len : ext === 2 ? 126 : 127)
  if (ext === 2) head.writeUInt16BE(len, 2)
  if (ext === 8) head.writeBigUInt64BE(BigInt(len), 2)
  if (key === undefined) return Buffer.concat([head, payload])
  key.copy(head, 2 + ext)
  return Buffer.concat([head, Buffer.from(payload.map((b, i) => b ^ key[i & 3]))])
}

interface Read { data: Buffer, controls: string[], errors: WebSocketProtocolError[], pieces: Buffer[] }

/** Feeds `bytes` cut at `cuts` (sorted offsets) to a fresh reader. */
function read (bytes: Buffer, cuts: number[], masked = true, maxMessageBytes = 1 << 20): Read {
  const out: Read = { data: Buffer.alloc(0), controls: [], errors: [], pieces: [] }
  const reader = new FrameReader({
    data: (p) => out.pieces.push(Buffer.from(p)),
    control: (op, p) => out.controls.push(`${op}:${p.toString('hex')}`),
    fail: (e) => out.errors.push(e)
  }, { masked, maxMessageBytes })
  let at = 0
  for (const cut of [...cuts, bytes.length]) {
    // A copy per chunk: the reader unmasks in place, and each chunk is the socket's own buffer.
    reader.push(Buffer.from(bytes.subarray(at, cut)))
    at = cut
  }
  out.data = Buffer.concat(out.pieces)
  return out
}

const keyArb = fc.oneof(fc.constant(Buffer.alloc(4)), fc.uint8Array({ minLength: 4, maxLength: 4 }).map(b => Buffer.from(b)))

/** A binary message cut into fragments, with control frames between them. */
const messageArb = fc.record({
  parts: fc.array(fc.uint8Array({ maxLength: 300 }).map(b => Buffer.from(b)), { minLength: 1, maxLength: 4 }),
  pings: fc.array(fc.uint8Array({ maxLength: 125 }).map(b => Buffer.from(b)), { maxLength: 2 }),
  keys: fc.array(keyArb, { minLength: 6, maxLength: 6 })
})

interface Message { parts: Buffer[], pings: Buffer[], keys: Buffer[] }

function framesOf (messages: Message[]): { bytes: Buffer, data: Buffer, controls: string[] } {
  const frames: Buffer[] = []
  const data: Buffer[] = []
  const controls: string[] = []
  for (const m of messages) {
    m.parts.forEach((part, i) => {
      frames.push(encode({ fin: i === m.parts.length - 1, opcode: i === 0 ? 2 : 0, payload: part, key: m.keys[i] }))
      data.push(part)
      const ping = m.pings[i]
      if (ping !== undefined) {
        frames.push(encode({ fin: true, opcode: 9, payload: ping, key: m.keys[5] }))
        controls.push(`9:${ping.toString('hex')}`)
      }
    })
  }
  return { bytes: Buffer.concat(frames), data: Buffer.concat(data), controls }
}

describe('unit: WebSocket frame reader', function () {
  it('random fragmented messages with control frames between, masks random and zero: the same at every split', function () {
    fc.assert(fc.property(fc.array(messageArb, { minLength: 1, maxLength: 4 }), (messages) => {
      const { bytes, data, controls } = framesOf(messages)
      const whole = read(bytes, [])
      expect(whole.errors).to.deep.equal([])
      expect(whole.data.equals(data)).to.equal(true)
      expect(whole.controls).to.deep.equal(controls)
      for (let cut = 1; cut < bytes.length; cut++) {
        const split = read(bytes, [cut])
        expect(split.errors).to.deep.equal([])
        expect(split.data.equals(data)).to.equal(true)
        expect(split.controls).to.deep.equal(controls)
      }
      const bytewise = read(bytes, Array.from({ length: bytes.length - 1 }, (_, i) => i + 1))
      expect(bytewise.data.equals(data)).to.equal(true)
      expect(bytewise.controls).to.deep.equal(controls)
    }), { numRuns: 150 })
  })

  it('7-, 16- and 64-bit lengths, including non-minimal encodings', function () {
    for (const len of [0, 1, 125, 126, 127, 65535, 65536, 200_000]) {
      for (const lengthBytes of [undefined, 8] as const) {
        const payload = Buffer.alloc(len, len & 0xff)
        const r = read(encode({ fin: true, opcode: 2, payload, key: Buffer.from([1, 2, 3, 4]), lengthBytes }), [3, 7])
        expect(r.errors, `${len}`).to.deep.equal([])
        expect(r.data.equals(payload), `${len}`).to.equal(true)
      }
    }
  })

  it('hands payload on as views of the pushed chunks, never gathered', function () {
    const payload = Buffer.alloc(64 * 1024, 7)
    const bytes = encode({ fin: true, opcode: 2, payload, key: Buffer.alloc(4) })
    const chunk = Buffer.from(bytes)
    const pieces: Buffer[] = []
    new FrameReader({ data: (p) => pieces.push(p), control: () => {}, fail: (e) => { throw e } }, { masked: true, maxMessageBytes: 1 << 20 }).push(chunk)
    expect(pieces).to.have.length(1)
    expect(pieces[0].buffer).to.equal(chunk.buffer)
  })

  const bad: Array<[string, Frame[], number, RegExp]> = [
    ['RSV bits set', [{ fin: true, opcode: 2, payload: Buffer.from('x'), key: Buffer.alloc(4), rsv: 4 }], 1002, /RSV/],
    ['a text frame', [{ fin: true, opcode: 1, payload: Buffer.from('hi'), key: Buffer.alloc(4) }], 1003, /text message/],
    ['an unknown data opcode', [{ fin: true, opcode: 3, payload: Buffer.alloc(0), key: Buffer.alloc(4) }], 1002, /unknown data opcode/],
    ['an unknown control opcode', [{ fin: true, opcode: 0xb, payload: Buffer.alloc(0), key: Buffer.alloc(4) }], 1002, /unknown control opcode/],
    ['a fragmented ping', [{ fin: false, opcode: 9, payload: Buffer.alloc(1), key: Buffer.alloc(4) }], 1002, /fragmented/],
    ['a ping of 126 bytes', [{ fin: true, opcode: 9, payload: Buffer.alloc(126), key: Buffer.alloc(4) }], 1002, /control frame of 126/],
    ['a continuation with no message', [{ fin: true, opcode: 0, payload: Buffer.alloc(3), key: Buffer.alloc(4) }], 1002, /continuation/],
    ['a new message inside a fragmented one', [
      { fin: false, opcode: 2, payload: Buffer.alloc(3), key: Buffer.alloc(4) },
      { fin: true, opcode: 2, payload: Buffer.alloc(3), key: Buffer.alloc(4) }], 1002, /new message inside/],
    ['an unmasked client frame', [{ fin: true, opcode: 2, payload: Buffer.alloc(3) }], 1002, /must be masked/],
    ['a message over the limit in fragments', [
      { fin: false, opcode: 2, payload: Buffer.alloc(600), key: Buffer.alloc(4) },
      { fin: true, opcode: 0, payload: Buffer.alloc(600), key: Buffer.alloc(4) }], 1009, /more than 1000 bytes/]
  ]
  for (const [what, frames, code, message] of bad) {
    it(`${what}: fails once with close code ${code}, at any split, and reads nothing after`, function () {
      const bytes = Buffer.concat([...frames.map(encode), encode({ fin: true, opcode: 2, payload: Buffer.from('after'), key: Buffer.alloc(4) })])
      for (let cut = 0; cut < bytes.length; cut++) {
        const r = read(bytes, cut === 0 ? [] : [cut], true, 1000)
        expect(r.errors.map(e => e.closeCode)).to.deep.equal([code])
        expect(r.errors[0].message).to.match(message)
        expect(r.errors[0].code).to.equal('ERR_REVERSELB_WEBSOCKET')
        expect(r.data.toString()).not.to.contain('after')
      }
    })
  }

  it('a masked server frame is refused on the client side', function () {
    const r = read(encode({ fin: true, opcode: 2, payload: Buffer.alloc(3), key: Buffer.alloc(4) }), [], false)
    expect(r.errors.map(e => e.message)).to.deep.equal(['WebSocket protocol error: a server frame must not be masked'])
  })

  it('a 64-bit length beyond any limit fails at the header, before any payload is awaited', function () {
    const head = Buffer.from([0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])
    const r = read(head, [5])
    expect(r.errors.map(e => e.closeCode)).to.deep.equal([1009])
  })

  it('random bytes: never throws, fails at most once, and holds no payload back', function () {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.nat(2000), { maxLength: 5 }), (raw, cuts) => {
      const bytes = Buffer.from(raw)
      const r = read(bytes, [...new Set(cuts.filter(c => c > 0 && c < bytes.length))].sort((a, b) => a - b))
      expect(r.errors.length).to.be.at.most(1)
      expect(r.data.length).to.be.at.most(bytes.length)
    }), { numRuns: 500 })
  })
})
