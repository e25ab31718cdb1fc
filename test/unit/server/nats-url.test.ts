import { expect } from 'chai'
import { parseNatsUrl } from '../../../server/nats-connection.js'

describe('unit: parseNatsUrl', function () {
  it('splits user and password off, percent-decoded, and redacts them', function () {
    expect(parseNatsUrl('nats://alice:p%40ss%3Aword@nats.example:4333')).to.deep.equal({
      server: 'nats.example:4333', tls: false, user: 'alice', pass: 'p@ss:word', redacted: 'nats://nats.example:4333'
    })
  })

  it('a user without a password is a token', function () {
    expect(parseNatsUrl('tls://s3cr%2Ft@nats.example')).to.deep.equal({
      server: 'nats.example:4222', tls: true, token: 's3cr/t', redacted: 'tls://nats.example:4222'
    })
  })

  it('defaults to nats:// and port 4222, and keeps IPv6 brackets', function () {
    expect(parseNatsUrl('nats.example')).to.deep.equal({ server: 'nats.example:4222', tls: false, redacted: 'nats://nats.example:4222' })
    expect(parseNatsUrl('tls://[::1]:4000').server).to.equal('[::1]:4000')
  })

  it('refuses other schemes, a missing host and what is no URL', function () {
    expect(() => parseNatsUrl('http://nats.example:4222')).to.throw('scheme must be nats:// or tls://, got http://')
    expect(() => parseNatsUrl('nats://:4222')).to.throw()
    expect(() => parseNatsUrl('nats://a b')).to.throw('--natsurl must look like nats://host:4222')
  })

  it('never puts credentials into the redacted form', function () {
    for (const url of ['nats://u:secret@h:1', 'tls://secret@h', 'secret@h:9']) {
      expect(parseNatsUrl(url).redacted).not.to.contain('secret')
    }
  })
})
