import { randomBytes } from 'node:crypto'
import { expect } from 'chai'
import { interopPair } from './peers.js'
import { ROLES, expectReset, roundTrip, sharedScenarios, until } from './scenarios.js'
import type { Pair, TestStream } from './peers.js'
import type { MuxProtocolError } from '../../protocol/mux/index.js'

describe('interop: our mplex with @libp2p/mplex 12', function () {
  this.timeout(60_000)
  sharedScenarios('mplex')

  for (const role of ROLES) {
    describe(`no flow control, ours as ${role}`, function () {
      const bound = 256 * 1024
      let p: Pair
      beforeEach(async function () { p = await interopPair('mplex', role, { maxStreamBufferBytes: bound }) })
      afterEach(function () { p.close() })

      it('a paused stream of ours that falls more than maxStreamBufferBytes behind is reset alone (onStreamOverflow); libp2p hears the reset; other streams go on', async function () {
        const paused = new Promise<TestStream>(resolve => { p.ours.onStream = (s) => { s.pause(); resolve(s) } })
        const t = await p.theirs.open()
        // Sending may stop early: the reset can arrive while libp2p still writes.
        const sending = t.send(randomBytes(2 * bound), 16 * 1024).catch(() => {})
        const ours = await paused
        const err = await ours.closed
        expect((err as MuxProtocolError).code).to.equal('ERR_REVERSELB_MUX_WINDOW_EXCEEDED')
        expect(p.ours.events.overflows).to.have.length(1)
        expect(p.ours.events.overflows[0].bytes).to.be.above(bound)
        expect(ours.received()).to.equal(0)
        expectReset(await t.closed, 'theirs')
        await sending
        await until(() => p.ours.session.streamCount === 0, 'the reset stream to be released')
        expect(p.ours.session.isClosed).to.equal(false)
        await roundTrip(p, 'ours')
        await roundTrip(p, 'theirs')
      })
    })
  }
})
