import { expect } from 'chai'
import { once } from 'node:events'
import { connect } from 'node:tls'
import { MAX_WS_PAYLOAD, openLink, upgrade as upgradeOver } from '../../protocol/index.js'
import { TOKEN, tunnelData } from '../fixtures/tunnel.js'
import { registerRaw, sharedServer } from './helpers.js'
import type { TunnelServer } from '../../index.js'
import type { MuxerName, WebSocketConnection } from '../../protocol/index.js'

type Upgrade = { ws: WebSocketConnection } | { status?: number, reason?: string | string[] }

/** A raw upgrade offering `offers` in this order (one Sec-WebSocket-Protocol list). */
async function upgrade (server: TunnelServer, offers: string[]): Promise<Upgrade> {
  const socket = connect({ host: '127.0.0.1', port: server.port, rejectUnauthorized: false })
  await once(socket, 'secureConnect')
  const answer = await upgradeOver({
    socket, host: `127.0.0.1:${server.port}`, path: '/tunnel', protocol: offers.join(', '),
    headers: { authorization: `Bearer ${TOKEN}` }, mask: 'random', maxPayload: MAX_WS_PAYLOAD
  })
  if ('open' in answer) return { ws: answer.open }
  answer.response.destroy()
  return { status: answer.response.statusCode, reason: answer.response.headers['x-reverselb-error'] }
}

describe('subprotocol offers are a list (issue 19, item 7)', function () {
  this.timeout(30_000)
  const ctx = sharedServer({ dynPortCount: 4 })
  let n = 0

  const accepted: Array<[string[], MuxerName]> = [
    [['bogus', 'reverselb.v1.yamux'], 'yamux'],
    [['reverselb.v2.yamux', 'reverselb.v1.mplex'], 'mplex'],
    [['reverselb.v1.spdy', 'x-other', 'reverselb.v1.yamux', 'reverselb.v1.mplex'], 'yamux'],
    [['reverselb.v1.mplex', 'reverselb.v1.yamux'], 'mplex']
  ]
  for (const [offers, muxerName] of accepted) {
    it(`"${offers.join(', ')}": the first supported one (${muxerName}) is chosen and works`, async function () {
      const up = await upgrade(ctx.server, offers)
      if (!('ws' in up)) throw new Error(`refused with ${String(up.status)}: ${String(up.reason)}`)
      const { ws } = up
      ws.on('error', () => {})
      try {
        expect(ws.protocol).to.equal(`reverselb.v1.${muxerName}`)
        // Speaking the chosen muxer must work end to end: the server picked the same one.
        const { mux: muxer } = openLink(ws, {
          side: 'client', muxer: muxerName, keepaliveMs: 60_000, accept: () => true,
          onDead: () => {}, onProtocolError: () => {}, onStreamOverflow: () => {}
        })
        const serviceName = `offer-${++n}`
        const { message } = await registerRaw(muxer, tunnelData(ctx.backend.port, { serviceName }))
        expect(message).to.have.property('frontendPort').that.is.a('number')
        expect(ctx.server.registry.services.get(serviceName)?.sessions[0].muxerName).to.equal(muxerName)
      } finally {
        ws.terminate()
      }
    })
  }

  const refused: Array<[string[], RegExp]> = [
    [['bogus', 'reverselb.v2.yamux'], /unsupported protocol version v2.*speaks v1/],
    [['bogus', 'other'], /unrecognised subprotocol "bogus"/],
    [['reverselb.v1.spdy', 'reverselb.v0.yamux'], /unsupported muxer "spdy"/]
  ]
  for (const [offers, reason] of refused) {
    it(`"${offers.join(', ')}": refused with 400 and the reason`, async function () {
      const up = await upgrade(ctx.server, offers)
      if ('ws' in up) { up.ws.terminate(); throw new Error('should have been refused') }
      expect(up.status).to.equal(400)
      expect(up.reason).to.match(reason)
    })
  }
})
