import { expect } from 'chai'
import { Ajv } from 'ajv'
import { LOG_LEVELS } from '../../protocol/index.js'
import { repoFile, reverselbEnvNames } from './helpers.js'

/** An ARM template expression: the whole string is "[...]". */
const EXPR = '^\\[.*\\]$'
const intOrExpr = { anyOf: [{ type: 'integer', minimum: 0, maximum: 65535 }, { type: 'string', pattern: EXPR }] }
/** A literal array of `item`, or an ARM expression that makes one. */
const arrayOrExpr = (item: object): object => ({ anyOf: [{ type: 'array', items: item }, { type: 'string', pattern: EXPR }] })
const volumeMount = {
  type: 'object',
  required: ['name', 'mountPath'],
  additionalProperties: false,
  properties: { name: { type: 'string' }, mountPath: { type: 'string' }, readOnly: { type: 'boolean' } }
}
const volume = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: { type: 'string' },
    azureFile: {
      type: 'object',
      required: ['shareName', 'storageAccountName'],
      additionalProperties: false,
      properties: { shareName: { type: 'string' }, storageAccountName: { type: 'string' }, storageAccountKey: { type: 'string' }, readOnly: { type: 'boolean' } }
    },
    secret: { type: 'object', additionalProperties: { type: 'string' } },
    emptyDir: { type: 'object' }
  }
}
const portEntry = {
  type: 'object',
  required: ['port'],
  additionalProperties: false,
  properties: { port: intOrExpr, protocol: { enum: ['TCP', 'UDP'] } }
}

/**
 * JSON schema of the parts of an Azure Resource Manager deployment template that deploy/aci.json
 * uses, after the 2019-04-01 deploymentTemplate schema and the 2023-05-01
 * Microsoft.ContainerInstance/containerGroups resource (only its properties we set; unknown ones
 * are errors, to catch typos).
 */
const TEMPLATE_SCHEMA = {
  type: 'object',
  required: ['$schema', 'contentVersion', 'parameters', 'resources', 'outputs'],
  additionalProperties: false,
  properties: {
    $schema: { const: 'https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#' },
    contentVersion: { type: 'string', pattern: '^[0-9]+(\\.[0-9]+){3}$' },
    metadata: { type: 'object' },
    parameters: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        required: ['type', 'metadata'],
        additionalProperties: false,
        properties: {
          type: { enum: ['string', 'securestring', 'int', 'bool', 'object', 'secureObject', 'array'] },
          defaultValue: {},
          allowedValues: { type: 'array', minItems: 1 },
          minValue: { type: 'integer' },
          maxValue: { type: 'integer' },
          minLength: { type: 'integer', minimum: 0 },
          maxLength: { type: 'integer', minimum: 0 },
          metadata: { type: 'object', required: ['description'], properties: { description: { type: 'string', minLength: 1 } } }
        }
      }
    },
    variables: { type: 'object' },
    resources: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['type', 'apiVersion', 'name', 'location', 'properties'],
        additionalProperties: false,
        properties: {
          type: { const: 'Microsoft.ContainerInstance/containerGroups' },
          apiVersion: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}(-preview)?$' },
          name: { type: 'string' },
          location: { type: 'string' },
          properties: {
            type: 'object',
            required: ['containers', 'osType'],
            additionalProperties: false,
            properties: {
              osType: { enum: ['Linux', 'Windows'] },
              restartPolicy: { enum: ['Always', 'OnFailure', 'Never'] },
              volumes: arrayOrExpr(volume),
              containers: {
                type: 'array',
                minItems: 1,
                items: {
                  type: 'object',
                  required: ['name', 'properties'],
                  additionalProperties: false,
                  properties: {
                    name: { type: 'string' },
                    properties: {
                      type: 'object',
                      required: ['image', 'resources'],
                      additionalProperties: false,
                      properties: {
                        image: { type: 'string' },
                        command: { type: 'array', items: { type: 'string' } },
                        environmentVariables: {
                          type: 'array',
                          items: {
                            type: 'object',
                            required: ['name'],
                            additionalProperties: false,
                            // Exactly one of value / secureValue.
                            oneOf: [
                              { required: ['value'], properties: { value: { type: 'string' } } },
                              { required: ['secureValue'], properties: { secureValue: { type: 'string' } } }
                            ],
                            properties: { name: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }, value: { type: 'string' }, secureValue: { type: 'string' } }
                          }
                        },
                        resources: {
                          type: 'object',
                          required: ['requests'],
                          additionalProperties: false,
                          properties: {
                            requests: {
                              type: 'object',
                              required: ['cpu', 'memoryInGB'],
                              additionalProperties: false,
                              properties: { cpu: { type: 'number', exclusiveMinimum: 0 }, memoryInGB: { type: 'number', exclusiveMinimum: 0 } }
                            }
                          }
                        },
                        ports: { type: 'array', items: portEntry },
                        volumeMounts: arrayOrExpr(volumeMount)
                      }
                    }
                  }
                }
              },
              ipAddress: {
                type: 'object',
                required: ['type', 'ports'],
                additionalProperties: false,
                properties: {
                  type: { enum: ['Public', 'Private'] },
                  dnsNameLabel: { type: 'string' },
                  ports: { type: 'array', minItems: 1, items: portEntry }
                }
              }
            }
          }
        }
      }
    },
    outputs: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        required: ['type', 'value'],
        additionalProperties: false,
        properties: { type: { enum: ['string', 'int', 'bool', 'object', 'array'] }, value: {} }
      }
    }
  }
} as const

/** The seed's ACI template parameters (goreverselb README), all of which this template keeps. */
const SEED_PARAMETERS = ['containerGroupName', 'containerImageName', 'port', 'httpport', 'natsport', 'token', 'autocertsubjectname', 'dnsNameLabel', 'loglevel', 'portserv1', 'portserv2']

interface Template {
  parameters: Record<string, { type: string, defaultValue?: unknown, allowedValues?: unknown[] }>
  variables?: Record<string, string>
  resources: Array<{ properties: { containers: Array<{ properties: { environmentVariables: Array<{ name: string, value?: string, secureValue?: string }>, ports: Array<{ port: unknown }> } }>, ipAddress: { ports: Array<{ port: unknown }>, dnsNameLabel?: string } } }>
  outputs: Record<string, { type: string, value: string }>
}

const load = (): Template => JSON.parse(repoFile('deploy/aci.json')) as Template
const refs = (json: unknown, kind: 'parameters' | 'variables'): Set<string> =>
  new Set([...(JSON.stringify(json) ?? '').matchAll(new RegExp(`\\b${kind}\\('([^']+)'\\)`, 'g'))].map(m => m[1]))

/**
 * Evaluates an ARM template expression ("[...]"; any other string is itself) for the few
 * functions the certificate volume uses. Variables are evaluated when referenced.
 */
function evaluate (value: unknown, t: Template, params: Record<string, unknown>): unknown {
  if (typeof value !== 'string' || !/^\[.*\]$/s.test(value)) return value
  const src = value.slice(1, -1)
  let i = 0
  const skip = (): void => { while (src[i] === ' ') i++ }
  const expr = (): unknown => {
    skip()
    if (src[i] === "'") {
      let out = ''
      for (i++; !(src[i] === "'" && src[i + 1] !== "'"); i++) { if (src[i] === "'") i++; out += src[i] }
      i++
      return out
    }
    const name = /^[A-Za-z]+/.exec(src.slice(i))?.[0] ?? ''
    i += name.length
    skip()
    if (src[i++] !== '(') throw new Error(`unsupported expression at ${i} in ${value as string}`)
    const args: unknown[] = []
    for (skip(); src[i] !== ')'; skip()) { args.push(expr()); skip(); if (src[i] === ',') i++ }
    i++
    const fns: Record<string, (...a: any[]) => unknown> = {
      if: (c: boolean, a: unknown, b: unknown) => c ? a : b,
      not: (a: boolean) => !a,
      empty: (a: string | unknown[]) => a.length === 0,
      parameters: (n: string) => n in params ? params[n] : t.parameters[n].defaultValue,
      variables: (n: string) => evaluate(t.variables?.[n], t, params),
      createArray: (...a: unknown[]) => a,
      createObject: (...a: unknown[]) => Object.fromEntries(a.flatMap((v, k) => k % 2 === 0 ? [[v, a[k + 1]]] : []))
    }
    if (fns[name] === undefined) throw new Error(`unsupported function ${name}`)
    return fns[name](...args)
  }
  return expr()
}

describe('deploy: Azure Container Instances template', function () {
  const ajv = new Ajv({ allErrors: true, strict: true })
  const check = ajv.compile(TEMPLATE_SCHEMA)

  it('matches the JSON schema of the template parts it uses (and the schema rejects broken templates)', function () {
    expect(check(load()), ajv.errorsText(check.errors)).to.equal(true)
    const broken = load() as unknown as { resources: Array<{ properties: { containers: Array<{ properties: Record<string, unknown> }> } }> }
    broken.resources[0].properties.containers[0].properties.environmentVariables = [{ name: 'TOKEN', value: 'x', secureValue: 'y' }]
    broken.resources[0].properties.containers[0].properties.ports = [{ port: 'eighty' }]
    expect(check(broken)).to.equal(false)
    const typo = load() as unknown as { resources: Array<{ properties: Record<string, unknown> }> }
    typo.resources[0].properties.restartpolicy = 'Always'
    expect(check(typo)).to.equal(false)
  })

  it('keeps the seed\'s parameters; the token is a securestring passed as a secure value', function () {
    const t = load()
    for (const p of SEED_PARAMETERS) expect(t.parameters, p).to.have.property(p)
    expect(t.parameters.token.type).to.equal('securestring')
    expect(t.parameters.token).to.not.have.property('defaultValue')
    const env = t.resources[0].properties.containers[0].properties.environmentVariables
    const token = env.find(e => e.name === 'TOKEN')
    expect(token).to.deep.equal({ name: 'TOKEN', secureValue: "[parameters('token')]" })
    // A securestring never ends up in a plain value or an output.
    for (const e of env.filter(e => e.value !== undefined)) expect(e.value).to.not.include("parameters('token')")
    expect(JSON.stringify(t.outputs)).to.not.include("parameters('token')")
    expect(t.parameters.loglevel.allowedValues).to.deep.equal([...LOG_LEVELS])
  })

  it('uses every parameter in the resources, and references only declared parameters and variables', function () {
    const t = load()
    const declared = new Set(Object.keys(t.parameters))
    const variables = t.variables ?? {}
    const everywhere = [t.parameters, variables, t.resources, t.outputs]
    for (const p of everywhere.flatMap(j => [...refs(j, 'parameters')])) expect(declared, `parameters('${p}')`).to.include(p)
    for (const v of everywhere.flatMap(j => [...refs(j, 'variables')])) expect(variables, `variables('${v}')`).to.have.property(v)
    // Used by the resources directly, or through a variable (or a parameter default) they use.
    const used = new Set(refs(t.resources, 'parameters'))
    const pending = [...refs(t.resources, 'variables')]
    for (let v = pending.pop(); v !== undefined; v = pending.pop()) {
      for (const p of refs(variables[v], 'parameters')) used.add(p)
      pending.push(...refs(variables[v], 'variables'))
    }
    for (const p of [...used]) for (const q of refs(t.parameters[p]?.defaultValue, 'parameters')) used.add(q)
    expect([...declared].filter(p => !used.has(p)), 'unused parameters').to.deep.equal([])
  })

  it('sets only environment variables reverselb reads, and publishes the API and service ports', function () {
    const t = load()
    const container = t.resources[0].properties.containers[0].properties
    const known = reverselbEnvNames()
    const names = container.environmentVariables.map(e => e.name)
    for (const name of names) expect(known, name).to.include(name)
    for (const seed of ['PORT', 'TOKEN', 'AUTO_CERT_SUBJECT_NAME', 'HTTP_PORT', 'NATS_PORT', 'LOGLEVEL']) expect(names).to.include(seed)
    expect(container.environmentVariables.find(e => e.name === 'PORT')?.value).to.equal("[string(parameters('port'))]")
    const publicPorts = t.resources[0].properties.ipAddress.ports.map(p => p.port)
    expect(publicPorts).to.deep.equal(container.ports.map(p => p.port))
    expect(publicPorts).to.include.members(["[parameters('port')]", "[parameters('portserv1')]", "[parameters('portserv2')]"])
    expect(t.resources[0].properties.ipAddress.dnsNameLabel).to.equal("[parameters('dnsNameLabel')]")
  })

  it('keeps the certificate on an Azure Files share when certShareName is given, and only then', function () {
    const t = load()
    const group = t.resources[0].properties as unknown as { volumes: string, containers: Array<{ properties: { volumeMounts: string, environmentVariables: Array<{ name: string, value?: string }> } }> }
    const container = group.containers[0].properties
    const certDir = (params: Record<string, unknown>): unknown => evaluate(container.environmentVariables.find(e => e.name === 'AUTO_CERT_DIR')?.value, t, params)
    // Off by default: no volume, and AUTO_CERT_DIR empty, which reverselb reads as unset.
    expect(evaluate(group.volumes, t, {})).to.deep.equal([])
    expect(evaluate(container.volumeMounts, t, {})).to.deep.equal([])
    expect(certDir({})).to.equal('')
    const on = { certShareName: 'reverselb-cert', certStorageAccountName: 'acct', certStorageAccountKey: 'k3y' }
    expect(evaluate(group.volumes, t, on)).to.deep.equal([{ name: 'autocert', azureFile: { shareName: 'reverselb-cert', storageAccountName: 'acct', storageAccountKey: 'k3y' } }])
    expect(evaluate(container.volumeMounts, t, on)).to.deep.equal([{ name: 'autocert', mountPath: certDir(on) }])
    expect(certDir(on)).to.match(/^\/\S+$/)
    expect(t.parameters.certStorageAccountKey.type).to.equal('securestring')
    expect(t.parameters.certStorageAccountKey.defaultValue).to.equal('')
    // The key never reaches a plain value or an output.
    expect(JSON.stringify(container.environmentVariables) + JSON.stringify(t.outputs)).not.to.include('certStorageAccountKey')
    expect(t.outputs.fingerprintHint.value).to.include('certShareName')
  })

  it('outputs the FQDN and a hint that finds the fingerprint line the server really logs', function () {
    const t = load()
    expect(t.outputs.fqdn.value).to.match(/\.ipAddress\.fqdn\]$/)
    const hint = t.outputs.fingerprintHint.value
    expect(hint).to.include('az container logs').and.include('grep fingerprint')
    // The server prints the line the hint greps for.
    expect(repoFile('server/tunnel-server.ts')).to.match(/log\.info\(`certificate SHA-256 fingerprint: /)
    // ARM expressions: balanced brackets and parentheses, and single-quoted strings closed.
    for (const [name, o] of Object.entries(t.outputs)) {
      const inner = o.value.slice(1, -1).replace(/'(?:[^']|'')*'/g, "''")
      expect(inner.split('(').length, `${name} parentheses`).to.equal(inner.split(')').length)
      expect(inner, `${name} quotes`).to.not.include("'''")
    }
  })

  it('docs/deploy.md deploys it with one `az deployment group create`', function () {
    // One command, possibly continued over lines with a trailing backslash.
    expect(repoFile('docs/deploy.md')).to.match(/az deployment group create(?:[^\n]|\\\n)*--template-file deploy\/aci\.json/)
  })
})
