import { expect } from 'chai'
import { MAX_VARINT_BYTES, UvarintReader, writeUvarint } from '../../../protocol/mux/varint.js'

const enc = (v: number): string => {
  const b = Buffer.alloc(MAX_VARINT_BYTES)
  return b.subarray(0, writeUvarint(v, b, 0)).toString('hex')
}
const dec = (hex: string): Array<number | undefined> => {
  const r = new UvarintReader()
  return [...Buffer.from(hex, 'hex')].map(b => r.feed(b))
}

describe('unit: uvarint (multiformats unsigned-varint)', function () {
  it('golden encodings', function () {
    expect(enc(0)).to.equal('00')
    expect(enc(1)).to.equal('01')
    expect(enc(127)).to.equal('7f')
    expect(enc(128)).to.equal('8001')
    expect(enc(255)).to.equal('ff01')
    expect(enc(300)).to.equal('ac02')
    expect(enc(16384)).to.equal('808001')
    expect(enc(2 ** 32)).to.equal('8080808010')
    expect(enc(Number.MAX_SAFE_INTEGER)).to.equal('ffffffffffffff0f')
  })

  it('writes at an offset and answers the end', function () {
    const b = Buffer.alloc(6, 0xee)
    expect(writeUvarint(300, b, 2)).to.equal(4)
    expect(b.toString('hex')).to.equal('eeeeac02eeee')
  })

  it('the reader answers undefined until the last byte, then the value, and starts afresh', function () {
    expect(dec('ac02')).to.deep.equal([undefined, 300])
    expect(dec('00ac027f')).to.deep.equal([0, undefined, 300, 127])
    expect(dec('ffffffffffffff0f')).to.deep.equal([...Array(7).fill(undefined), Number.MAX_SAFE_INTEGER])
  })

  it('round-trips powers of two and their neighbours up to 2^53-1', function () {
    for (let e = 0; e <= 53; e++) {
      for (const v of [2 ** e - 1, 2 ** e, 2 ** e + 1]) {
        if (v > Number.MAX_SAFE_INTEGER) continue
        const d = dec(enc(v))
        expect(d.at(-1)).to.equal(v)
        expect(d.slice(0, -1).every(x => x === undefined)).to.equal(true)
      }
    }
  })

  it('accepts a non-minimal encoding (the spec allows up to 9 bytes)', function () {
    expect(dec('8100').at(-1)).to.equal(1)
  })

  it('refuses more than 9 bytes and values past 2^53', function () {
    const r = new UvarintReader()
    for (let i = 0; i < 9; i++) r.feed(0x80)
    expect(() => r.feed(0x80)).to.throw(RangeError, 'longer than 9 bytes')
    const big = new UvarintReader()
    for (let i = 0; i < 8; i++) big.feed(0xff)
    expect(() => big.feed(0x7f)).to.throw(RangeError, '2^53')
  })
})
