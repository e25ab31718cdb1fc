import { expect } from 'chai'
import type { StreamResetError, YamuxSession } from '../../../protocol/mux/index.js'
import { MuxProtocolError } from '../../../protocol/mux/index.js'
import { INITIAL_WINDOW } from '../../../protocol/mux/yamux.js'
import { DEFAULT_MUX_OPTIONS } from '../../../protocol/mux/session.js'
import { SPLITS, collect, feedSplit, lone, parseYamux, settle, wired, yamuxFrame } from '../../fixtures/mux.js'
import type { MemoryTransport } from '../../fixtures/mux.js'
import type { MuxSessionOptions, MuxStream } from '../../../protocol/mux/index.js'
import type { MuxErrorCode } from '../../../protocol/mux/errors.js'

const DATA = 0
const WU = 1
const PING = 2
const GOAWAY = 3
const SYN = 1
const ACK = 2
const FIN = 4
const RST = 8
const KiB = 1024

/** One yamux session fed by hand; what it sent, parsed. */
function fed (client: boolean, opts: Partial<MuxSessionOptions> = {}): {
  s: YamuxSession, t: MemoryTransport, errors: MuxProtocolError[], accepted: MuxStream[], closes: Array<Error | undefined>, sent: () => ReturnType<typeof parseYamux>
} {
  const { s, t, events } = lone('yamux', client, opts)
  return { s: s as YamuxSession, t, errors: events.protocolErrors, accepted: events.accepted, closes: events.closes, sent: () => parseYamux(t.bytes()) }
}

describe('unit: yamux codec', function () {
  describe('protocol errors: GoAway(1), connection closed, onProtocolError with the code', function () {
    // The server's side: the client's streams are odd.
    const cases: Array<{ what: string, code: MuxErrorCode, bytes: () => Buffer }> = [
      { what: 'bad version', code: 'ERR_REVERSELB_MUX_VERSION', bytes: () => yamuxFrame(WU, SYN, 1, 0, undefined, 1) },
      { what: 'unknown frame type', code: 'ERR_REVERSELB_MUX_FRAME_TYPE', bytes: () => yamuxFrame(4, 0, 0, 0) },
      { what: 'data frame longer than the window', code: 'ERR_REVERSELB_MUX_WINDOW_EXCEEDED', bytes: () => yamuxFrame(DATA, SYN, 1, INITIAL_WINDOW + 1) },
      {
        what: 'data beyond what is left of the window',
        code: 'ERR_REVERSELB_MUX_WINDOW_EXCEEDED',
        bytes: () => Buffer.concat([yamuxFrame(DATA, SYN, 1, 200 * KiB, Buffer.alloc(200 * KiB)), yamuxFrame(DATA, 0, 1, 56 * KiB + 1)])
      },
      { what: 'window update overflowing 2^32-1', code: 'ERR_REVERSELB_MUX_WINDOW_OVERFLOW', bytes: () => yamuxFrame(WU, SYN, 1, 0xffffffff - INITIAL_WINDOW + 1) },
      {
        what: 'window updates adding up past 2^32-1',
        code: 'ERR_REVERSELB_MUX_WINDOW_OVERFLOW',
        bytes: () => Buffer.concat([yamuxFrame(WU, SYN, 1, 0x80000000), yamuxFrame(WU, 0, 1, 0x7fffffff)])
      },
      { what: 'reused stream id', code: 'ERR_REVERSELB_MUX_STREAM_ID', bytes: () => Buffer.concat([yamuxFrame(WU, SYN, 5, 0), yamuxFrame(WU, SYN, 5, 0)]) },
      { what: 'stream id lower than one already opened', code: 'ERR_REVERSELB_MUX_STREAM_ID', bytes: () => Buffer.concat([yamuxFrame(WU, SYN, 5, 0), yamuxFrame(WU, SYN, 3, 0)]) },
      { what: 'wrong parity (the server\'s even ids opened by the client)', code: 'ERR_REVERSELB_MUX_STREAM_ID', bytes: () => yamuxFrame(WU, SYN, 2, 0) },
      { what: 'data on stream 0', code: 'ERR_REVERSELB_MUX_STREAM_ID', bytes: () => yamuxFrame(DATA, 0, 0, 1, Buffer.alloc(1)) },
      { what: 'ping on a stream', code: 'ERR_REVERSELB_MUX_STREAM_ID', bytes: () => yamuxFrame(PING, SYN, 1, 7) },
      { what: 'data frame on an unknown stream larger than any window', code: 'ERR_REVERSELB_MUX_FRAME_TOO_LARGE', bytes: () => yamuxFrame(DATA, 0, 9, DEFAULT_MUX_OPTIONS.maxStreamWindowBytes + 1) }
    ]
    for (const c of cases) {
      for (const split of SPLITS) {
        it(`${c.what} (${split})`, function () {
          const { s, t, errors, closes, sent } = fed(false)
          // A stream of ours that must end with the connection.
          const mine = s.open()
          const seen = collect(mine)
          const bytes = c.bytes()
          feedSplit(s, bytes, split)
          expect(errors.map(e => e.code)).to.deep.equal([c.code])
          expect(errors[0]).to.be.instanceOf(MuxProtocolError)
          const frames = sent()
          expect(frames.at(-1)).to.include({ type: GOAWAY, id: 0, length: 1 })
          expect(frames.filter(f => f.type === GOAWAY)).to.have.length(1)
          expect(t.closeCalls).to.equal(1)
          expect(s.isClosed).to.equal(true)
          expect(closes).to.have.length(1)
          expect(closes[0]).to.equal(errors[0])
          expect(seen.closed).to.equal(true)
          expect((seen.error as StreamResetError).code).to.equal('ERR_REVERSELB_TUNNEL_LOST')
          expect(s.streamCount).to.equal(0)
          // Nothing more is read or answered once closed.
          const before = t.frames.length
          s.receive(yamuxFrame(PING, SYN, 0, 1))
          expect(t.frames.length).to.equal(before)
        })
      }
    }

    it('the client side: odd ids from the server are the wrong parity', function () {
      const { errors, s } = fed(true)
      s.receive(yamuxFrame(WU, SYN, 1, 0))
      expect(errors.map(e => e.code)).to.deep.equal(['ERR_REVERSELB_MUX_STREAM_ID'])
    })

    it('GoAway from the peer closes without a protocol error; code 0 is clean, others are reported as ERR_REVERSELB_MUX_GOAWAY', function () {
      const a = fed(true)
      a.s.receive(yamuxFrame(GOAWAY, 0, 0, 0))
      expect(a.errors).to.have.length(0)
      expect(a.closes).to.deep.equal([undefined])
      expect(a.t.closeCalls).to.equal(1)
      const b = fed(true)
      b.s.receive(yamuxFrame(GOAWAY, 0, 0, 2))
      expect(b.errors).to.have.length(0)
      expect((b.closes[0] as MuxProtocolError).code).to.equal('ERR_REVERSELB_MUX_GOAWAY')
    })

    it('close() sends GoAway(0) once and closes the transport', function () {
      const { s, t, sent } = fed(true)
      s.close()
      s.close()
      expect(sent()).to.deep.equal([{ type: GOAWAY, flags: 0, id: 0, length: 0, payload: Buffer.alloc(0) }])
      expect(t.closeCalls).to.equal(1)
      expect(() => s.open()).to.throw('closed')
    })
  })

  describe('SYN / ACK / FIN / RST', function () {
    it('client ids are odd and rising, server ids even; the first frame of a stream carries SYN, later ones none', function () {
      const c = fed(true)
      const s1 = c.s.open()
      const s3 = c.s.open()
      expect([s1.id, s3.id]).to.deep.equal([1, 3])
      expect(c.t.frames).to.have.length(0) // nothing until the stream has something to say
      s1.write(Buffer.from('ab'))
      s1.write(Buffer.from('cd'))
      s3.end()
      expect(c.sent()).to.deep.equal([
        { type: DATA, flags: SYN, id: 1, length: 2, payload: Buffer.from('ab') },
        { type: DATA, flags: 0, id: 1, length: 2, payload: Buffer.from('cd') },
        { type: WU, flags: SYN | FIN, id: 3, length: 0, payload: Buffer.alloc(0) }
      ])
      expect(fed(false).s.open().id).to.equal(2)
    })

    it('an incoming SYN is offered to accept(); our first frame on it carries ACK', function () {
      const { s, accepted, sent } = fed(false)
      s.receive(yamuxFrame(DATA, SYN, 1, 3, Buffer.from('hey')))
      expect(accepted.map(a => a.id)).to.deep.equal([1])
      const c = collect(accepted[0])
      expect(c.data().toString()).to.equal('hey')
      accepted[0].write(Buffer.from('yo'))
      accepted[0].write(Buffer.from('!'))
      expect(sent()).to.deep.equal([
        { type: DATA, flags: ACK, id: 1, length: 2, payload: Buffer.from('yo') },
        { type: DATA, flags: 0, id: 1, length: 1, payload: Buffer.from('!') }
      ])
    })

    it('FIN each way: onEnd at the peer\'s FIN, onClose(undefined) once both are done, stream forgotten', function () {
      const { s, accepted, sent } = fed(false)
      s.receive(yamuxFrame(WU, SYN, 1, 0))
      const st = accepted[0]
      const c = collect(st)
      s.receive(yamuxFrame(DATA, FIN, 1, 1, Buffer.from('x')))
      expect(c.ended).to.equal(true)
      expect(c.closed).to.equal(false)
      st.write(Buffer.from('still going'))
      st.end()
      expect(c.closed).to.equal(true)
      expect(c.error).to.equal(undefined)
      expect(s.streamCount).to.equal(0)
      expect(sent().map(f => f.flags)).to.deep.equal([ACK, FIN])
    })

    it('RST from the peer closes the stream with ERR_REVERSELB_STREAM_RESET_BY_PEER; reset() sends RST', function () {
      const { s, accepted, sent } = fed(false)
      s.receive(Buffer.concat([yamuxFrame(WU, SYN, 1, 0), yamuxFrame(WU, SYN, 3, 0)]))
      const [a, b] = accepted.map(collect)
      s.receive(yamuxFrame(WU, RST, 1, 0))
      expect((a.error as StreamResetError).code).to.equal('ERR_REVERSELB_STREAM_RESET_BY_PEER')
      accepted[1].reset()
      expect((b.error as StreamResetError).code).to.equal('ERR_REVERSELB_STREAM_RESET')
      expect(sent()).to.deep.equal([{ type: WU, flags: RST, id: 3, length: 0, payload: Buffer.alloc(0) }])
      expect(s.streamCount).to.equal(0)
      // Frames in flight for a stream already gone are dropped quietly.
      s.receive(yamuxFrame(DATA, 0, 3, 5, Buffer.from('late!')))
      expect(s.isClosed).to.equal(false)
    })

    it('a refused stream is answered with RST; past maxRefusedStreams the connection is closed as hostile', function () {
      const { s, errors, sent } = fed(false, { accept: () => false, maxRefusedStreams: 2 })
      s.receive(Buffer.concat([yamuxFrame(WU, SYN, 1, 0), yamuxFrame(WU, SYN, 3, 0)]))
      expect(s.isClosed).to.equal(false)
      expect(sent().map(f => [f.flags, f.id])).to.deep.equal([[RST, 1], [RST, 3]])
      s.receive(yamuxFrame(WU, SYN, 5, 0))
      expect(errors.map(e => e.code)).to.deep.equal(['ERR_REVERSELB_MUX_TOO_MANY_REFUSED'])
      expect(sent().at(-1)).to.include({ type: GOAWAY, length: 1 })
    })

    it('streams past maxInboundStreams are reset without closing the connection', function () {
      const { s, accepted, errors, sent } = fed(false, { maxInboundStreams: 2, maxRefusedStreams: 0 })
      s.receive(Buffer.concat([1, 3, 5, 7].map(id => yamuxFrame(WU, SYN, id, 0))))
      expect(accepted.map(a => a.id)).to.deep.equal([1, 3])
      expect(errors).to.have.length(0)
      expect(sent().map(f => [f.flags, f.id])).to.deep.equal([[RST, 5], [RST, 7]])
    })
  })

  describe('windows', function () {
    it('the reader grants more at half the window, doubling it up to maxStreamWindowBytes and never past it', function () {
      const max = 2 * 1024 * KiB
      const { s, accepted, sent, errors } = fed(false, { maxStreamWindowBytes: max })
      s.receive(yamuxFrame(WU, SYN, 1, 0))
      collect(accepted[0])
      // The peer's view: what it may still send, from the updates it received.
      let credit = INITIAL_WINDOW
      const updates: number[] = []
      for (let i = 0; i < 200; i++) {
        const n = Math.min(32 * KiB, credit)
        s.receive(yamuxFrame(DATA, 0, 1, n, Buffer.alloc(n)))
        credit -= n
        for (const f of sent().slice(updates.length)) { updates.push(f.length); credit += f.length }
        expect(credit).to.be.at.most(max)
      }
      expect(errors).to.have.length(0)
      // 256K->512K at 128K read, ->1M at 256K, ->2M at 512K, then max: plain top-ups at half of 2M.
      expect(updates.slice(0, 4)).to.deep.equal([128 * KiB + 256 * KiB, 256 * KiB + 512 * KiB, 512 * KiB + 1024 * KiB, 1024 * KiB])
      expect(new Set(updates.slice(3))).to.deep.equal(new Set([1024 * KiB]))
      const frames = sent()
      expect(frames.every(f => f.type === WU && f.id === 1)).to.equal(true)
      expect(frames.map(f => f.flags)).to.deep.equal([ACK, ...frames.slice(1).map(() => 0)])
    })

    it('no update for a short exchange: less than half a window read sends nothing back', function () {
      const { s, accepted, sent } = fed(false)
      s.receive(yamuxFrame(DATA, SYN, 1, 128 * KiB - 1, Buffer.alloc(128 * KiB - 1)))
      collect(accepted[0])
      expect(sent()).to.have.length(0)
    })

    it('a paused reader grants nothing: the peer is held at one window, which waits in the stream; resume grants it back', function () {
      const { s, accepted, sent, errors } = fed(false)
      s.receive(yamuxFrame(WU, SYN, 1, 0))
      const c = collect(accepted[0])
      accepted[0].pause()
      for (let i = 0; i < 4; i++) s.receive(yamuxFrame(DATA, 0, 1, 64 * KiB, Buffer.alloc(64 * KiB, i)))
      expect(accepted[0].queuedBytes).to.equal(INITIAL_WINDOW)
      expect(c.bytes).to.equal(0)
      expect(sent().filter(f => f.length > 0)).to.have.length(0)
      s.receive(yamuxFrame(DATA, 0, 1, 1, Buffer.alloc(1)))
      expect(errors.map(e => e.code)).to.deep.equal(['ERR_REVERSELB_MUX_WINDOW_EXCEEDED'])
    })

    it('resume delivers in order and grants the window back', function () {
      const { s, accepted, sent } = fed(false)
      s.receive(yamuxFrame(WU, SYN, 1, 0))
      const c = collect(accepted[0])
      accepted[0].pause()
      for (let i = 0; i < 4; i++) s.receive(yamuxFrame(DATA, 0, 1, 64 * KiB, Buffer.alloc(64 * KiB, i)))
      s.receive(yamuxFrame(WU, FIN, 1, 0))
      expect(c.ended).to.equal(false)
      accepted[0].resume()
      expect(c.chunks.map(b => b[0])).to.deep.equal([0, 1, 2, 3])
      expect(c.ended).to.equal(true)
      // FIN came: no more window is granted to a peer that will not send.
      expect(sent().filter(f => f.length > 0)).to.have.length(0)
    })

    it('the writer sends one window, keeps the rest, and goes on (then tells onDrain) when the peer grants more', function () {
      const { s, sent } = fed(true)
      const st = s.open()
      const c = collect(st)
      const big = Buffer.alloc(INITIAL_WINDOW + 100 * KiB, 7)
      expect(st.write(big)).to.equal(false)
      const out = sent()
      expect(out.reduce((n, f) => n + f.payload.length, 0)).to.equal(INITIAL_WINDOW)
      expect(out.every(f => f.length <= 64 * KiB)).to.equal(true)
      st.end() // FIN waits behind the data
      expect(sent().some(f => (f.flags & FIN) !== 0)).to.equal(false)
      s.receive(yamuxFrame(WU, ACK, 1, 50 * KiB))
      expect(c.drains).to.equal(0)
      s.receive(yamuxFrame(WU, 0, 1, 50 * KiB))
      const all = sent()
      expect(all.reduce((n, f) => n + f.payload.length, 0)).to.equal(big.length)
      expect(all.at(-1)?.flags).to.equal(FIN)
      expect(c.drains).to.equal(1)
    })

    it('write() answers false when the transport is full and onDrain comes after drained()', function () {
      const { s, t } = fed(true)
      const st = s.open()
      const c = collect(st)
      t.full = true
      expect(st.write(Buffer.from('a'))).to.equal(false)
      t.full = false
      s.drained()
      expect(c.drains).to.equal(1)
      expect(st.write(Buffer.from('b'))).to.equal(true)
    })
  })

  describe('ping', function () {
    const realNow = Date.now
    afterEach(function () { Date.now = realNow })

    it('answers a SYN ping with an ACK carrying the same value; ignores ACK pings', function () {
      const { s, sent } = fed(false)
      s.receive(yamuxFrame(PING, SYN, 0, 0xdeadbeef))
      s.receive(yamuxFrame(PING, ACK, 0, 1))
      expect(sent()).to.deep.equal([{ type: PING, flags: ACK, id: 0, length: 0xdeadbeef, payload: Buffer.alloc(0) }])
    })

    it('answers at most maxPingsPerSecond pings each second', function () {
      let now = 1_000_000
      Date.now = () => now
      const { s, sent } = fed(false, { maxPingsPerSecond: 3 })
      for (let i = 0; i < 20; i++) s.receive(yamuxFrame(PING, SYN, 0, i))
      expect(sent().map(f => f.length)).to.deep.equal([0, 1, 2])
      now += 1000
      for (let i = 20; i < 30; i++) s.receive(yamuxFrame(PING, SYN, 0, i))
      expect(sent().map(f => f.length)).to.deep.equal([0, 1, 2, 20, 21, 22])
      expect(s.isClosed).to.equal(false)
    })
  })

  describe('two sessions back to back', function () {
    it('carries 2 MiB each way on one stream through window updates', async function () {
      const w = wired('yamux')
      const st = w.a.open()
      const ca = collect(st)
      const up = Buffer.alloc(2 * 1024 * KiB)
      for (let i = 0; i < up.length; i++) up[i] = i * 7
      st.write(up)
      st.end()
      await settle()
      const sb = w.eb.accepted[0]
      const cb = collect(sb)
      await settle()
      expect(cb.data().equals(up)).to.equal(true)
      expect(cb.ended).to.equal(true)
      sb.write(up)
      sb.end()
      await settle()
      expect(ca.data().equals(up)).to.equal(true)
      expect(ca.closed && cb.closed).to.equal(true)
      expect([ca.error, cb.error]).to.deep.equal([undefined, undefined])
      expect(w.a.streamCount + w.b.streamCount).to.equal(0)
    })
  })
  it('a small payload in a large message is copied before a paused stream keeps it (the message is not pinned)', function () {
    const { s: session, accepted } = fed(false)
    // One data byte for a new stream, padded to 1 MiB with data frames for an unknown stream.
    const padding: Buffer[] = []
    for (let n = 0; n < 16; n++) padding.push(yamuxFrame(DATA, 0, 99, 64 * KiB - 12, Buffer.alloc(64 * KiB - 12)))
    session.receive(Buffer.concat([yamuxFrame(DATA, SYN, 1, 1, Buffer.from('x')), ...padding]))
    const [stream] = accepted
    const got: Buffer[] = []
    stream.attach({ onData: (c) => got.push(c), onEnd: () => {}, onClose: () => {}, onDrain: () => {} })
    expect(got.map(c => c.toString())).to.deep.equal(['x'])
    // A copy lives in Node's buffer pool (8 KiB on Node 20, 64 KiB on Node 26), not in the 1 MiB message.
    expect(got[0].buffer.byteLength, 'memory the kept byte holds on to').to.be.at.most(Buffer.poolSize + 1024)
  })
})
