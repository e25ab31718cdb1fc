import { expect } from 'chai'
import { parse, parseAllDocuments } from 'yaml'
import * as appsV1 from 'kubernetes-models/apps/v1'
import * as coreV1 from 'kubernetes-models/v1'
import type { IContainer, IService } from 'kubernetes-models/v1'
import type { IStatefulSet } from 'kubernetes-models/apps/v1'
import { repoFile, reverselbEnvNames } from './helpers.js'

/** The cluster's deploy files (Docker engine and Kubernetes are not available here: their structure is checked). */
describe('deploy: three-node cluster files', function () {
  it('docker-compose.yml: three NATS servers with JetStream routed to each other, three reverselb nodes sharing them', function () {
    const compose = parse(repoFile('deploy/cluster/docker-compose.yml'), { merge: true, strict: true, uniqueKeys: true }) as { services: Record<string, { command?: string[], environment?: Record<string, string>, ports?: string[] }> }
    const nats = Object.keys(compose.services).filter(n => n.startsWith('nats-')).sort()
    const nodes = Object.keys(compose.services).filter(n => n.startsWith('reverselb-')).sort()
    expect(nats).to.have.length(3)
    expect(nodes).to.have.length(3)
    for (const n of nats) {
      const args = compose.services[n].command?.join(' ') ?? ''
      expect(args).to.include('-js')
      // Routes to the two others.
      for (const other of nats.filter(o => o !== n)) expect(args, n).to.include(`nats://${other}:6222`)
    }
    const known = reverselbEnvNames()
    const advertised = new Set<string>()
    for (const n of nodes) {
      const env = compose.services[n].environment ?? {}
      for (const name of Object.keys(env)) expect(known.has(name), `${n}: ${name} is no reverselb variable`).to.equal(true)
      expect(env.CLUSTER).to.equal('reverselb')
      expect(env.CLUSTER_SECRET).to.match(/^\$\{CLUSTER_SECRET/)
      expect(env.NATS_URL.split(',').sort()).to.deep.equal(nats.map(x => `nats://${x}:4222`))
      advertised.add(env.ADVERTISE)
      // The advertised port is the one published for the API.
      const apiPort = env.ADVERTISE.split(':').pop()
      expect(compose.services[n].ports, n).to.include(`${String(apiPort)}:${env.PORT}`)
    }
    expect(advertised.size).to.equal(3)
  })

  it('kubernetes.yaml: StatefulSets for NATS and reverselb, one Service for the API port, valid against the schema', function () {
    const docs = parseAllDocuments(repoFile('deploy/cluster/kubernetes.yaml'), { strict: true, uniqueKeys: true }).map(d => d.toJS() as Record<string, any>)
    const models: Record<string, Record<string, unknown>> = { v1: coreV1, 'apps/v1': appsV1 }
    for (const d of docs) {
      const Model = models[d.apiVersion]?.[d.kind] as new (o: unknown) => { validate: () => void }
      expect(() => new Model(d).validate(), `${String(d.kind)}/${String(d.metadata.name)}`).to.not.throw()
    }
    const find = <T>(kind: string, name: string): T => docs.find(d => d.kind === kind && d.metadata.name === name) as T
    const nats = find<IStatefulSet>('StatefulSet', 'nats')
    const nodes = find<IStatefulSet>('StatefulSet', 'reverselb')
    expect(nats.spec?.replicas).to.equal(3)
    expect(nodes.spec?.replicas).to.equal(3)
    expect(nats.spec?.template.spec?.containers[0].args).to.include('-js')
    const server = nodes.spec?.template.spec?.containers[0] as IContainer
    const env = new Map(server.env?.map(e => [e.name, e]))
    const known = reverselbEnvNames()
    for (const name of env.keys()) if (name !== 'POD_NAME') expect(known.has(name), `${name} is no reverselb variable`).to.equal(true)
    expect(env.get('CLUSTER_SECRET')?.valueFrom?.secretKeyRef, 'the cluster secret comes from a Secret').to.not.equal(undefined)
    expect(env.get('TOKEN')?.valueFrom?.secretKeyRef).to.not.equal(undefined)
    // Every NATS pod of the StatefulSet, by its stable name.
    expect(env.get('NATS_URL')?.value?.split(',')).to.deep.equal([0, 1, 2].map(i => `nats://nats-${i}.${String(nats.spec?.serviceName)}:4222`))
    expect(env.get('ADVERTISE')?.value).to.equal(`$(POD_NAME).${String(nodes.spec?.serviceName)}.reverselb.svc.cluster.local:${String(env.get('PORT')?.value)}`)
    const api = find<IService>('Service', 'reverselb')
    expect(api.spec?.ports?.[0]).to.deep.include({ name: 'api', port: Number(env.get('PORT')?.value) })
    for (const [k, v] of Object.entries(api.spec?.selector ?? {})) expect(nodes.spec?.template.metadata?.labels?.[k], k).to.equal(v)
    // The frontend pool the Service publishes is the one the nodes use.
    const first = Number(env.get('DYN_PORT')?.value)
    const pool = Array.from({ length: Number(env.get('DYN_PORT_COUNT')?.value) }, (_, i) => first + i)
    expect(api.spec?.ports?.slice(1).map(p => p.port)).to.deep.equal(pool)
  })
})
