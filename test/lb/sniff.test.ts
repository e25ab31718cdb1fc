import { expect } from 'chai'
import { sniff } from '../../server/sniff.js'
import { realClientHello } from '../fixtures/net.js'


describe('first-bytes sniffer', function () {
  it('reads the SNI of a real TLS ClientHello, and waits for a whole record', async function () {
    const hello = await realClientHello('box1.example.test')
    expect(sniff(hello)).to.deep.equal({ kind: 'tls', name: 'box1.example.test' })
    expect(sniff(hello.subarray(0, 3))).to.deep.equal({ kind: 'more' })
    expect(sniff(hello.subarray(0, hello.length - 1))).to.deep.equal({ kind: 'more' })
  })

  it('sees TLS without SNI as unnamed TLS', async function () {
    expect(sniff(await realClientHello())).to.deep.equal({ kind: 'tls' })
  })

  it('parses CONNECT requests and counts the bytes to strip', function () {
    const req = Buffer.from('CONNECT box2:22 HTTP/1.1\r\nHost: box2:22\r\n\r\nSSH-2.0-x')
    expect(sniff(req)).to.deep.equal({ kind: 'connect', name: 'box2', consumed: req.indexOf('SSH') })
    expect(sniff(Buffer.from('CONNECT [fd00::1]:443 HTTP/1.1\r\n\r\n'))).to.deep.equal({ kind: 'connect', name: 'fd00::1', consumed: 34 })
    expect(sniff(Buffer.from('CONNECT box2:22 HTTP/1.1\r\n'))).to.deep.equal({ kind: 'more' })
    expect(sniff(Buffer.from('CONN'))).to.deep.equal({ kind: 'more' })
  })

  it('parses the PROXY-> prefix', function () {
    const b = Buffer.concat([Buffer.from('PROXY->'), Buffer.from([4]), Buffer.from('box3rest')])
    expect(sniff(b)).to.deep.equal({ kind: 'prefix', name: 'box3', consumed: 12 })
    expect(sniff(b.subarray(0, 9))).to.deep.equal({ kind: 'more' })
  })

  it('reads the Host header of HTTP/1.x requests', function () {
    expect(sniff(Buffer.from('GET / HTTP/1.1\r\nUser-Agent: x\r\nhost: Web.Example:8080\r\n\r\n'))).to.deep.equal({ kind: 'http', name: 'Web.Example' })
    expect(sniff(Buffer.from('POST /x HTTP/1.0\r\n\r\n'))).to.deep.equal({ kind: 'http' })
    expect(sniff(Buffer.from('GET / HTTP/1.1\r\nHost: a'))).to.deep.equal({ kind: 'more' })
    expect(sniff(Buffer.from('GE'))).to.deep.equal({ kind: 'more' })
  })

  it('calls anything else plain', function () {
    expect(sniff(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'))).to.deep.equal({ kind: 'plain' })
    expect(sniff(Buffer.from([0, 1, 2, 3]))).to.deep.equal({ kind: 'plain' })
    expect(sniff(Buffer.alloc(0))).to.deep.equal({ kind: 'more' })
  })

  it('survives truncated and corrupted ClientHellos', async function () {
    const hello = await realClientHello('fuzz.example.test')
    for (let i = 5; i < hello.length; i += 7) {
      const cut = Buffer.from(hello)
      cut.writeUInt16BE(i - 5, 3)
      expect(() => sniff(cut.subarray(0, i))).not.to.throw()
      const bad = Buffer.from(hello)
      bad[i] ^= 0xff
      expect(() => sniff(bad)).not.to.throw()
    }
  })
})
