import { expect } from 'chai'
import { parsePacAnswer } from '../../client/pac.js'
import { splitDomain } from '../../client/proxy-auth/ntlm.js'
import { offeredSchemes, parseAuthSchemes, schemesToTry } from '../../client/proxy-auth/schemes.js'

describe('proxy: reading Proxy-Authenticate, --proxy-auth and PAC answers', function () {
  it('finds each offered scheme and its token, in one header or several', function () {
    const offered = offeredSchemes(['Basic realm="corp, inc", NTLM TlRMTVNTUAACAAAA==, Negotiate', 'Digest realm="x"'])
    expect([...offered.entries()]).to.deep.equal([['basic', ''], ['ntlm', 'TlRMTVNTUAACAAAA=='], ['negotiate', '']])
    expect(offeredSchemes(['Negotiate oYGaMIGXoAMKAQ+iCw=='])).to.deep.equal(new Map([['negotiate', 'oYGaMIGXoAMKAQ+iCw==']]))
    expect(offeredSchemes(['Digest realm="x"']).size).to.equal(0)
  })

  it('tries the strongest first, only among the allowed ones', function () {
    const offered = offeredSchemes(['Basic realm="r"', 'NTLM', 'Negotiate'])
    expect(schemesToTry(offered)).to.deep.equal(['negotiate', 'ntlm', 'basic'])
    expect(schemesToTry(offered, parseAuthSchemes('basic, NTLM'))).to.deep.equal(['ntlm', 'basic'])
    expect(schemesToTry(offeredSchemes(['Basic realm="r"']), parseAuthSchemes('negotiate,ntlm'))).to.deep.equal([])
    expect(() => parseAuthSchemes('ntlm,digest')).to.throw('--proxy-auth: unknown scheme "digest"')
  })

  it('splits DOMAIN\\user, and leaves a UPN whole', function () {
    expect(splitDomain('CORP\\alice')).to.deep.equal({ domain: 'CORP', user: 'alice' })
    expect(splitDomain('alice@corp.example')).to.deep.equal({ user: 'alice@corp.example' })
  })

  it('reads PAC answers in order, skipping what it cannot use', function () {
    const skipped: string[] = []
    const routes = parsePacAnswer('PROXY a.corp:3128; SOCKS5 s:1080;HTTPS b.corp:443 ; DIRECT', e => skipped.push(e))
    expect(routes.map(r => r.direct ? 'DIRECT' : r.proxy.href)).to.deep.equal(['http://a.corp:3128/', 'https://b.corp/', 'DIRECT'])
    expect(skipped).to.deep.equal(['SOCKS5 s:1080'])
  })
})
