import { expect } from 'chai'
import { collect, settle, wired } from '../../fixtures/mux.js'
import type { MuxStream, StreamResetError } from '../../../protocol/mux/index.js'
import type { Wired } from '../../fixtures/mux.js'
import type { MuxerName } from '../../../protocol/version.js'

/** Opens a stream on `a` and answers both ends, once `b` has accepted it. */
async function pairOf (w: Wired): Promise<[MuxStream, MuxStream]> {
  const s = w.a.open()
  s.write(Buffer.from('open'))
  await settle()
  const far = w.eb.accepted.at(-1)
  if (far === undefined) throw new Error('not accepted')
  return [s, far]
}

for (const name of ['yamux', 'mplex'] as MuxerName[]) {
  describe(`unit: MuxStream over ${name}, two sessions back to back`, function () {
    let w: Wired
    beforeEach(function () { w = wired(name) })

    it('what arrives before attach() waits in the stream and comes first, in order', async function () {
      const [a, b] = await pairOf(w)
      a.write(Buffer.from('-one'))
      a.write(Buffer.from('-two'))
      await settle()
      expect(b.queuedBytes).to.equal(12)
      const c = collect(b)
      expect(c.data().toString()).to.equal('open-one-two')
      expect(b.queuedBytes).to.equal(0)
    })

    it('pause() holds data and FIN; resume() hands them over in order, FIN last', async function () {
      const [a, b] = await pairOf(w)
      const c = collect(b)
      b.pause()
      expect(b.isPaused).to.equal(true)
      a.write(Buffer.from('1'))
      a.write(Buffer.from('2'))
      a.end()
      await settle()
      expect([c.data().toString(), c.ended]).to.deep.equal(['open', false])
      b.resume()
      expect([c.data().toString(), c.ended]).to.deep.equal(['open12', true])
    })

    it('pause() inside onData stops the next chunk; detach() keeps later data for the next reader', async function () {
      const [a, b] = await pairOf(w)
      const got: string[] = []
      b.attach({ onData: (d) => { got.push(d.toString()); b.pause() }, onEnd: () => {}, onClose: () => {}, onDrain: () => {} })
      a.write(Buffer.from('x'))
      a.write(Buffer.from('y'))
      await settle()
      expect(got).to.deep.equal(['open'])
      b.detach()
      b.resume()
      const c = collect(b)
      expect(c.data().toString()).to.equal('xy')
    })

    it('a reset inside onData stops delivery and reaches the peer', async function () {
      const [a, b] = await pairOf(w)
      const ca = collect(a)
      let calls = 0
      b.pause()
      b.attach({ onData: () => { calls++; b.reset() }, onEnd: () => {}, onClose: () => {}, onDrain: () => {} })
      a.write(Buffer.from('more'))
      await settle()
      b.resume()
      expect(calls).to.equal(1)
      await settle()
      expect((ca.error as StreamResetError).code).to.equal('ERR_REVERSELB_STREAM_RESET_BY_PEER')
      expect(w.a.streamCount + w.b.streamCount).to.equal(0)
    })

    it('FIN each way independently; onClose(undefined) only when both are done; end() twice sends one FIN', async function () {
      const [a, b] = await pairOf(w)
      const ca = collect(a)
      const cb = collect(b)
      a.end()
      a.end()
      expect(() => a.write(Buffer.from('late'))).to.throw('write after end')
      await settle()
      expect([cb.ended, cb.closed, ca.closed]).to.deep.equal([true, false, false])
      b.write(Buffer.from('reply'))
      await settle()
      expect(ca.data().toString()).to.equal('reply')
      b.end()
      await settle()
      expect([ca.ended, ca.closed, cb.closed, ca.error, cb.error]).to.deep.equal([true, true, true, undefined, undefined])
      expect(w.a.streamCount + w.b.streamCount).to.equal(0)
      expect(a.write(Buffer.from('after close'))).to.equal(true)
    })

    it('data after the peer\'s FIN (a broken peer) never reaches the reader, paused or not', async function () {
      const [a, b] = await pairOf(w)
      const c = collect(b)
      const [a2, b2] = await pairOf(w)
      const c2 = collect(b2)
      b2.pause()
      for (const s of [a, a2]) { s.write(Buffer.from('-last')); s.end() }
      await settle()
      // The peer's session forgets its ended direction: make it send anyway, as a broken peer would.
      for (const s of [a, a2]) { s.localEnded = false; s.finSent = false; s.write(Buffer.from('-after-fin')) }
      await settle()
      b2.resume()
      for (const x of [c, c2]) {
        expect(x.data().toString()).to.equal('open-last')
        expect(x.ended).to.equal(true)
      }
    })

    it('attach() to a closed stream reports onClose at once', async function () {
      const [a, b] = await pairOf(w)
      a.reset()
      await settle()
      const c = collect(b)
      expect(c.closed).to.equal(true)
      expect((c.error as StreamResetError).code).to.equal('ERR_REVERSELB_STREAM_RESET_BY_PEER')
    })

    it('closing the session ends every stream on both sides with ERR_REVERSELB_TUNNEL_LOST', async function () {
      const [a, b] = await pairOf(w)
      const [a2, b2] = await pairOf(w)
      const cs = [a, b, a2, b2].map(collect)
      w.a.close()
      await settle()
      for (const c of cs) expect((c.error as StreamResetError).code).to.equal('ERR_REVERSELB_TUNNEL_LOST')
      expect([w.a.isClosed, w.b.isClosed]).to.deep.equal([true, true])
      expect(w.ea.protocolErrors.length + w.eb.protocolErrors.length).to.equal(0)
    })

    it('a full transport: write() answers false, onDrain once after drained()', async function () {
      const [a] = await pairOf(w)
      const c = collect(a)
      w.ta.full = true
      expect(a.write(Buffer.from('x'))).to.equal(false)
      expect(a.write(Buffer.alloc(0))).to.equal(false)
      w.ta.full = false
      w.a.drained()
      w.a.drained()
      expect(c.drains).to.equal(1)
      expect(a.write(Buffer.alloc(0))).to.equal(true)
    })
  })
}
