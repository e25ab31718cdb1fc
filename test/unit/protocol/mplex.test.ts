import { expect } from 'chai'
import type { MplexSession } from '../../../protocol/mux/index.js'
import { MuxProtocolError } from '../../../protocol/mux/index.js'
import { MPLEX_MAX_MESSAGE } from '../../../protocol/mux/mplex.js'
import { SPLITS, collect, feedSplit, lone, mplexFrame, parseMplex, settle, wired } from '../../fixtures/mux.js'
import type { MemoryTransport } from '../../fixtures/mux.js'
import type { MuxSessionOptions, MuxStream, StreamResetError } from '../../../protocol/mux/index.js'
import type { MuxErrorCode } from '../../../protocol/mux/errors.js'

const NEW = 0
const MSG_R = 1
const MSG_I = 2
const CLOSE_R = 3
const CLOSE_I = 4
const RESET_R = 5
const RESET_I = 6
const KiB = 1024

/** One mplex session (the listener) fed by hand; what it sent, parsed. */
function fed (opts: Partial<MuxSessionOptions> = {}): {
  s: MplexSession, t: MemoryTransport, errors: MuxProtocolError[], accepted: MuxStream[], overflows: Array<{ stream: MuxStream, bytes: number }>, closes: Array<Error | undefined>, sent: () => ReturnType<typeof parseMplex>
} {
  const { s, t, events } = lone('mplex', false, opts)
  return {
    s: s as MplexSession,
    t,
    errors: events.protocolErrors,
    accepted: events.accepted,
    overflows: events.overflows,
    closes: events.closes,
    sent: () => parseMplex(t.bytes())
  }
}

describe('unit: mplex codec', function () {
  it('golden frames: NewStream named by its id, Initiator flags on streams we opened', function () {
    const { s, t } = fed()
    const st = s.open()
    st.write(Buffer.from('hi'))
    st.end()
    const st2 = s.open()
    st2.reset()
    expect(t.bytes().toString('hex')).to.equal(
      '000130' + // id 0, NewStream, length 1, "0"
      '02026869' + // id 0, MessageInitiator, "hi"
      '0400' + // id 0, CloseInitiator
      '080131' + // id 1, NewStream, "1"
      '0e00' // id 1, ResetInitiator
    )
    expect(parseMplex(t.bytes()).map(f => f.flag)).to.deep.equal([NEW, MSG_I, CLOSE_I, NEW, RESET_I])
  })

  it('a stream the peer opened answers with Receiver flags; ids above 15 take two-byte headers', function () {
    const { s, t, accepted } = fed()
    s.receive(mplexFrame(300, NEW, Buffer.from('300')))
    expect(accepted.map(a => a.id)).to.deep.equal([300])
    const st = accepted[0]
    st.write(Buffer.from('x'))
    st.end()
    // 300 * 8 + 1 = 2401 = 0xe1 0x12
    expect(t.bytes().toString('hex')).to.equal('e1120178' + 'e31200')
  })

  it('local and remote ids are separate spaces: the peer\'s stream 0 and ours coexist', function () {
    const { s, accepted, sent } = fed()
    const mine = s.open()
    const cm = collect(mine)
    s.receive(mplexFrame(0, NEW))
    const cr = collect(accepted[0])
    s.receive(Buffer.concat([mplexFrame(0, MSG_I, Buffer.from('to theirs')), mplexFrame(0, MSG_R, Buffer.from('to mine'))]))
    expect(cr.data().toString()).to.equal('to theirs')
    expect(cm.data().toString()).to.equal('to mine')
    s.receive(mplexFrame(0, CLOSE_R))
    expect([cm.ended, cr.ended]).to.deep.equal([true, false])
    s.receive(mplexFrame(0, RESET_I))
    expect((cr.error as StreamResetError).code).to.equal('ERR_REVERSELB_STREAM_RESET_BY_PEER')
    expect(cm.closed).to.equal(false)
    expect(sent().map(f => f.flag)).to.deep.equal([NEW])
  })

  it('writes are split into messages of at most 64 KiB', function () {
    const { s, sent } = fed()
    s.open().write(Buffer.alloc(150 * KiB))
    expect(sent().slice(1).map(f => f.payload.length)).to.deep.equal([64 * KiB, 64 * KiB, 22 * KiB])
  })

  describe('protocol errors: connection closed (no GoAway in mplex), onProtocolError with the code', function () {
    const cases: Array<{ what: string, code: MuxErrorCode, bytes: Buffer }> = [
      { what: 'unknown flag 7', code: 'ERR_REVERSELB_MUX_FLAGS', bytes: mplexFrame(1, 7) },
      { what: 'reused stream id', code: 'ERR_REVERSELB_MUX_STREAM_ID', bytes: Buffer.concat([mplexFrame(4, NEW), mplexFrame(4, NEW)]) },
      { what: 'message over 1 MiB', code: 'ERR_REVERSELB_MUX_FRAME_TOO_LARGE', bytes: Buffer.from([0x02, 0x81, 0x80, 0x40]) },
      { what: 'varint longer than 9 bytes', code: 'ERR_REVERSELB_MUX_FRAME_TOO_LARGE', bytes: Buffer.alloc(10, 0x80) },
      { what: 'varint past 2^53', code: 'ERR_REVERSELB_MUX_FRAME_TOO_LARGE', bytes: Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]) }
    ]
    for (const c of cases) {
      for (const split of SPLITS) {
        it(`${c.what} (${split})`, function () {
          const { s, t, errors, closes } = fed()
          const mine = collect(s.open())
          const before = t.frames.length
          feedSplit(s, c.bytes, split)
          expect(errors.map(e => e.code)).to.deep.equal([c.code])
          expect(errors[0]).to.be.instanceOf(MuxProtocolError)
          expect(t.frames.length - before, 'frames sent after the error').to.equal(0)
          expect(t.closeCalls).to.equal(1)
          expect(s.isClosed).to.equal(true)
          expect(closes).to.deep.equal([errors[0]])
          expect((mine.error as StreamResetError).code).to.equal('ERR_REVERSELB_TUNNEL_LOST')
          expect(s.streamCount).to.equal(0)
        })
      }
    }

    it('exactly 1 MiB is accepted', function () {
      const { s, errors, accepted } = fed()
      s.receive(mplexFrame(0, NEW))
      const c = collect(accepted[0])
      s.receive(mplexFrame(0, MSG_I, Buffer.alloc(MPLEX_MAX_MESSAGE)))
      expect(errors).to.have.length(0)
      expect(c.bytes).to.equal(MPLEX_MAX_MESSAGE)
    })
  })

  describe('bounds without flow control', function () {
    it('a stream whose reader falls more than maxStreamBufferBytes behind is reset alone, with onStreamOverflow', function () {
      const { s, accepted, overflows, sent, errors } = fed({ maxStreamBufferBytes: 100 * KiB })
      s.receive(Buffer.concat([mplexFrame(1, NEW), mplexFrame(2, NEW)]))
      const [slow, fast] = accepted
      const cs = collect(slow)
      const cf = collect(fast)
      slow.pause()
      s.receive(mplexFrame(1, MSG_I, Buffer.alloc(60 * KiB)))
      s.receive(mplexFrame(1, MSG_I, Buffer.alloc(40 * KiB)))
      expect(overflows).to.have.length(0)
      s.receive(mplexFrame(1, MSG_I, Buffer.alloc(1)))
      expect(overflows.map(o => [o.stream.id, o.bytes])).to.deep.equal([[1, 100 * KiB + 1]])
      expect((cs.error as MuxProtocolError).code).to.equal('ERR_REVERSELB_MUX_WINDOW_EXCEEDED')
      expect(sent().map(f => [f.id, f.flag])).to.deep.equal([[1, RESET_R]])
      expect(slow.queuedBytes).to.equal(0)
      // The rest of the connection goes on.
      s.receive(mplexFrame(2, MSG_I, Buffer.alloc(200 * KiB)))
      expect(cf.bytes).to.equal(200 * KiB)
      expect(errors).to.have.length(0)
      expect(s.isClosed).to.equal(false)
    })

    it('all streams together are bounded by maxSessionBufferBytes', function () {
      const { s, accepted, overflows } = fed({ maxStreamBufferBytes: 100 * KiB, maxSessionBufferBytes: 150 * KiB })
      s.receive(Buffer.concat([mplexFrame(1, NEW), mplexFrame(2, NEW)]))
      for (const a of accepted) { collect(a); a.pause() }
      s.receive(mplexFrame(1, MSG_I, Buffer.alloc(90 * KiB)))
      s.receive(mplexFrame(2, MSG_I, Buffer.alloc(90 * KiB)))
      expect(overflows.map(o => o.stream.id)).to.deep.equal([2])
      // What stream 2 held was given back: stream 1 may take its own bound again.
      s.receive(mplexFrame(1, MSG_I, Buffer.alloc(10 * KiB)))
      expect(overflows).to.have.length(1)
      expect(accepted[0].queuedBytes).to.equal(100 * KiB)
    })

    it('refused stream opens past maxRefusedStreams close the connection', function () {
      const { s, errors, sent } = fed({ accept: () => false, maxRefusedStreams: 3 })
      for (let id = 0; id < 3; id++) s.receive(mplexFrame(id, NEW))
      expect(s.isClosed).to.equal(false)
      expect(sent().map(f => [f.id, f.flag])).to.deep.equal([[0, RESET_R], [1, RESET_R], [2, RESET_R]])
      s.receive(mplexFrame(3, NEW))
      expect(errors.map(e => e.code)).to.deep.equal(['ERR_REVERSELB_MUX_TOO_MANY_REFUSED'])
      expect(s.isClosed).to.equal(true)
    })

    it('streams past maxInboundStreams are reset without closing the connection', function () {
      const { s, accepted, errors, sent } = fed({ maxInboundStreams: 1, maxRefusedStreams: 0 })
      s.receive(Buffer.concat([mplexFrame(0, NEW), mplexFrame(1, NEW)]))
      expect(accepted.map(a => a.id)).to.deep.equal([0])
      expect(errors).to.have.length(0)
      expect(sent().map(f => [f.id, f.flag])).to.deep.equal([[1, RESET_R]])
    })
  })

  it('two sessions back to back: data, FIN each way, reset', async function () {
    const w = wired('mplex')
    const st = w.a.open()
    const ca = collect(st)
    st.write(Buffer.from('hello'))
    st.end()
    await settle()
    const cb = collect(w.eb.accepted[0])
    await settle()
    expect(cb.data().toString()).to.equal('hello')
    expect(cb.ended).to.equal(true)
    w.eb.accepted[0].write(Buffer.from('world'))
    w.eb.accepted[0].end()
    await settle()
    expect(ca.data().toString()).to.equal('world')
    expect([ca.closed, cb.closed, ca.error, cb.error]).to.deep.equal([true, true, undefined, undefined])
    const r = w.a.open()
    const cr = collect(r)
    r.write(Buffer.from('x'))
    await settle()
    const far = collect(w.eb.accepted[1])
    w.eb.accepted[1].reset()
    await settle()
    expect((cr.error as StreamResetError).code).to.equal('ERR_REVERSELB_STREAM_RESET_BY_PEER')
    expect((far.error as StreamResetError).code).to.equal('ERR_REVERSELB_STREAM_RESET')
    expect(w.a.streamCount + w.b.streamCount).to.equal(0)
  })
})
