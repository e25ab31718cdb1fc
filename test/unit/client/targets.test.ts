import { expect } from 'chai'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { Targets } from '../../../client/targets.js'
import type { AddressInfo, Socket } from 'node:net'

describe('unit: Targets', function () {
  it('copies addresses in and out, and applies updates to what comes next', function () {
    const given = ['10.0.0.1']
    const t = new Targets(given, 80)
    given.push('10.0.0.2')
    const current = t.current
    current.addresses.push('10.0.0.3')
    expect(t.current).to.deep.equal({ addresses: ['10.0.0.1'], port: 80 })
    t.update(['10.0.0.5', '10.0.0.6'])
    expect(t.current).to.deep.equal({ addresses: ['10.0.0.5', '10.0.0.6'], port: 80 })
    t.update(undefined, 8080)
    expect(t.current).to.deep.equal({ addresses: ['10.0.0.5', '10.0.0.6'], port: 8080 })
  })

  it('refuses to dial without an address', async function () {
    let error: unknown
    await new Targets([], 80).dial(1000).catch((err: unknown) => { error = err })
    expect(String(error)).to.contain('no backend address configured')
  })

  it('rotates its starting address per dial and fails over past one that refuses', async function () {
    // Two backends on one port (127.0.0.1 and 127.0.0.2); 127.0.0.3, also loopback, refuses at once.
    const first = createServer((s) => s.end())
    first.listen(0, '127.0.0.1')
    await once(first, 'listening')
    const { port } = first.address() as AddressInfo
    const second = createServer((s) => s.end())
    second.listen(port, '127.0.0.2')
    await once(second, 'listening')
    const sockets: Socket[] = []
    const dial = async (t: Targets): Promise<string | undefined> => {
      const s = await t.dial(2000)
      sockets.push(s)
      return s.remoteAddress
    }
    try {
      const t = new Targets(['127.0.0.1', '127.0.0.2'], port)
      expect([await dial(t), await dial(t), await dial(t)]).to.deep.equal(['127.0.0.1', '127.0.0.2', '127.0.0.1'])

      t.update(['127.0.0.3', '127.0.0.2'])
      expect([await dial(t), await dial(t)]).to.deep.equal(['127.0.0.2', '127.0.0.2'])

      t.update(['127.0.0.3'])
      let error: unknown
      await t.dial(2000).catch((err: unknown) => { error = err })
      expect(String(error)).to.contain(`backend unreachable (127.0.0.3:${port}: ECONNREFUSED)`)
    } finally {
      for (const s of sockets) s.destroy()
      first.close()
      second.close()
    }
  })
})
