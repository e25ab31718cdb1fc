import { expect } from 'chai'
import { MAX_SNIFFED_NAME, sniff } from '../../../server/sniff.js'

const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff])
const vec16 = (b: Buffer): Buffer => Buffer.concat([u16(b.length), b])

/** A TLS record with a ClientHello, optionally with a server_name extension (RFC 6066 3). */
function clientHello (serverName?: string): Buffer {
  const ext = (type: number, body: Buffer): Buffer => Buffer.concat([u16(type), vec16(body)])
  const extensions = [ext(0x000b, Buffer.from([1, 0]))] // ec_point_formats, before SNI so the walk has to skip one
  if (serverName !== undefined) {
    const name = Buffer.from(serverName, 'latin1')
    extensions.push(ext(0x0000, vec16(Buffer.concat([Buffer.from([0]), vec16(name)]))))
  }
  const body = Buffer.concat([
    Buffer.from([3, 3]), Buffer.alloc(32, 7), // legacy_version, random
    Buffer.from([0]), // session id
    vec16(Buffer.from([0x13, 0x01])), // cipher suites
    Buffer.from([1, 0]), // compression methods
    vec16(Buffer.concat(extensions))
  ])
  const handshake = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body])
  return Buffer.concat([Buffer.from([0x16, 3, 1]), vec16(handshake)])
}

describe('unit: sniffers', function () {
  it('TLS: the SNI name, none without the extension, and "more" until the record is complete', function () {
    const hello = clientHello('box1.tunnel.example')
    expect(sniff(hello)).to.deep.equal({ kind: 'tls', name: 'box1.tunnel.example' })
    expect(sniff(clientHello())).to.deep.equal({ kind: 'tls' })
    for (const n of [1, 4, 5, hello.length - 1]) expect(sniff(hello.subarray(0, n)), `${n} bytes`).to.deep.equal({ kind: 'more' })
  })

  it('TLS: a record that is no ClientHello, and one cut short inside, give no name', function () {
    expect(sniff(Buffer.from([0x16, 3, 1, 0, 4, 2, 0, 0, 0]))).to.deep.equal({ kind: 'tls' })
    const hello = clientHello('box1')
    const truncated = Buffer.concat([Buffer.from([0x16, 3, 1]), u16(50), hello.subarray(5, 55)])
    expect(sniff(truncated)).to.deep.equal({ kind: 'tls' })
  })

  it('CONNECT: the host of the target, the request length to consume, "more" before the blank line', function () {
    const req = 'CONNECT box1:22 HTTP/1.1\r\nHost: box1:22\r\n\r\n'
    expect(sniff(Buffer.from(req + 'SSH-2.0'))).to.deep.equal({ kind: 'connect', name: 'box1', consumed: req.length })
    expect(sniff(Buffer.from('CONNECT [fd00::1]:22 HTTP/1.0\r\n\r\n'))).to.deep.equal({ kind: 'connect', name: 'fd00::1', consumed: 33 })
    expect(sniff(Buffer.from(req.slice(0, -2)))).to.deep.equal({ kind: 'more' })
    expect(sniff(Buffer.from('CONNECT nonsense\r\n\r\n'))).to.deep.equal({ kind: 'plain' })
    expect(sniff(Buffer.from('CONN'))).to.deep.equal({ kind: 'more' })
  })

  it('PROXY-> prefix: a length byte and the name; "more" until all of it arrived', function () {
    const msg = Buffer.concat([Buffer.from('PROXY->'), Buffer.from([4]), Buffer.from('box1'), Buffer.from('payload')])
    expect(sniff(msg)).to.deep.equal({ kind: 'prefix', name: 'box1', consumed: 12 })
    for (const n of [3, 7, 8, 11]) expect(sniff(msg.subarray(0, n)), `${n} bytes`).to.deep.equal({ kind: 'more' })
  })

  it('HTTP: the Host header without its port, case-insensitive; none without one', function () {
    expect(sniff(Buffer.from('GET / HTTP/1.1\r\nUser-Agent: x\r\nhOsT:  Web.Example:8080 \r\n\r\n'))).to.deep.equal({ kind: 'http', name: 'Web.Example' })
    expect(sniff(Buffer.from('POST /x HTTP/1.0\r\nAccept: */*\r\n\r\n'))).to.deep.equal({ kind: 'http' })
    expect(sniff(Buffer.from('GE'))).to.deep.equal({ kind: 'more' })
    expect(sniff(Buffer.from('GET / HTTP/1.1\r\nHost: box2'))).to.deep.equal({ kind: 'more' })
  })

  it('anything else is plain; nothing yet is "more"', function () {
    expect(sniff(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'))).to.deep.equal({ kind: 'plain' })
    expect(sniff(Buffer.from([0, 1, 2, 3]))).to.deep.equal({ kind: 'plain' })
    expect(sniff(Buffer.alloc(0))).to.deep.equal({ kind: 'more' })
  })

  it('escapes bytes outside printable ASCII in names and bounds their length', function () {
    const evil = Buffer.concat([Buffer.from('PROXY->'), Buffer.from([3]), Buffer.from([0x62, 0x0a, 0xff])])
    expect(sniff(evil)).to.deep.equal({ kind: 'prefix', name: 'b\\x0a\\xff', consumed: 11 })
    const long = sniff(clientHello('a'.repeat(400)))
    expect(long).to.deep.equal({ kind: 'tls', name: 'a'.repeat(MAX_SNIFFED_NAME) })
  })

  it('survives ClientHellos cut short or corrupted at any byte', function () {
    const hello = clientHello('fuzz.example.test')
    for (let i = 5; i < hello.length; i++) {
      const cut = Buffer.from(hello)
      cut.writeUInt16BE(i - 5, 3)
      expect(() => sniff(cut.subarray(0, i))).not.to.throw()
      const bad = Buffer.from(hello)
      bad[i] ^= 0xff
      expect(() => sniff(bad)).not.to.throw()
    }
  })
})
