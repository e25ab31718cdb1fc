import { expect } from 'chai'
import { MUXERS, encodeFrame } from '../../protocol/index.js'
import { eventually, exchange } from '../fixtures/net.js'
import { TOKEN } from '../fixtures/tunnel.js'
import { assertStillServes, closedWithin, rawSession, registerRaw, sharedServer } from './helpers.js'

const registration = (serviceName: string, port: number, extra: object = {}): object => ({
  serviceName, token: TOKEN, backendAcceptBacklog: 1, frontendData: { port: 0 }, targetPort: port, targetAddresses: ['127.0.0.1'], ...extra
})

/** Services the server holds for 127.0.0.1 now. */
const servicesOfLoopback = (ctx: ReturnType<typeof sharedServer>): string[] =>
  [...ctx.server.registry.services.values()].filter(s => s.sessions.some(x => x.remoteAddress.endsWith('127.0.0.1'))).map(s => s.name)

for (const muxer of MUXERS) {
  describe(`hardening: control streams of a multi-service connection (${muxer})`, function () {
    this.timeout(30_000)
    const ctx = sharedServer({ dynPortCount: 8, limits: { maxServicesPerAddress: 3, maxRefusedStreams: 6 } })

    it('opens no second control stream before the first registration succeeded', async function () {
      const { ws, muxer: mux } = await rawSession(ctx.server, muxer)
      try {
        // Two streams at once: the second is refused (the first has not registered yet).
        mux.open().write(encodeFrame(registration('early', ctx.backend.port)))
        const second = await registerRaw(mux, registration('early2', ctx.backend.port)).catch((e: Error) => e)
        expect(second).to.be.instanceOf(Error)
        expect(servicesOfLoopback(ctx)).not.to.include('early2')
      } finally {
        ws.terminate()
      }
      await eventually(() => { expect(servicesOfLoopback(ctx)).to.deep.equal([]) })
    })

    it('a client opening control streams without end stays within maxServicesPerAddress and is disconnected', async function () {
      const { ws, muxer: mux } = await rawSession(ctx.server, muxer)
      try {
        const first = await registerRaw(mux, registration('first', ctx.backend.port))
        expect(first.message).to.have.property('features').that.includes('services')
        const answers: unknown[] = []
        for (let i = 0; i < 40 && ws.readyState === ws.OPEN; i++) {
          answers.push(await registerRaw(mux, registration(`many${i}`, ctx.backend.port)).then(r => r.message, (e: Error) => e.message))
        }
        // Two more services are allowed (3 in all); the next ones are refused with the reason, and
        // after maxRefusedStreams (6) refusals the connection is closed.
        expect(answers.slice(0, 2).every(a => typeof a === 'object' && a !== null && 'frontendPort' in a)).to.equal(true)
        expect(answers[2]).to.have.property('error').that.matches(/already registered 3 services, the most allowed/)
        expect(answers.length).to.be.at.most(2 + 6 + 1)
        expect(servicesOfLoopback(ctx).length).to.be.at.most(3)
        expect(await closedWithin(ws, 10_000)).to.be.below(10_000)
      } finally {
        ws.terminate()
      }
      await eventually(() => { expect(servicesOfLoopback(ctx)).to.deep.equal([]) })
      await assertStillServes(ctx.server, ctx.backend.port, 'after-many', muxer)
    })

    it('registrations sent all at once stay within maxServicesPerAddress (the limit is checked in turn, not before)', async function () {
      const { ws, muxer: mux } = await rawSession(ctx.server, muxer)
      try {
        await registerRaw(mux, registration('burst', ctx.backend.port))
        const answers = await Promise.all(Array.from({ length: 3 }, async (_, i) =>
          await registerRaw(mux, registration(`burst${i}`, ctx.backend.port)).then(r => r.message, (e: Error) => e.message)))
        expect(answers.filter(a => typeof a === 'object' && a !== null && 'frontendPort' in a)).to.have.length(2)
        expect(servicesOfLoopback(ctx)).to.have.length(3)
      } finally {
        ws.terminate()
      }
      await eventually(() => { expect(servicesOfLoopback(ctx)).to.deep.equal([]) })
    })

    it('a token a reload removed between the upgrade and the registration registers nothing', async function () {
      const { ws, muxer: mux } = await rawSession(ctx.server, muxer)
      try {
        // The upgrade was authenticated with TOKEN; the replacement takes its place in the list.
        ctx.server.reload({ token: ['a-token-that-replaced-it'] })
        const { message } = await registerRaw(mux, registration('revoked', ctx.backend.port))
        expect(message).to.have.property('error').that.matches(/token was removed/)
        expect(servicesOfLoopback(ctx)).to.deep.equal([])
      } finally {
        ws.terminate()
        ctx.server.reload({ token: TOKEN })
      }
    })

    it('bogus registrations on further streams are refused alone; the connection\'s service keeps serving', async function () {
      const { ws, muxer: mux } = await rawSession(ctx.server, muxer, () => true)
      try {
        await registerRaw(mux, registration('steady', ctx.backend.port))
        for (const bogus of [
          Buffer.from([0, 0, 0, 5, 0x7b, 0x7b, 0x7b, 0x7b, 0x7b]), // not JSON
          { serviceName: '', targetAddresses: [] },
          registration('steady', ctx.backend.port), // the same service twice on one connection
          registration('otherport', ctx.backend.port, { frontendData: { port: 1 } })
        ]) {
          const { message } = await registerRaw(mux, bogus)
          expect(message).to.have.property('error').that.is.a('string')
        }
        expect(ws.readyState).to.equal(ws.OPEN)
        expect(servicesOfLoopback(ctx)).to.deep.equal(['steady'])
        const steady = ctx.server.registry.services.get('steady')
        expect(steady?.sessions[0].connection.services()).to.deep.equal(['steady'])
      } finally {
        ws.terminate()
      }
    })

    it('data after a further registration closes the connection; ending the stream unregisters only that service', async function () {
      const { ws, muxer: mux } = await rawSession(ctx.server, muxer)
      try {
        await registerRaw(mux, registration('stay', ctx.backend.port))
        const leaving = await registerRaw(mux, registration('leave', ctx.backend.port))
        const port = (leaving.message as { frontendPort: number }).frontendPort
        leaving.control.end()
        await eventually(() => { expect(servicesOfLoopback(ctx)).to.deep.equal(['stay']) })
        await exchange(port, Buffer.from('x')).then(() => { throw new Error('the port still answers') }, () => {})
        const chatty = await registerRaw(mux, registration('chatty', ctx.backend.port))
        chatty.control.write(Buffer.from('more'))
        expect(await closedWithin(ws, 5_000)).to.be.below(5_000)
        await eventually(() => { expect(servicesOfLoopback(ctx)).to.deep.equal([]) })
      } finally {
        ws.terminate()
      }
    })
  })
}
