import { randomBytes } from 'node:crypto'
import type { yamux } from '@chainsafe/libp2p-yamux'
import { GoAwayCode, } from '@chainsafe/libp2p-yamux'
import { expect } from 'chai'
import { DEFAULT_MUX_OPTIONS } from '../../protocol/mux/index.js'
import { INITIAL_WINDOW } from '../../protocol/mux/yamux.js'
import { interopPair } from './peers.js'
import { ROLES, nextIncoming, roundTrip, sha, sharedScenarios, until } from './scenarios.js'
import type { Pair, TestStream } from './peers.js'
import type { MuxProtocolError } from '../../protocol/mux/index.js'

/** libp2p's yamux muxer, whose close() takes a GoAway reason. */
type YamuxMuxer = ReturnType<ReturnType<ReturnType<typeof yamux>>['createStreamMuxer']>

/** Our yamux stream's window fields (tests may look inside our own code). */
interface Windows { sendWindow: number, recvCredit: number, recvTarget: number, pendingOut: Buffer | undefined, queuedBytes: number }

describe('interop: our yamux with @chainsafe/libp2p-yamux 8', function () {
  this.timeout(60_000)
  sharedScenarios('yamux')

  for (const role of ROLES) {
    describe(`windows, ours as ${role}`, function () {
      let p: Pair
      beforeEach(async function () { p = await interopPair('yamux', role) })
      afterEach(function () { p.close() })

      it('8 MiB each way on one stream: far past the initial 256 KiB window, byte-exact; our window grows to maxStreamWindowBytes', async function () {
        const theirEnd = nextIncoming(p.theirs)
        const ours = await p.ours.open()
        const up = randomBytes(8 * 1024 * 1024)
        const down = randomBytes(8 * 1024 * 1024)
        const sending = ours.send(up, 64 * 1024).then(async () => await ours.end())
        const t = await theirEnd
        const [gotUp, gotDown] = await Promise.all([t.all, ours.all, sending, t.send(down, 64 * 1024).then(async () => await t.end())])
        expect(sha(gotUp)).to.equal(sha(up))
        expect(sha(gotDown)).to.equal(sha(down))
        const w = (ours as unknown as { stream: Windows }).stream
        expect(w.recvTarget).to.equal(DEFAULT_MUX_OPTIONS.maxStreamWindowBytes)
        expect(await ours.closed).to.equal(undefined)
      })

      it('a paused stream of ours holds libp2p\'s sender at exactly one window; other streams flow; nothing is lost after resume', async function () {
        // Paused as it is accepted, before any data can be delivered.
        const theirEnd = new Promise<TestStream>(resolve => { p.ours.onStream = (s) => { s.pause(); resolve(s) } })
        const t = await p.theirs.open()
        const payload = randomBytes(3 * 1024 * 1024)
        let sent = false
        const sending = t.send(payload, 64 * 1024).then(async () => { sent = true; await t.end() })
        const ours = await theirEnd
        const w = (ours as unknown as { stream: Windows }).stream
        await until(() => w.queuedBytes >= INITIAL_WINDOW, 'one window to arrive at the paused stream')
        // Round trips on other streams: the connection is live, so more would have arrived by now.
        await roundTrip(p, 'ours')
        await roundTrip(p, 'theirs')
        expect(w.queuedBytes).to.equal(INITIAL_WINDOW)
        expect(w.recvCredit).to.equal(0)
        expect(ours.received()).to.equal(0)
        expect(sent).to.equal(false)
        ours.resume()
        await sending
        expect(sha(await ours.all)).to.equal(sha(payload))
        expect(w.queuedBytes).to.equal(0)
      })

      it('a paused libp2p stream holds our sender at one window (the rest waits in pendingOut); nothing is lost after resume', async function () {
        const theirEnd = nextIncoming(p.theirs)
        const ours = await p.ours.open()
        const payload = randomBytes(3 * 1024 * 1024)
        await ours.send(payload.subarray(0, 1))
        const t = await theirEnd
        t.pause()
        const w = (ours as unknown as { stream: Windows }).stream
        let sent = false
        const sending = ours.send(payload.subarray(1), 64 * 1024).then(async () => { sent = true; await ours.end() })
        await until(() => w.sendWindow === 0 && w.pendingOut !== undefined, 'our send window to run out')
        await roundTrip(p, 'ours')
        await roundTrip(p, 'theirs')
        expect(w.sendWindow).to.equal(0)
        expect(sent).to.equal(false)
        t.resume()
        await sending
        expect(sha(await t.all)).to.equal(sha(payload))
      })
    })
  }

  describe('GoAway', function () {
    let p: Pair
    beforeEach(async function () { p = await interopPair('yamux', 'client') })
    afterEach(function () { p.close() })

    it('libp2p closing gracefully (GoAway 0) ends our session cleanly, no protocol error', async function () {
      const closed = new Promise<Error | undefined>(resolve => { p.ours.session.onClose = resolve })
      await p.theirs.muxer.close()
      expect(await closed).to.equal(undefined)
      expect(p.ours.events.protocolErrors).to.deep.equal([])
    })

    it('libp2p closing with GoAway 2 (internal error) ends our session with ERR_REVERSELB_MUX_GOAWAY, not as our protocol error', async function () {
      const closed = new Promise<Error | undefined>(resolve => { p.ours.session.onClose = resolve })
      await (p.theirs.muxer as YamuxMuxer).close({ reason: GoAwayCode.InternalError })
      const err = await closed
      expect((err as MuxProtocolError).code).to.equal('ERR_REVERSELB_MUX_GOAWAY')
      expect(p.ours.events.protocolErrors).to.deep.equal([])
    })

    it('our close() (GoAway 0) closes libp2p\'s muxer and its streams', async function () {
      const theirEnd = nextIncoming(p.theirs)
      const s = await p.ours.open()
      await s.send(Buffer.from('x'))
      const t = await theirEnd
      p.ours.session.close()
      await t.closed
      await until(() => p.theirs.muxer.status === 'closed', "libp2p's muxer to close")
    })
  })
})

