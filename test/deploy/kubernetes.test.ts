import { expect } from 'chai'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import * as appsV1 from 'kubernetes-models/apps/v1'
import * as coreV1 from 'kubernetes-models/v1'
import type { IContainer, IEnvVar, IPodSpec } from 'kubernetes-models/v1'
import type { IDeployment } from 'kubernetes-models/apps/v1'
import type { IService, ISecret } from 'kubernetes-models/v1'
import { echoServer, exchange, randomPayload } from '../fixtures/net.js'
import { startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import { REPO, onPath, parseDockerfile, repoFile, reverselbEnvNames, runOk, tempDir } from './helpers.js'
import type { TunnelClient, TunnelServer } from '../../index.js'
import type { TcpServer } from '../fixtures/net.js'

const DIR = 'deploy/kubernetes'

interface Manifest { file: string, kind: string, name: string, namespace?: string, object: Record<string, unknown> }

let parsed: Manifest[] | undefined

/** Every YAML document of deploy/kubernetes/*.yaml, parsed strictly (errors and warnings fail). */
function manifests (): Manifest[] {
  if (parsed !== undefined) return parsed
  const out: Manifest[] = []
  for (const file of readdirSync(join(REPO, DIR)).filter(f => /\.ya?ml$/.test(f)).sort()) {
    for (const doc of parseAllDocuments(repoFile(`${DIR}/${file}`), { strict: true, uniqueKeys: true })) {
      if (doc.errors.length > 0 || doc.warnings.length > 0) throw new Error(`${file}: ${[...doc.errors, ...doc.warnings].map(e => e.message).join('; ')}`)
      const object = doc.toJS() as Record<string, unknown> | null
      if (object === null) continue
      const meta = object.metadata as { name: string, namespace?: string }
      out.push({ file, kind: String(object.kind), name: meta.name, namespace: meta.namespace, object })
    }
  }
  parsed = out
  return out
}

/** kubernetes-models classes by apiVersion and kind. */
const MODELS: Record<string, Record<string, unknown>> = { v1: coreV1, 'apps/v1': appsV1 }

function model (object: Record<string, unknown>): { validate: () => void } {
  const group = MODELS[String(object.apiVersion)]
  const Model = group?.[String(object.kind)] as (new (o: unknown) => { validate: () => void }) | undefined
  if (Model === undefined) throw new Error(`no kubernetes-models class for ${String(object.apiVersion)} ${String(object.kind)}`)
  return new Model(object)
}

const find = <T>(kind: string, name: string): T => {
  const m = manifests().find(m => m.kind === kind && m.name === name)
  if (m === undefined) throw new Error(`no ${kind} ${name} in ${DIR}`)
  return structuredClone(m.object) as T
}

const envValue = (c: IContainer, name: string): string | undefined => c.env?.find(e => e.name === name)?.value
const reverselbContainers = (spec: IPodSpec): IContainer[] => spec.containers.filter(c => /reverselb/.test(c.image ?? ''))
/** The CLI's commands (export const command = '...' in cli/*-command.ts). */
const cliCommands = (): string[] => readdirSync(join(REPO, 'cli')).filter(f => f.endsWith('-command.ts'))
  .map(f => /export const command = '(\w+)/.exec(repoFile(`cli/${f}`))?.[1]).filter((c): c is string => c !== undefined)

describe('deploy: Kubernetes manifests', function () {
  it('every document validates against the Kubernetes schema (kubernetes-models), which rejects broken ones', function () {
    const all = manifests()
    expect(all.map(m => `${m.kind}/${m.name}`)).to.include.members(['Namespace/reverselb', 'Secret/reverselb', 'Deployment/reverselb-server', 'Service/reverselb', 'Deployment/web'])
    for (const m of all) expect(() => model(m.object).validate(), `${m.file}: ${m.kind}/${m.name}`).to.not.throw()

    const broken = structuredClone(find<IDeployment>('Deployment', 'reverselb-server'))
    ;(broken.spec?.template.spec?.containers[0].ports?.[0] as unknown as Record<string, unknown>).containerPort = 'api'
    expect(() => model(broken as unknown as Record<string, unknown>).validate()).to.throw()
    const badType = structuredClone(find<IService>('Service', 'reverselb'))
    ;(badType.spec as Record<string, unknown>).type = 'LoadBalancr'
    expect(() => model(badType as unknown as Record<string, unknown>).validate()).to.throw()
  })

  it('server: a LoadBalancer Service publishes the API port and exactly the dynamic frontend pool', function () {
    const deployment = find<IDeployment>('Deployment', 'reverselb-server')
    const pod = deployment.spec?.template
    const server = reverselbContainers(pod?.spec as IPodSpec)[0]
    expect(server.args).to.deep.equal(['server'])
    const api = Number(envValue(server, 'PORT'))
    const first = Number(envValue(server, 'DYN_PORT'))
    const count = Number(envValue(server, 'DYN_PORT_COUNT'))
    const pool = Array.from({ length: count }, (_, i) => first + i)
    expect(count).to.be.greaterThan(0)
    expect(server.ports?.map(p => p.containerPort)).to.deep.equal([api, ...pool])

    const service = find<IService>('Service', 'reverselb')
    expect(service.spec?.type).to.equal('LoadBalancer')
    expect(service.spec?.ports?.map(p => p.port)).to.deep.equal([api, ...pool])
    for (const p of service.spec?.ports ?? []) {
      const target = server.ports?.find(c => c.name === p.targetPort || c.containerPort === p.targetPort)
      expect(target?.containerPort, `Service port ${p.port} -> ${String(p.targetPort)}`).to.equal(p.port)
    }
    for (const [k, v] of Object.entries(service.spec?.selector ?? {})) expect(pod?.metadata?.labels?.[k], k).to.equal(v)
    for (const [k, v] of Object.entries(deployment.spec?.selector.matchLabels ?? {})) expect(pod?.metadata?.labels?.[k], k).to.equal(v)
    expect(service.metadata?.namespace).to.equal(deployment.metadata?.namespace)
  })

  it('server: token from the Secret, fixed TLS certificate, HTTPS /healthz probes, non-root as in the image', function () {
    const deployment = find<IDeployment>('Deployment', 'reverselb-server')
    const spec = deployment.spec?.template.spec as IPodSpec
    const server = reverselbContainers(spec)[0]
    const token = server.env?.find(e => e.name === 'TOKEN') as IEnvVar
    expect(token.value, 'never inline').to.equal(undefined)
    const ref = token.valueFrom?.secretKeyRef
    const secret = find<ISecret>('Secret', String(ref?.name))
    expect(secret.metadata?.namespace).to.equal(deployment.metadata?.namespace)
    expect({ ...secret.stringData, ...secret.data }).to.have.property(String(ref?.key))

    const tlsVolume = spec.volumes?.find(v => v.secret !== undefined)
    const mount = server.volumeMounts?.find(m => m.name === tlsVolume?.name)
    expect(envValue(server, 'TLS_CERT')).to.equal(`${String(mount?.mountPath)}/tls.crt`)
    expect(envValue(server, 'TLS_KEY')).to.equal(`${String(mount?.mountPath)}/tls.key`)
    // That Secret holds a private key, so it is created from files, as the docs show.
    expect(repoFile('docs/deploy.md')).to.include(`create secret tls ${String(tlsVolume?.secret?.secretName)} `)

    for (const probe of [server.readinessProbe, server.livenessProbe]) {
      expect(probe?.httpGet).to.deep.include({ path: '/healthz', port: 'api', scheme: 'HTTPS' })
    }
    const dockerUser = parseDockerfile(repoFile('Dockerfile')).stages.at(-1)?.instructions.filter(i => i.keyword === 'USER').at(-1)?.args
    expect(spec.securityContext?.runAsNonRoot).to.equal(true)
    expect(`${String(spec.securityContext?.runAsUser)}:${String(spec.securityContext?.runAsGroup)}`).to.equal(dockerUser)
    expect(server.securityContext).to.deep.include({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true })
    expect(server.securityContext?.capabilities?.drop).to.deep.equal(['ALL'])
  })

  it('client sidecar: the app and a `reverselb tunnel` container, forwarding to the app\'s port through a published frontend', function () {
    const web = find<IDeployment>('Deployment', 'web')
    const spec = web.spec?.template.spec as IPodSpec
    const [tunnel] = reverselbContainers(spec)
    const apps = spec.containers.filter(c => c !== tunnel)
    expect(tunnel.args).to.deep.equal(['tunnel'])
    expect(apps).to.have.length.at.least(1)
    // The sidecar reaches the app over the pod's loopback.
    const [host, port] = String(envValue(tunnel, 'SERVICE_ENDPOINT')).split(':')
    expect(host).to.equal('127.0.0.1')
    expect(apps.flatMap(a => a.ports ?? []).map(p => p.containerPort)).to.include(Number(port))
    // Its frontend port is one the server's LoadBalancer publishes.
    const published = find<IService>('Service', 'reverselb').spec?.ports?.map(p => p.port)
    expect(published).to.include(Number(envValue(tunnel, 'PORT')))
    for (const name of ['TOKEN', 'FINGERPRINT']) {
      const e = tunnel.env?.find(v => v.name === name)
      expect(e?.valueFrom?.secretKeyRef?.name, `${name} from a Secret`).to.be.a('string')
    }
    expect(tunnel.securityContext).to.deep.include({ runAsUser: 10001, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true })
  })

  describe('the documented certificate commands', function () {
    let server: TunnelServer | undefined
    let client: TunnelClient | undefined
    let backend: TcpServer | undefined
    after(async function () {
      await client?.close()
      await server?.close()
      await backend?.close()
    })

    it('make a certificate the server serves (TLS_CERT/TLS_KEY) and a fingerprint clients pin', async function () {
      if (!onPath('openssl')) {
        console.log('      (skipped: openssl is missing; Debian package "openssl")')
        this.skip()
      }
      this.timeout(30_000)
      // The `openssl ...` command lines of the Kubernetes section, run as written.
      const section = repoFile('docs/deploy.md').split(/^## /m).find(s => s.startsWith('Kubernetes')) ?? ''
      const commands = section.replace(/\\\n\s*/g, ' ').split('\n').map(l => l.trim()).filter(l => l.startsWith('openssl '))
      const [req, fingerprintCmd] = [commands.find(c => c.startsWith('openssl req ')), commands.find(c => c.includes('-fingerprint'))]
      expect(req, 'openssl req in the docs').to.be.a('string')
      expect(fingerprintCmd, 'openssl x509 -fingerprint in the docs').to.be.a('string')
      const dir = tempDir('k8s-tls')
      await runOk('sh', ['-c', req as string], { cwd: dir })
      const fingerprint = (await runOk('sh', ['-c', (fingerprintCmd as string).replace(/\s+#.*$/, '')], { cwd: dir })).stdout.trim()

      // What the Deployment's TLS_CERT / TLS_KEY do, and what the sidecar's FINGERPRINT does.
      backend = await echoServer()
      server = await startServer({ tlsCert: join(dir, 'tls.crt'), tlsKey: join(dir, 'tls.key') })
      expect(server.fingerprint.replace(/:/g, '')).to.equal(fingerprint.replace(/:/g, '').toUpperCase())
      const srv = server
      const opened = new Promise<number>(resolve => srv.once('sessionOpened', ({ service }) => resolve(service.port)))
      client = startClient(server, tunnelData(backend.port), { fingerprint })
      const port = await opened
      const payload = randomPayload(64 * 1024)
      expect((await exchange(port, payload)).equals(payload)).to.equal(true)
    })
  })

  it('reverselb containers run a real command and set only variables reverselb reads', function () {
    const known = reverselbEnvNames()
    const commands = cliCommands()
    for (const m of manifests().filter(m => m.kind === 'Deployment')) {
      for (const c of reverselbContainers((m.object as unknown as IDeployment).spec?.template.spec as IPodSpec)) {
        expect(commands, `${m.name}/${c.name} args`).to.include(c.args?.[0])
        for (const e of c.env ?? []) expect(known, `${m.name}/${c.name}: ${e.name}`).to.include(e.name)
      }
    }
  })
})
