import { expect } from 'chai'
import { InOrderReceiver, ReplayBuffer, SequenceError } from '../../../protocol/index.js'

const bytes = (from: number, n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (from + i) % 251))
const joined = (list: Buffer[]): Buffer => Buffer.concat(list)

describe('unit: HTTP transport sequence numbers: ReplayBuffer (what is resent) and InOrderReceiver (what is taken)', function () {
  it('keeps what was sent until acknowledged, and resumes from any kept offset', function () {
    const b = new ReplayBuffer()
    b.append(bytes(0, 10))
    b.append(bytes(10, 5))
    b.append(Buffer.alloc(0))
    expect([b.base, b.end, b.unacked]).to.deep.equal([0, 15, 15])
    expect(joined(b.slice(0)).equals(bytes(0, 15))).to.equal(true)
    expect(joined(b.slice(7)).equals(bytes(7, 8))).to.equal(true)
    expect(joined(b.slice(12)).equals(bytes(12, 3))).to.equal(true)
    expect(b.slice(15)).to.deep.equal([])
  })

  it('an acknowledgement drops what came before it, also inside a chunk; an older one changes nothing', function () {
    const b = new ReplayBuffer()
    b.append(bytes(0, 10))
    b.append(bytes(10, 10))
    b.ack(13)
    expect([b.base, b.unacked]).to.deep.equal([13, 7])
    expect(joined(b.slice(13)).equals(bytes(13, 7))).to.equal(true)
    b.ack(5)
    expect(b.base).to.equal(13)
    b.ack(20)
    expect([b.base, b.unacked]).to.deep.equal([20, 0])
  })

  it('refuses to resume from an offset no longer kept, or not yet sent, and an acknowledgement beyond what was sent', function () {
    const b = new ReplayBuffer()
    b.append(bytes(0, 10))
    b.ack(4)
    expect(() => b.slice(3)).to.throw(SequenceError, /cannot resume from byte 3: bytes 4 to 10 are kept/)
    expect(() => b.slice(11)).to.throw(SequenceError)
    expect(() => b.slice(Number.NaN)).to.throw(SequenceError)
    expect(() => b.ack(11)).to.throw(SequenceError, /beyond the 10 bytes sent/)
    expect(b.base).to.equal(4)
  })

  it('slices at most `max` bytes (one bounded upload)', function () {
    const b = new ReplayBuffer()
    for (let i = 0; i < 5; i++) b.append(bytes(i * 4, 4))
    expect(joined(b.slice(2, 7)).equals(bytes(2, 7))).to.equal(true)
  })

  it('the receiver takes each byte once, in order: a replay is dropped, an overlap gives its new tail, a gap is refused', function () {
    const r = new InOrderReceiver()
    expect(r.take(0, bytes(0, 5)).equals(bytes(0, 5))).to.equal(true)
    expect(r.take(0, bytes(0, 5)).length).to.equal(0)
    expect(r.take(3, bytes(3, 6)).equals(bytes(5, 4))).to.equal(true)
    expect(r.next).to.equal(9)
    expect(() => r.take(12, bytes(12, 1))).to.throw(SequenceError, /out of order/)
    expect(() => r.take(-1, bytes(0, 1))).to.throw(SequenceError)
    expect(r.next).to.equal(9)
  })

  it('a sender and a receiver over a lossy, repeating channel end with exactly the bytes sent', function () {
    const sender = new ReplayBuffer()
    const receiver = new InOrderReceiver()
    const sent = bytes(0, 10_000)
    let written = 0
    const out: Buffer[] = []
    // A fixed pseudo-random schedule: bodies lost, answers lost, bodies repeated.
    let seed = 7
    const rand = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
    for (let round = 0; round < 10_000 && receiver.next < sent.length; round++) {
      if (written < sent.length) { const n = Math.min(sent.length - written, 1 + Math.floor(rand() * 700)); sender.append(sent.subarray(written, written + n)); written += n }
      const seq = sender.base
      const body = joined(sender.slice(seq, 1000))
      if (rand() < 0.3) continue // the upload is lost on the way
      out.push(receiver.take(seq, body))
      if (rand() < 0.3) continue // its answer is lost: the same body goes again
      sender.ack(receiver.next)
    }
    expect(joined(out).equals(sent)).to.equal(true)
  })
})
