import { expect } from 'chai'
import { logger } from '@libp2p/logger'
import { AbstractStream } from '@libp2p/utils'
import { leanStreamEvents } from '../../protocol/stream-events.js'
import type { SendResult } from '@libp2p/utils'
import type { Uint8ArrayList } from 'uint8arraylist'

/** The smallest concrete AbstractStream: sends nowhere. */
class TestStream extends AbstractStream {
  constructor () {
    super({ id: 'test', direction: 'outbound', log: logger('test:stream-events') })
  }

  sendData (data: Uint8ArrayList): SendResult { return { sentBytes: data.byteLength, canSendMore: true } }
  sendReset (): void {}
  sendPause (): void {}
  sendResume (): void {}
  async sendCloseWrite (): Promise<void> {}
  async sendCloseRead (): Promise<void> {}
}

describe('lean stream events (muxed streams)', function () {
  before(function () { leanStreamEvents() })

  it('calls listeners in the order added, each (type, listener) once, and counts them', function () {
    const s = new TestStream()
    const calls: string[] = []
    const a = (): void => { calls.push('a') }
    const b = { handleEvent: () => { calls.push('b') } }
    s.addEventListener('idle', a)
    s.addEventListener('idle', b)
    s.addEventListener('idle', a)
    expect(s.listenerCount('idle')).to.equal(2)
    s.dispatchEvent(new Event('idle'))
    s.removeEventListener('idle', a)
    s.dispatchEvent(new Event('idle'))
    expect(calls).to.deep.equal(['a', 'b', 'b'])
    expect(s.listenerCount('idle')).to.equal(1)
  })

  it('honours once and signal, and removals and additions during a dispatch', function () {
    const s = new TestStream()
    const calls: string[] = []
    const ac = new AbortController()
    const late = (): void => { calls.push('late') }
    const second = (): void => { calls.push('second') }
    s.addEventListener('idle', () => { calls.push('once') }, { once: true })
    s.addEventListener('idle', () => { calls.push('first'); s.addEventListener('idle', late); s.removeEventListener('idle', second) })
    s.addEventListener('idle', second)
    s.addEventListener('idle', () => { calls.push('signal') }, { signal: ac.signal })
    s.dispatchEvent(new Event('idle'))
    ac.abort()
    s.dispatchEvent(new Event('idle'))
    expect(calls).to.deep.equal(['once', 'first', 'signal', 'first', 'late'])
  })

  it('reports a throwing listener as uncaught and still runs the others', async function () {
    const s = new TestStream()
    const seen: unknown[] = []
    const mochaHandlers = process.listeners('uncaughtException')
    process.removeAllListeners('uncaughtException')
    process.once('uncaughtException', (err) => seen.push(err))
    let ran = false
    try {
      s.addEventListener('idle', () => { throw new Error('boom') })
      s.addEventListener('idle', () => { ran = true })
      expect(s.dispatchEvent(new Event('idle'))).to.equal(true)
      await new Promise(resolve => setImmediate(resolve))
    } finally {
      for (const h of mochaHandlers) process.on('uncaughtException', h)
    }
    expect(ran).to.equal(true)
    expect((seen[0] as Error).message).to.equal('boom')
  })

  it('returns false from dispatchEvent when a listener prevents the default', function () {
    const s = new TestStream()
    s.addEventListener('idle', (evt) => evt.preventDefault())
    expect(s.dispatchEvent(new Event('idle', { cancelable: true }))).to.equal(false)
  })

  it('buffers data until a message listener is added, then delivers it', async function () {
    const s = new TestStream()
    s.push(Uint8Array.from([1, 2, 3]))
    expect(s.readBufferLength).to.equal(3)
    const got = await new Promise<number[]>(resolve => {
      s.addEventListener('message', (evt) => resolve([...evt.data.subarray()]))
    })
    expect(got).to.deep.equal([1, 2, 3])
  })

  it('keeps close() working, which waits on idle and rejects on close', async function () {
    const s = new TestStream()
    s.send(Uint8Array.from([1]))
    await s.close()
    expect(s.writeStatus).to.equal('closed')
  })
})
