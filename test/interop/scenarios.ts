import { createHash, randomBytes, randomInt } from 'node:crypto'
import { expect } from 'chai'
import { StreamResetError } from '../../protocol/mux/index.js'
import { interopPair } from './peers.js'
import type { Pair, Side, TestStream } from './peers.js'
import type { MuxerName } from '../../protocol/version.js'

export const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

export type Role = 'client' | 'server'
export type Who = 'ours' | 'theirs'
export const ROLES: Role[] = ['client', 'server']
export const WHO: Who[] = ['ours', 'theirs']
export const other = (w: Who): Who => w === 'ours' ? 'theirs' : 'ours'
export const side = (p: Pair, w: Who): Side => p[w]

/** The next stream the peer of `at` opens, as `at` sees it. */
export function nextIncoming (at: Side): Promise<TestStream> {
  return new Promise(resolve => { at.onStream = (s) => { at.onStream = undefined; resolve(s) } })
}

/** Sends `out` and FIN while reading to the peer's FIN: answers "sent:received" hashes. */
export async function exchange (s: TestStream, out: Buffer): Promise<{ sent: string, got: string }> {
  const [got] = await Promise.all([s.all, s.send(out).then(async () => await s.end())])
  return { sent: sha(out), got: sha(got) }
}

/** A round trip on a fresh stream: proves the connection still carries data both ways. */
export async function roundTrip (p: Pair, opener: Who): Promise<void> {
  const acceptor = side(p, other(opener))
  const theirEnd = nextIncoming(acceptor)
  const s = await side(p, opener).open()
  const ping = randomBytes(1000)
  const pong = randomBytes(2000)
  const far = (async () => { const t = await theirEnd; return await exchange(t, pong) })()
  const near = await exchange(s, ping)
  const f = await far
  expect(near).to.deep.equal({ sent: sha(ping), got: sha(pong) })
  expect(f).to.deep.equal({ sent: sha(pong), got: sha(ping) })
}

/** The error a reset stream reports, whichever implementation it came from. */
export function expectReset (err: Error | undefined, who: Who): void {
  expect(err, 'the stream closed without an error').to.be.instanceOf(Error)
  if (who === 'ours') {
    expect(err).to.be.instanceOf(StreamResetError)
    expect((err as StreamResetError).code).to.equal('ERR_REVERSELB_STREAM_RESET_BY_PEER')
  } else {
    expect(err?.name).to.equal('StreamResetError')
  }
}

/** Until `cond` holds, checking after each turn of the event loop; fails after `limit` turns. */
export async function until (cond: () => boolean, what: string, limit = 20_000): Promise<void> {
  for (let i = 0; i < limit; i++) {
    if (cond()) return
    await new Promise(resolve => setImmediate(resolve))
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** The scenarios both wire formats share, for each of our roles and each opener. */
export function sharedScenarios (name: MuxerName): void {
  for (const role of ROLES) {
    describe(`ours as ${role === 'client' ? 'client (dialer)' : 'server (listener)'}`, function () {
      let p: Pair
      beforeEach(async function () { p = await interopPair(name, role) })
      afterEach(function () { p.close() })

      for (const opener of WHO) {
        const acceptorName = other(opener)

        it(`100 concurrent streams opened by ${opener}: random payloads arrive byte-exact both ways, every stream closes cleanly`, async function () {
          const N = 100
          const acceptor = side(p, acceptorName)
          const far: Array<Promise<string>> = []
          const farClosed: Array<Promise<Error | undefined>> = []
          acceptor.onStream = (s) => {
            far.push(exchange(s, randomBytes(randomInt(0, 200 * 1024))).then(r => `${r.got}>${r.sent}`))
            farClosed.push(s.closed)
          }
          const near = await Promise.all(Array.from({ length: N }, async () => {
            const s = await side(p, opener).open()
            const r = await exchange(s, randomBytes(randomInt(0, 200 * 1024)))
            expect(await s.closed).to.equal(undefined)
            return `${r.sent}>${r.got}`
          }))
          expect(far).to.have.length(N)
          const farResults = await Promise.all(far)
          expect(farResults.sort()).to.deep.equal(near.sort())
          for (const err of await Promise.all(farClosed)) expect(err).to.equal(undefined)
          expect(p.ours.session.streamCount).to.equal(0)
        })

        it(`half-close: ${opener} sends FIN first, ${acceptorName} keeps sending 1 MiB after it, then FIN`, async function () {
          const theirEnd = nextIncoming(side(p, acceptorName))
          const s = await side(p, opener).open()
          const first = randomBytes(300 * 1024)
          const second = randomBytes(1024 * 1024)
          await s.send(first)
          await s.end()
          const t = await theirEnd
          // The far side has the opener's FIN and all its data before it writes a byte.
          expect(sha(await t.all)).to.equal(sha(first))
          expect(s.received()).to.equal(0)
          await t.send(second)
          await t.end()
          expect(sha(await s.all)).to.equal(sha(second))
          expect(await s.closed).to.equal(undefined)
          expect(await t.closed).to.equal(undefined)
          expect(p.ours.session.streamCount).to.equal(0)
        })

        for (const resetter of WHO) {
          const hearer = other(resetter)
          it(`reset: a stream opened by ${opener} and reset by ${resetter} ends with a reset at ${hearer}; the connection goes on`, async function () {
            const theirEnd = nextIncoming(side(p, acceptorName))
            const s = await side(p, opener).open()
            await s.send(randomBytes(10 * 1024))
            const t = await theirEnd
            await t.waitFor(10 * 1024)
            const [byResetter, byHearer] = resetter === opener ? [s, t] : [t, s]
            byResetter.reset()
            expectReset(await byHearer.closed, hearer)
            let failed: unknown
            await byHearer.all.catch(err => { failed = err })
            expect(failed, 'reading a reset stream to its end').to.be.instanceOf(Error)
            await until(() => p.ours.session.streamCount === 0, 'our stream to be released')
            await roundTrip(p, opener)
            await roundTrip(p, acceptorName)
          })
        }
      }
    })
  }
}
