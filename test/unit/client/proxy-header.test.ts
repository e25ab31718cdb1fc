import { expect } from 'chai'
import { parseAddress, proxyHeader } from '../../../client/proxy-header.js'

/** The v2 signature (HAProxy proxy-protocol.txt 2.2). */
const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex')

describe('unit: PROXY protocol header', function () {
  it('parses ip:port, [v6]:port and IPv4-mapped IPv6, and refuses anything else', function () {
    expect(parseAddress('1.2.3.4:56')).to.deep.equal({ host: '1.2.3.4', port: 56 })
    expect(parseAddress('[2001:db8::1]:443')).to.deep.equal({ host: '2001:db8::1', port: 443 })
    expect(parseAddress('::ffff:10.0.0.1:80')).to.deep.equal({ host: '10.0.0.1', port: 80 })
    for (const bad of ['host.example:80', '1.2.3.4', '', '[::1]']) expect(parseAddress(bad), bad).to.equal(undefined)
  })

  it('v1 over IPv4', function () {
    expect(proxyHeader('v1', '198.51.100.4:46272', '10.0.0.1:8000').toString()).to.equal('PROXY TCP4 198.51.100.4 10.0.0.1 46272 8000\r\n')
  })

  it('v1 with mixed families sends both as IPv6 (IPv4-mapped)', function () {
    expect(proxyHeader('v1', '[2001:db8::7]:1000', '10.0.0.1:8000').toString()).to.equal('PROXY TCP6 2001:db8::7 ::ffff:10.0.0.1 1000 8000\r\n')
  })

  it('v1 UNKNOWN when an address cannot be parsed', function () {
    expect(proxyHeader('v1', 'somewhere', '10.0.0.1:8000').toString()).to.equal('PROXY UNKNOWN\r\n')
  })

  it('v2 over IPv4: PROXY command, TCP4, 12 address bytes', function () {
    const h = proxyHeader('v2', '198.51.100.4:46272', '10.0.0.1:8000')
    expect(h.subarray(0, 12).equals(SIG)).to.equal(true)
    expect(h.subarray(12, 16).toString('hex')).to.equal('2111000c')
    expect([...h.subarray(16, 24)]).to.deep.equal([198, 51, 100, 4, 10, 0, 0, 1])
    expect([h.readUInt16BE(24), h.readUInt16BE(26)]).to.deep.equal([46272, 8000])
    expect(h.length).to.equal(28)
  })

  it('v2 over IPv6, with IPv4-mapped and embedded-IPv4 addresses expanded to 16 bytes', function () {
    const h = proxyHeader('v2', '[2001:db8::1:2]:1', '10.0.0.1:2')
    expect(h.subarray(12, 16).toString('hex')).to.equal('21210024')
    expect(h.subarray(16, 32).toString('hex')).to.equal('20010db8000000000000000000010002')
    expect(h.subarray(32, 48).toString('hex')).to.equal('00000000000000000000ffff0a000001')
    expect([h.readUInt16BE(48), h.readUInt16BE(50)]).to.deep.equal([1, 2])
    expect(proxyHeader('v2', '[::ffff:1.2.3.4]:1', '[::1]:2').subarray(16, 32).toString('hex')).to.equal('00000000000000000000ffff01020304')
    expect(proxyHeader('v2', '[64:ff9b::1.2.3.4]:1', '[::1]:2').subarray(16, 32).toString('hex')).to.equal('0064ff9b000000000000000001020304')
  })

  it('v2 LOCAL with no address when an address cannot be parsed', function () {
    const h = proxyHeader('v2', 'somewhere', '10.0.0.1:8000')
    expect(h.subarray(0, 12).equals(SIG)).to.equal(true)
    expect(h.subarray(12).toString('hex')).to.equal('20000000')
  })
})
