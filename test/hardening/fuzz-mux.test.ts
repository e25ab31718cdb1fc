import { expect } from 'chai'
import fc from 'fast-check'
import { MplexSession, MuxProtocolError, YamuxSession } from '../../protocol/mux/index.js'
import { DEFAULT_MUX_OPTIONS } from '../../protocol/mux/session.js'
import { MemoryTransport, mplexFrame, parseMplex, parseYamux, yamuxFrame } from '../fixtures/mux.js'
import { fuzzParams, loadCorpus } from './fuzz.js'
import type { MuxSession, MuxStream } from '../../protocol/mux/index.js'
import type { MuxErrorCode } from '../../protocol/mux/errors.js'
import type { MuxerName } from '../../protocol/version.js'

const KiB = 1024
const WINDOW_MAX = 512 * KiB
const SESSION_MAX = 768 * KiB
const MAX_INBOUND = 6
const CODES: MuxErrorCode[] = ['ERR_REVERSELB_MUX_VERSION', 'ERR_REVERSELB_MUX_FRAME_TYPE', 'ERR_REVERSELB_MUX_FLAGS', 'ERR_REVERSELB_MUX_STREAM_ID', 'ERR_REVERSELB_MUX_WINDOW_EXCEEDED', 'ERR_REVERSELB_MUX_WINDOW_OVERFLOW', 'ERR_REVERSELB_MUX_FRAME_TOO_LARGE', 'ERR_REVERSELB_MUX_TOO_MANY_REFUSED']

/** What one stream's reader saw, checked against TCP semantics as it happens. */
interface Seen { data: Buffer[], ended: boolean, closed: boolean, violations: string[] }

/** yamux stream fields (our own code: tests may look inside). */
interface YWin { recvCredit: number, recvTarget: number, unacked: number, queuedBytes: number, closed: boolean }

/**
 * A session fed hostile bytes. Streams the peer opens get, in turn (or as `modes` says): 0 a
 * reader that echoes what it reads and ends when the peer does (exercising our send window and
 * pendingOut), 1 a reader that only reads (half-open after the peer's FIN), 2 a reader that pauses
 * at once and resumes when the input is all in, 3 no reader (data waits in the stream), 4 a refusal.
 */
class Harness {
  readonly t = new MemoryTransport()
  readonly s: MuxSession
  readonly errors: MuxProtocolError[] = []
  readonly seen = new Map<MuxStream, Seen>()
  private n = 0
  private readonly paused: MuxStream[] = []
  closes = 0

  constructor (readonly codec: MuxerName, client: boolean, readonly modes = [0, 1, 2, 3, 4]) {
    const opts = {
      ...DEFAULT_MUX_OPTIONS,
      client,
      maxInboundStreams: MAX_INBOUND,
      maxRefusedStreams: 3,
      maxStreamWindowBytes: WINDOW_MAX,
      maxStreamBufferBytes: WINDOW_MAX,
      maxSessionBufferBytes: SESSION_MAX,
      accept: (st: MuxStream) => this.accept(st),
      onProtocolError: (e: MuxProtocolError) => this.errors.push(e),
      onStreamOverflow: () => {}
    }
    this.s = codec === 'yamux' ? new YamuxSession(this.t, opts) : new MplexSession(this.t, opts)
    this.s.onClose = () => { this.closes++ }
  }

  private accept (st: MuxStream): boolean {
    const mode = this.modes[this.n++ % this.modes.length]
    if (mode === 4) return false
    const seen: Seen = { data: [], ended: false, closed: false, violations: [] }
    this.seen.set(st, seen)
    if (mode === 3) return true
    st.attach({
      onData: (d) => {
        if (seen.ended) seen.violations.push('data after end')
        if (seen.closed) seen.violations.push('data after close')
        seen.data.push(Buffer.from(d))
        if (mode === 0 && !st.localEnded) st.write(Buffer.from(d))
      },
      onEnd: () => {
        if (seen.ended) seen.violations.push('end twice')
        if (seen.closed) seen.violations.push('end after close')
        seen.ended = true
        if (mode === 0) st.end()
      },
      onClose: () => {
        if (seen.closed) seen.violations.push('close twice')
        seen.closed = true
      },
      onDrain: () => {}
    })
    if (mode === 2) { st.pause(); this.paused.push(st) }
    return true
  }

  /** Feeds `bytes` cut at `cuts`; checks the invariants after every piece. */
  feed (bytes: Uint8Array, cuts: number[]): void {
    const buf = Buffer.from(bytes)
    const points = [...new Set(cuts.map(c => c % (buf.length + 1)))].sort((a, b) => a - b)
    let prev = 0
    for (const p of [...points, buf.length]) {
      if (p <= prev && !(p === buf.length && prev === 0 && buf.length === 0)) continue
      try {
        this.s.receive(buf.subarray(prev, p))
      } catch (err) {
        expect.fail(`receive() threw ${String(err)} on ${buf.toString('hex')}`)
      }
      prev = p
      this.check()
    }
    for (const st of this.paused) st.resume()
    this.check()
  }

  check (): void {
    expect(this.errors.length, 'protocol errors reported').to.be.at.most(1)
    for (const [, seen] of this.seen) expect(seen.violations, 'stream events out of order').to.deep.equal([])
    if (this.errors.length === 1) {
      const e = this.errors[0]
      expect(e).to.be.instanceOf(MuxProtocolError)
      expect(CODES).to.include(e.code)
      expect(this.s.isClosed).to.equal(true)
      expect(this.t.closeCalls).to.be.at.least(1)
      expect(this.s.streamCount).to.equal(0)
      if (this.codec === 'yamux') expect(parseYamux(this.t.bytes()).at(-1)).to.include({ type: 3, length: 1 })
    }
    if (this.s.isClosed) {
      expect(this.closes).to.equal(1)
      for (const [st] of this.seen) expect(st.closed).to.equal(true)
    }
    // What we sent is whole, well-formed frames.
    if (this.codec === 'yamux') parseYamux(this.t.bytes()); else parseMplex(this.t.bytes())
    this.checkMemory()
  }

  /** Bytes held for readers never exceed the window (yamux) or the bounds (mplex). */
  private checkMemory (): void {
    let total = 0
    for (const [st] of this.seen) {
      if (st.closed) { expect(st.queuedBytes).to.equal(0); continue }
      total += st.queuedBytes
      if (this.codec === 'yamux') {
        const w = st as unknown as YWin
        expect(w.recvTarget).to.be.at.most(WINDOW_MAX)
        expect(w.recvCredit).to.be.at.least(0)
        expect(w.queuedBytes + w.recvCredit + w.unacked, `stream ${st.id}: held + credit + unacked`).to.be.at.most(w.recvTarget)
      } else {
        expect(st.queuedBytes).to.be.at.most(WINDOW_MAX)
      }
    }
    expect(this.s.streamCount).to.be.at.most(MAX_INBOUND + 1)
    if (this.codec === 'mplex') {
      expect(total).to.be.at.most(SESSION_MAX)
      expect((this.s as unknown as { buffered: number }).buffered).to.equal(total)
    } else {
      expect(total).to.be.at.most(MAX_INBOUND * WINDOW_MAX)
    }
  }

  /** What the readers got, for comparing differently cut runs of one input. */
  summary (): unknown {
    return {
      error: this.errors[0]?.code,
      closed: this.s.isClosed,
      streams: [...this.seen].map(([st, seen]) => ({ id: st.id, data: Buffer.concat(seen.data).toString('hex'), held: st.queuedBytes, ended: seen.ended, closed: st.closed }))
    }
  }
}

// ---- Generators ------------------------------------------------------------------------------

const cuts = fc.array(fc.nat(), { maxLength: 12 })
/** Which reader the first stream gets (the rest follow in turn). */
const firstMode = fc.integer({ min: 0, max: 4 })
const modesFrom = (k: number): number[] => [0, 1, 2, 3, 4].map(m => (m + k) % 5)
const smallPayload = fc.uint8Array({ maxLength: 300 })
const interesting32 = fc.oneof(
  fc.integer({ min: 0, max: 12 }),
  fc.constantFrom(0x7fffffff, 0x80000000, 0xffffffff, 256 * KiB, 256 * KiB + 1, WINDOW_MAX, WINDOW_MAX + 1),
  fc.integer({ min: 0, max: 0xffffffff })
)

/** A yamux frame, mostly well-formed: data frames carry the payload their length declares. */
const yamuxFrames = fc.oneof(
  { weight: 6, arbitrary: fc.record({ flags: fc.integer({ min: 0, max: 15 }), id: fc.integer({ min: 0, max: 12 }), payload: smallPayload }).map(f => yamuxFrame(0, f.flags, f.id, f.payload.length, Buffer.from(f.payload))) },
  { weight: 4, arbitrary: fc.record({ flags: fc.integer({ min: 0, max: 15 }), id: fc.integer({ min: 0, max: 12 }), delta: interesting32 }).map(f => yamuxFrame(1, f.flags, f.id, f.delta)) },
  { weight: 1, arbitrary: fc.record({ flags: fc.integer({ min: 0, max: 3 }), value: interesting32 }).map(f => yamuxFrame(2, f.flags, 0, f.value)) },
  { weight: 1, arbitrary: fc.record({ type: fc.integer({ min: 0, max: 255 }), version: fc.integer({ min: 0, max: 2 }), flags: fc.integer({ min: 0, max: 0xffff }), id: interesting32, length: interesting32 }).map(f => yamuxFrame(f.type, f.flags, f.id, f.length, undefined, f.version)) }
)

/** An mplex message, mostly well-formed. */
const mplexFrames = fc.oneof(
  { weight: 8, arbitrary: fc.record({ id: fc.integer({ min: 0, max: 8 }), flag: fc.integer({ min: 0, max: 6 }), payload: smallPayload }).map(f => mplexFrame(f.id, f.flag, Buffer.from(f.payload))) },
  { weight: 1, arbitrary: fc.record({ id: fc.integer({ min: 0, max: 2 ** 40 }), flag: fc.integer({ min: 0, max: 7 }) }).map(f => mplexFrame(f.id, f.flag)) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 12 }).map(b => Buffer.from(b)) }
)

/** Corruptions of a valid sequence: flip, insert, delete a byte, or cut the tail. */
const corruption = fc.option(fc.record({ kind: fc.constantFrom('flip', 'insert', 'delete', 'truncate'), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), { nil: undefined })
function corrupt (b: Buffer, c: { kind: string, at: number, byte: number } | undefined): Buffer {
  if (c === undefined || b.length === 0) return b
  const at = c.at % b.length
  switch (c.kind) {
    case 'flip': { const out = Buffer.from(b); out[at] ^= c.byte === 0 ? 1 : c.byte; return out }
    case 'insert': return Buffer.concat([b.subarray(0, at), Buffer.from([c.byte]), b.subarray(at)])
    case 'delete': return Buffer.concat([b.subarray(0, at), b.subarray(at + 1)])
    default: return b.subarray(0, at)
  }
}

const sequences = (codec: MuxerName): fc.Arbitrary<Buffer> =>
  fc.tuple(fc.array(codec === 'yamux' ? yamuxFrames : mplexFrames, { maxLength: 24 }), corruption).map(([frames, c]) => corrupt(Buffer.concat(frames), c))

interface MuxCase { codec: MuxerName, hex: string, note: string }

describe('fuzz: mux decoders (yamux, mplex)', function () {
  this.timeout(120_000)
  const realNow = Date.now
  // Ping answers are limited per wall-clock second: fix the clock so runs are reproducible.
  beforeEach(function () { Date.now = () => 1_000_000 })
  afterEach(function () { Date.now = realNow })

  const corpus = loadCorpus<MuxCase>('mux.json')

  for (const codec of ['yamux', 'mplex'] as MuxerName[]) {
    describe(codec, function () {
      for (const client of [true, false]) {
        const role = client ? 'client' : 'server'
        it(`${role}: random bytes at random cuts: never throws; works on or closes with one MuxProtocolError; memory bounded`, function () {
          fc.assert(fc.property(fc.uint8Array({ maxLength: 1500 }), cuts, firstMode, (bytes, c, k) => {
            new Harness(codec, client, modesFrom(k)).feed(bytes, c)
          }), fuzzParams(600))
        })

        it(`${role}: valid frame sequences, sometimes corrupted, at random cuts: same contract`, function () {
          fc.assert(fc.property(sequences(codec), cuts, firstMode, (bytes, c, k) => {
            new Harness(codec, client, modesFrom(k)).feed(bytes, c)
          }), fuzzParams(600))
        })
      }

      it('split at every byte boundary gives what the whole input gives', function () {
        fc.assert(fc.property(sequences(codec), fc.boolean(), firstMode, (bytes, client, k) => {
          const whole = new Harness(codec, client, modesFrom(k))
          whole.feed(bytes, [])
          const bytewise = new Harness(codec, client, modesFrom(k))
          bytewise.feed(bytes, Array.from({ length: bytes.length }, (_, i) => i))
          expect(bytewise.summary()).to.deep.equal(whole.summary())
        }), fuzzParams(300))
      })

      it('corpus: every case found so far keeps the contract, whole and byte by byte', function () {
        const cases = corpus.filter(c => c.codec === codec)
        expect(cases.length).to.be.above(0)
        for (const c of cases) {
          const bytes = Buffer.from(c.hex, 'hex')
          for (const [client, k] of [true, false].flatMap(cl => [0, 1, 2, 3, 4].map(k => [cl, k] as const))) {
            const whole = new Harness(codec, client, modesFrom(k))
            whole.feed(bytes, [])
            const bytewise = new Harness(codec, client, modesFrom(k))
            bytewise.feed(bytes, Array.from({ length: bytes.length }, (_, i) => i))
            expect(bytewise.summary(), c.note).to.deep.equal(whole.summary())
          }
        }
      })
    })
  }

  it('a 4 GiB data frame is refused at its header, before any payload is held', function () {
    const h = new Harness('yamux', false)
    h.feed(yamuxFrame(0, 1, 1, 0xffffffff), [])
    expect(h.errors.map(e => e.code)).to.deep.equal(['ERR_REVERSELB_MUX_WINDOW_EXCEEDED'])
  })

  it('data after the peer\'s FIN never reaches the reader after onEnd (yamux and mplex)', function () {
    const B = (s: string): Buffer => Buffer.from(s)
    // A reader that keeps its own direction open (1), and one paused until the input is in (2).
    for (const mode of [1, 2]) {
      const y = new Harness('yamux', false, [mode])
      y.feed(Buffer.concat([yamuxFrame(0, 1, 1, 1, B('a')), yamuxFrame(0, 4, 1, 1, B('b')), yamuxFrame(0, 0, 1, 1, B('c'))]), [])
      const [ys] = [...y.seen.values()]
      expect(ys.violations).to.deep.equal([])
      expect(Buffer.concat(ys.data).toString()).to.equal('ab')
      expect(ys.ended).to.equal(true)
      const m = new Harness('mplex', false, [mode])
      m.feed(Buffer.concat([mplexFrame(1, 0), mplexFrame(1, 2, B('a')), mplexFrame(1, 4), mplexFrame(1, 2, B('b'))]), [])
      const [ms] = [...m.seen.values()]
      expect(ms.violations).to.deep.equal([])
      expect(Buffer.concat(ms.data).toString()).to.equal('a')
      expect(ms.ended).to.equal(true)
    }
  })
})
