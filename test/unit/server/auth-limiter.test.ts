import { expect } from 'chai'
import { AuthFailureLimiter } from '../../../server/auth-limiter.js'

describe('unit: AuthFailureLimiter', function () {
  it('blocks an address after maxFailures within the window, until its oldest failure leaves it', function () {
    const l = new AuthFailureLimiter(3, 60_000)
    expect(l.fail('a', 1000)).to.equal(false)
    expect(l.fail('a', 2000)).to.equal(false)
    expect(l.blockedFor('a', 2000)).to.equal(0)
    expect(l.fail('a', 3000), 'the failure that crosses the limit').to.equal(true)
    expect(l.blockedFor('a', 3000)).to.equal(58_000)
    expect(l.blockedFor('a', 60_999)).to.equal(1)
    expect(l.blockedFor('a', 61_000)).to.equal(0)
    expect(l.blockedFor('b', 3000), 'other addresses are not affected').to.equal(0)
  })

  it('reports crossing the limit once, not for every later failure', function () {
    const l = new AuthFailureLimiter(2, 60_000)
    expect([1, 2, 3, 4].map(t => l.fail('a', t))).to.deep.equal([false, true, false, false])
  })

  it('forgets failures older than the window', function () {
    const l = new AuthFailureLimiter(2, 1000)
    l.fail('a', 0)
    expect(l.fail('a', 1000)).to.equal(false)
    expect(l.blockedFor('a', 1000)).to.equal(0)
  })

  it('keeps at most maxAddresses addresses, dropping the least recently failed', function () {
    const l = new AuthFailureLimiter(1, 60_000, 2)
    l.fail('a', 0)
    l.fail('b', 1)
    l.fail('a', 2)
    l.fail('c', 3)
    expect(['a', 'b', 'c'].map(x => l.blockedFor(x, 4) > 0)).to.deep.equal([true, false, true])
  })
})
