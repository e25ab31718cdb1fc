import { expect } from 'chai'
import fc from 'fast-check'
import { PortPool } from '../../../server/port-pool.js'

const drain = (pool: PortPool): number[] => {
  const out: number[] = []
  for (let p = pool.take(); p !== undefined; p = pool.take()) out.push(p)
  return out
}

describe('unit: PortPool', function () {
  it('hands out each port of its range once, lowest first, then nothing', function () {
    const pool = new PortPool(8000, 3)
    expect(drain(pool)).to.deep.equal([8000, 8001, 8002])
    expect(pool.take()).to.equal(undefined)
  })

  it('gives the preferred port when it is free, another one when it is not', function () {
    const pool = new PortPool(8000, 3)
    expect(pool.take(8002)).to.equal(8002)
    expect(pool.take(8002)).to.equal(8000)
  })

  it('claim makes a port busy; release gives it back; ports outside the range are never added', function () {
    const pool = new PortPool(8000, 2)
    pool.claim(8000)
    pool.release(9000)
    expect(drain(pool)).to.deep.equal([8001])
    pool.release(8000)
    expect(pool.take()).to.equal(8000)
  })

  it('contains exactly first .. first + count - 1', function () {
    const pool = new PortPool(8000, 100)
    expect([7999, 8000, 8099, 8100].map(p => pool.contains(p))).to.deep.equal([false, true, true, false])
  })

  it('never hands out a port twice or one outside its range, whatever the order of calls', function () {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('take' as const), preferred: fc.option(fc.integer({ min: 7990, max: 8030 }), { nil: undefined }) }),
      fc.record({ kind: fc.constant('release' as const), index: fc.nat() }),
      fc.record({ kind: fc.constant('claim' as const), port: fc.integer({ min: 7990, max: 8030 }) })
    )
    fc.assert(fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
      const pool = new PortPool(8000, 20)
      const held = new Set<number>()
      for (const o of ops) {
        if (o.kind === 'take') {
          const p = pool.take(o.preferred)
          if (p === undefined) { expect(held.size).to.equal(20); continue }
          expect(held.has(p), `port ${p} handed out twice`).to.equal(false)
          expect(pool.contains(p)).to.equal(true)
          held.add(p)
        } else if (o.kind === 'release' && held.size > 0) {
          const p = [...held][o.index % held.size]
          held.delete(p)
          pool.release(p)
        } else if (o.kind === 'claim' && !held.has(o.port)) {
          pool.claim(o.port)
          if (pool.contains(o.port)) held.add(o.port)
        }
      }
    }))
  })
})
