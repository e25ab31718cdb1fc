import { expect } from 'chai'
import { ProtocolError, splitServiceName, validateStreamAck, validateStreamHeader, validateTunnelData, validateTunnelDataResponse } from '../../../protocol/messages.js'
import { MAX_NAME_LENGTH, MAX_TARGET_ADDRESSES } from '../../../protocol/limits.js'

const registration = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  serviceName: 'web', frontendData: { port: 8000 }, backendAcceptBacklog: 1, targetPort: 80, targetAddresses: ['127.0.0.1'], ...over
})

const refused = (fn: () => unknown, message: string): void => {
  expect(fn).to.throw(ProtocolError, message)
}

describe('unit: protocol messages', function () {
  it('splits service:instance; an explicit instance name wins', function () {
    expect(splitServiceName('web')).to.deep.equal({ service: 'web', instance: '' })
    expect(splitServiceName('ssh:box1')).to.deep.equal({ service: 'ssh', instance: 'box1' })
    expect(splitServiceName('ssh:box1', 'box2')).to.deep.equal({ service: 'ssh', instance: 'box2' })
    expect(splitServiceName('a:b:c')).to.deep.equal({ service: 'a', instance: 'b:c' })
  })

  describe('validateTunnelData', function () {
    it('accepts a registration and fills the defaults, dropping unknown fields and the token', function () {
      expect(validateTunnelData({ serviceName: 'web', targetAddresses: [], token: 't', extra: 1 }))
        .to.deep.equal({ serviceName: 'web', frontendData: { port: 0 }, backendAcceptBacklog: 1, targetPort: 0, targetAddresses: [] })
      expect(validateTunnelData(registration({ instanceName: 'box1' })).instanceName).to.equal('box1')
      expect(validateTunnelData(registration({ instanceName: '' }))).not.to.have.property('instanceName')
    })

    it('refuses what is not an object', function () {
      for (const v of [null, [], 'web', 3]) refused(() => validateTunnelData(v), 'registration must be an object')
    })

    it('refuses bad names', function () {
      refused(() => validateTunnelData(registration({ serviceName: '' })), 'serviceName must be 1-128 printable ASCII characters')
      refused(() => validateTunnelData(registration({ serviceName: 'x'.repeat(MAX_NAME_LENGTH + 1) })), 'serviceName must be')
      refused(() => validateTunnelData(registration({ serviceName: 'a\nb' })), 'serviceName must be')
      refused(() => validateTunnelData(registration({ serviceName: 'wéb' })), 'serviceName must be')
      refused(() => validateTunnelData(registration({ serviceName: ':box' })), 'serviceName must not start with ":"')
      refused(() => validateTunnelData(registration({ instanceName: 7 })), 'instanceName must be')
    })

    it('refuses bad numbers', function () {
      refused(() => validateTunnelData(registration({ frontendData: { port: 65536 } })), 'frontendData.port must be an integer from 0 to 65535')
      refused(() => validateTunnelData(registration({ frontendData: { port: 1.5 } })), 'frontendData.port must be')
      refused(() => validateTunnelData(registration({ frontendData: { port: '80' } })), 'frontendData.port must be')
      refused(() => validateTunnelData(registration({ targetPort: -1 })), 'targetPort must be')
      refused(() => validateTunnelData(registration({ backendAcceptBacklog: 0 })), 'backendAcceptBacklog must be')
    })

    it('refuses bad target addresses and too many of them', function () {
      refused(() => validateTunnelData(registration({ targetAddresses: '127.0.0.1' })), 'targetAddresses must be an array')
      refused(() => validateTunnelData(registration({ targetAddresses: ['ok', 'bad host'] })), 'targetAddresses[1] must be a host name or IP address')
      refused(() => validateTunnelData(registration({ targetAddresses: Array(MAX_TARGET_ADDRESSES + 1).fill('h') })), `at most ${MAX_TARGET_ADDRESSES}`)
      refused(() => validateTunnelData(registration({ token: 5 })), 'token must be a string')
    })
  })

  describe('validateTunnelDataResponse', function () {
    it('accepts an answer and an error, with control characters in the error replaced', function () {
      const ok = { id: 'abc', serviceName: 'web', frontendPort: 8000, frontendAddress: '*' }
      expect(validateTunnelDataResponse(ok)).to.deep.equal(ok)
      expect(validateTunnelDataResponse({ error: 'port\r\ntaken' })).to.deep.equal({ id: '', serviceName: '', frontendPort: 0, frontendAddress: '', error: 'port  taken' })
      expect(validateTunnelDataResponse({ error: 'x'.repeat(5000) }).error).to.have.length(1024)
    })

    it('keeps the features a server lists, dropping what is not a printable string', function () {
      const r = validateTunnelDataResponse({ id: 'a', serviceName: 'w', frontendPort: 1, frontendAddress: '', features: ['services', 7, 'x\u0000', 'future'] })
      expect(r.features).to.deep.equal(['services', 'future'])
      expect(validateTunnelDataResponse({ id: 'a', serviceName: 'w', frontendPort: 1, frontendAddress: '', features: 'services' })).not.to.have.property('features')
    })

    it('refuses port 0 and addresses with control characters', function () {
      refused(() => validateTunnelDataResponse({ id: 'a', serviceName: 'w', frontendPort: 0, frontendAddress: '*' }), 'frontendPort must be an integer from 1 to 65535')
      refused(() => validateTunnelDataResponse({ id: 'a', serviceName: 'w', frontendPort: 1, frontendAddress: 'a\u0000' }), 'frontendAddress must be a string')
      refused(() => validateTunnelDataResponse({ error: 1 }), 'error must be a string')
    })
  })

  describe('stream header and ack', function () {
    it('accepts a header with or without a destination and refuses control characters', function () {
      expect(validateStreamHeader({ serviceName: 'web', sourceAddress: '1.2.3.4:5' })).to.deep.equal({ serviceName: 'web', sourceAddress: '1.2.3.4:5' })
      expect(validateStreamHeader({ serviceName: 'web', sourceAddress: 'a', destinationAddress: 'b' }).destinationAddress).to.equal('b')
      expect(validateStreamHeader({ serviceName: 'ssh', instanceName: 'box1', sourceAddress: 'a' }).instanceName).to.equal('box1')
      refused(() => validateStreamHeader({ serviceName: 'ssh', instanceName: 'a\nb', sourceAddress: 'a' }), 'instanceName must be')
      refused(() => validateStreamHeader({ serviceName: 'web', sourceAddress: 'a\tb' }), 'sourceAddress must be')
      refused(() => validateStreamHeader({ serviceName: 'web', sourceAddress: 'x'.repeat(301) }), 'at most 300 characters')
    })

    it('accepts an ack, cleans its error, refuses a non-boolean ok', function () {
      expect(validateStreamAck({ ok: true })).to.deep.equal({ ok: true })
      expect(validateStreamAck({ ok: false, error: 'ECONNREFUSED\x1b[31m' })).to.deep.equal({ ok: false, error: 'ECONNREFUSED [31m' })
      refused(() => validateStreamAck({ ok: 'yes' }), 'ok must be a boolean')
      refused(() => validateStreamAck({ ok: false, error: {} }), 'error must be a string')
    })
  })
})
