import { expect } from 'chai'
import { ProtocolError, decodeFrame, encodeFrame, readFrame } from '../../../protocol/index.js'
import { settle, wired } from '../../fixtures/mux.js'
import type { MuxStream } from '../../../protocol/index.js'

/**
 * A stream over two yamux sessions in memory, opened by writing `first`; returns the far end (where
 * what arrived waits for a reader) and the near one.
 */
async function opened (first: Buffer): Promise<{ near: MuxStream, far: MuxStream }> {
  const w = wired('yamux')
  const near = w.a.open()
  near.write(first)
  await settle()
  const far = w.eb.accepted.at(-1)
  if (far === undefined) throw new Error('not accepted')
  return { near, far }
}

const OPTS = { maxBytes: 64, timeoutMs: 2000, what: 'registration' }

describe('unit: control message framing', function () {
  it('a frame is a 4-byte big-endian length and the JSON; it decodes to the same message', function () {
    const frame = encodeFrame({ a: 1, s: 'é' })
    expect(frame.readUInt32BE(0)).to.equal(frame.length - 4)
    expect(decodeFrame(frame, 64, 'x')).to.deep.equal({ message: { a: 1, s: 'é' }, length: frame.length })
  })

  it('needs more bytes until the whole frame is in, and takes only its own bytes', function () {
    const frame = encodeFrame({ hello: 'world' })
    for (let cut = 0; cut < frame.length; cut++) expect(decodeFrame(frame.subarray(0, cut), 64, 'x'), `cut at ${cut}`).to.equal(undefined)
    const decoded = decodeFrame(Buffer.concat([frame, Buffer.from('rest')]), 64, 'x')
    expect(decoded?.length).to.equal(frame.length)
  })

  it('refuses a length over the limit at the prefix, before the body arrives', function () {
    const prefix = Buffer.alloc(4)
    prefix.writeUInt32BE(65, 0)
    expect(() => decodeFrame(prefix, 64, 'registration')).to.throw(ProtocolError, 'registration of 65 bytes exceeds the limit of 64')
  })

  it('refuses a body that is not JSON', function () {
    const body = Buffer.from('{nope')
    const frame = Buffer.concat([Buffer.from([0, 0, 0, body.length]), body])
    expect(() => decodeFrame(frame, 64, 'registration')).to.throw(ProtocolError, 'registration is not valid JSON')
  })

  it('readFrame: the message, and what came after it left for the relay, whatever the cuts', async function () {
    const frame = encodeFrame({ ok: true })
    const { near, far } = await opened(frame.subarray(0, 1))
    const reading = readFrame(far, OPTS)
    for (const b of frame.subarray(1, -1)) near.write(Buffer.from([b]))
    near.write(Buffer.concat([frame.subarray(-1), Buffer.from('payload')]))
    const { message, rest } = await reading
    expect(message).to.deep.equal({ ok: true })
    expect(rest.toString()).to.equal('payload')
  })

  it('readFrame: a stream that ends before the frame is whole is a ProtocolError naming the message', async function () {
    const { near, far } = await opened(encodeFrame({ x: 'y' }).subarray(0, 6))
    const reading = readFrame(far, OPTS)
    near.end()
    const err = await reading.then(() => undefined, (e: unknown) => e)
    expect(err).to.be.instanceOf(ProtocolError).with.property('message', 'stream ended before the registration was complete')
  })

  it('readFrame: an oversized frame is refused with the protocol error code', async function () {
    const { far } = await opened(encodeFrame({ padding: 'x'.repeat(100) }))
    const err = await readFrame(far, OPTS).then(() => undefined, (e: unknown) => e)
    expect(err).to.be.instanceOf(ProtocolError).with.property('code', 'ERR_REVERSELB_PROTOCOL')
  })
})
