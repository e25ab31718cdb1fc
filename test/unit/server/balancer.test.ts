import { expect } from 'chai'
import { Balancer } from '../../../server/balancer.js'
import type { ServerSession } from '../../../server/session.js'

/** The three things the balancer reads from a session. */
interface FakeSession { name: string, closing: boolean, activeConnections: number, up: boolean }
function session (name: string, over: Partial<FakeSession> = {}): ServerSession {
  const s: FakeSession = { name, closing: false, activeConnections: 0, up: true, ...over }
  return Object.assign(s, { healthy: () => s.up }) as unknown as ServerSession
}

const names = (picked: Array<ServerSession | undefined>): string[] => picked.map(s => (s as FakeSession | undefined)?.name ?? '-')
const none = new Set<ServerSession>()

describe('unit: Balancer', function () {
  it('round robin rotates over the sessions in order', function () {
    const b = new Balancer('roundrobin')
    const s = [session('a'), session('b'), session('c')]
    expect(names(Array.from({ length: 7 }, () => b.pick(s, none)))).to.deep.equal(['a', 'b', 'c', 'a', 'b', 'c', 'a'])
  })

  it('skips closing sessions, excluded (already tried) ones and ones at maxActive', function () {
    const b = new Balancer()
    const tried = session('tried')
    const s = [session('closing', { closing: true }), tried, session('full', { activeConnections: 5 }), session('ok', { activeConnections: 4 })]
    for (let i = 0; i < 4; i++) expect(names([b.pick(s, new Set([tried]), 5)])).to.deep.equal(['ok'])
    expect(b.pick(s, new Set([tried]), 4)).to.equal(undefined)
  })

  it('prefers healthy sessions and falls back to unhealthy ones only when no healthy one is left', function () {
    const b = new Balancer()
    const sick = session('sick', { up: false })
    const well = session('well')
    for (let i = 0; i < 3; i++) expect(names([b.pick([sick, well], none)])).to.deep.equal(['well'])
    expect(names([b.pick([sick, well], new Set([well]))])).to.deep.equal(['sick'])
  })

  it('leastconn picks among the least loaded and rotates between ties', function () {
    const b = new Balancer('leastconn')
    const s = [session('busy', { activeConnections: 3 }), session('x', { activeConnections: 1 }), session('y', { activeConnections: 1 })]
    const picked = names(Array.from({ length: 4 }, () => b.pick(s, none)))
    expect(picked).not.to.include('busy')
    expect(new Set(picked)).to.deep.equal(new Set(['x', 'y']))
  })

  it('returns undefined when there is no session', function () {
    expect(new Balancer('leastconn').pick([], none)).to.equal(undefined)
  })
})
