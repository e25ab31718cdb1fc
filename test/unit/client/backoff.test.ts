import { expect } from 'chai'
import fc from 'fast-check'
import { Backoff } from '../../../client/backoff.js'

describe('unit: Backoff', function () {
  it('doubles the ceiling per attempt, each delay between half of it and all of it, capped', function () {
    fc.assert(fc.property(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 100_000 }), (base, cap) => {
      const b = new Backoff(base, cap)
      for (let attempt = 0; attempt < 40; attempt++) {
        const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30))
        const d = b.next()
        expect(d).to.be.within(Math.round(ceiling / 2), Math.round(ceiling))
      }
    }))
  })

  it('reset starts again from the base delay', function () {
    const b = new Backoff(100, 30_000)
    for (let i = 0; i < 10; i++) b.next()
    expect(b.next()).to.be.at.least(15_000)
    b.reset()
    expect(b.next()).to.be.within(50, 100)
  })

  it('floorMs raises the delay and still advances the attempt', function () {
    const b = new Backoff(100, 30_000)
    expect(b.next(5000)).to.equal(5000)
    expect(b.next()).to.be.within(100, 200)
  })
})
