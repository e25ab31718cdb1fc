import { expect } from 'chai'
import fc from 'fast-check'
import { PortRanges } from '../../../server/port-ranges.js'

describe('unit: PortRanges', function () {
  it('parses single ports and ranges, with spaces and empty parts', function () {
    const r = PortRanges.parse(' 8000-8099, 8888 ,,9000-9010')
    expect(r.ranges).to.deep.equal([[8000, 8099], [8888, 8888], [9000, 9010]])
    expect(r.toString()).to.equal('8000-8099,8888,9000-9010')
    expect([7999, 8000, 8099, 8100, 8888, 8889, 9005].map(p => r.has(p))).to.deep.equal([false, true, true, false, true, false, true])
  })

  for (const bad of ['0', '65536', '9000-8000', '80-', 'abc', '1-2-3', '123456', '-5'] as const) {
    it(`refuses "${bad}" naming it`, function () {
      expect(() => PortRanges.parse(bad)).to.throw(`"${bad}" is not a port or port range`)
    })
  }

  it('refuses an empty list', function () {
    expect(() => PortRanges.parse(' , ')).to.throw('no ports given')
  })

  it('toString parses back to the same ports', function () {
    const range = fc.tuple(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 50 }))
      .map(([lo, n]) => [lo, Math.min(65535, lo + n)] as const)
    fc.assert(fc.property(fc.array(range, { minLength: 1, maxLength: 5 }), fc.integer({ min: 1, max: 65535 }), (ranges, port) => {
      const r = new PortRanges(ranges)
      const back = PortRanges.parse(r.toString())
      expect(back.ranges).to.deep.equal(ranges)
      expect(back.has(port)).to.equal(ranges.some(([lo, hi]) => port >= lo && port <= hi))
    }))
  })
})
