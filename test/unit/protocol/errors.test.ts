import { readFileSync } from 'node:fs'
import { expect } from 'chai'
import { TunnelClient, TunnelServer } from '../../../index.js'
import { AuthorizationError, RegistrationRefusedError, TlsVerificationError, UpgradeBlockedError, UpgradeRefusedError } from '../../../client/errors.js'
import { ProxyAuthError, ProxyError, ProxyRefusedError, parseProxyUrl } from '../../../client/proxy.js'
import { parseAuthSchemes } from '../../../client/proxy-auth/schemes.js'
import { ERROR_CODES, InvalidOptionError, ProtocolError, ReverselbError } from '../../../protocol/index.js'
import { PortRanges } from '../../../server/port-ranges.js'
import { parseNatsUrl } from '../../../server/nats-connection.js'
import type { ErrorCode, TunnelData } from '../../../protocol/index.js'

const docs = readFileSync(new URL('../../../../docs/library.md', import.meta.url), 'utf8')
const td: TunnelData = { serviceName: 's', token: 't', backendAcceptBacklog: 1, frontendData: { port: 0 }, targetPort: 80, targetAddresses: ['127.0.0.1'] }

describe('unit: error codes', function () {
  it("docs/library.md's table lists every code, and no other", function () {
    const documented = [...docs.matchAll(/^\| `(ERR_REVERSELB_[A-Z_]+)` \|/gm)].map(m => m[1])
    expect(documented).to.deep.equal(Object.keys(ERROR_CODES))
  })

  it('each error class carries its own code', function () {
    const cases: Array<[ReverselbError, ErrorCode]> = [
      [new AuthorizationError('x'), 'ERR_REVERSELB_AUTHORIZATION'],
      [new TlsVerificationError('x'), 'ERR_REVERSELB_TLS_VERIFICATION'],
      [new UpgradeRefusedError('x'), 'ERR_REVERSELB_UPGRADE_REFUSED'],
      [new UpgradeBlockedError('x'), 'ERR_REVERSELB_UPGRADE_BLOCKED'],
      [new RegistrationRefusedError('x'), 'ERR_REVERSELB_REGISTRATION_REFUSED'],
      [new ProxyError('x'), 'ERR_REVERSELB_PROXY'],
      [new ProxyAuthError('x'), 'ERR_REVERSELB_PROXY_AUTH'],
      [new ProxyRefusedError('x'), 'ERR_REVERSELB_PROXY_REFUSED'],
      [new ProtocolError('x'), 'ERR_REVERSELB_PROTOCOL']
    ]
    for (const [err, code] of cases) {
      expect(err).to.be.instanceOf(ReverselbError)
      expect(err.code, err.name).to.equal(code)
    }
    // Subclasses stay what they were: a proxy's 407 is an authorization failure.
    expect(new ProxyAuthError('x')).to.be.instanceOf(AuthorizationError)
  })

  const bad: Array<[string, () => unknown]> = [
    ['a client without endpoint', () => new TunnelClient([], td)],
    ['a client without token', () => new TunnelClient('127.0.0.1:1', { ...td, token: '' })],
    ['a client endpoint that is no host:port', () => new TunnelClient('no-port-here:x', td)],
    ['a server without token', () => new TunnelServer({ port: 0, token: '' })],
    ['a server with a negative port grace', () => new TunnelServer({ port: 0, token: 't', limits: { portGraceMs: -1 } })],
    ['a port range', () => PortRanges.parse('9000-8000')],
    ['a NATS URL', () => parseNatsUrl('http://host:4222')],
    ['a proxy URL', () => parseProxyUrl('socks5://host:1080')],
    ['a proxy auth scheme', () => parseAuthSchemes('kerberos5')]
  ]
  for (const [what, make] of bad) {
    it(`refuses ${what} with InvalidOptionError`, function () {
      expect(make).to.throw(InvalidOptionError).with.property('code', 'ERR_REVERSELB_INVALID_OPTION')
    })
  }
})
