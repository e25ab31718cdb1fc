import { expect } from 'chai'
import { ServiceError, ServiceSet, serviceEntry, serviceKey } from '../../../client/services.js'
import type { TunnelData } from '../../../protocol/index.js'

const td = (serviceName: string, over: Partial<TunnelData> = {}): TunnelData => ({
  serviceName, backendAcceptBacklog: 1, frontendData: { port: 0 }, targetPort: 80, targetAddresses: ['127.0.0.1'], ...over
})

describe('unit: client services', function () {
  it('names a service by service and instance, whichever way the instance is given', function () {
    expect(serviceKey(td('web'))).to.equal('web')
    expect(serviceKey(td('ssh:box1'))).to.equal('ssh:box1')
    expect(serviceKey(td('ssh', { instanceName: 'box1' }))).to.equal('ssh:box1')
  })

  it('checks an entry as the server would and keeps no token', function () {
    const e = serviceEntry(td('web', { token: 'secret' }), { proxyProtocol: 'v2' })
    expect(e.data).not.to.have.property('token')
    expect(e.options).to.deep.equal({ proxyProtocol: 'v2' })
    expect(e.targets.current).to.deep.equal({ addresses: ['127.0.0.1'], port: 80 })
    for (const bad of [td('a\nb'), td('web', { targetAddresses: [] }), td('web', { targetPort: 70000 })]) {
      expect(() => serviceEntry(bad)).to.throw(ServiceError).with.property('code', 'ERR_REVERSELB_SERVICE_INVALID')
    }
  })

  it('keeps services in order, refuses a duplicate and an unknown name with their codes', function () {
    const set = new ServiceSet()
    set.add(serviceEntry(td('b')))
    set.add(serviceEntry(td('a')))
    expect(set.list().map(e => e.name)).to.deep.equal(['b', 'a'])
    expect(() => set.add(serviceEntry(td('a')))).to.throw(ServiceError).with.property('code', 'ERR_REVERSELB_SERVICE_EXISTS')
    expect(() => set.remove('zzz')).to.throw(ServiceError).with.property('code', 'ERR_REVERSELB_SERVICE_UNKNOWN')
    set.remove('b')
    expect(set.size).to.equal(1)
  })

  it('finds the service of a relayed connection by instance, or the service alone from an older server', function () {
    const set = new ServiceSet()
    set.add(serviceEntry(td('ssh', { instanceName: 'box1' })))
    set.add(serviceEntry(td('ssh', { instanceName: 'box2' })))
    set.add(serviceEntry(td('web')))
    expect(set.lookup('ssh', 'box2')?.name).to.equal('ssh:box2')
    expect(set.lookup('ssh', undefined)?.name).to.equal('ssh:box1')
    expect(set.lookup('web', undefined)?.name).to.equal('web')
    expect(set.lookup('ssh', 'box3')).to.equal(undefined)
    expect(set.lookup('gone', undefined)).to.equal(undefined)
  })
})
