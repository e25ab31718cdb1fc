import { expect } from 'chai'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, givenOptions, loadConfigFile } from '../../../cli/config-file.js'
import { loadServerConfig } from '../../../cli/server-config.js'
import { loadTunnelConfig } from '../../../cli/tunnel-config.js'

describe('unit: config files', function () {
  let dir: string
  before(function () { dir = mkdtempSync(join(tmpdir(), 'reverselb-unit-config-')) })
  after(function () { rmSync(dir, { recursive: true, force: true }) })
  const file = (text: string, name = 'c.yaml'): string => { const p = join(dir, name); writeFileSync(p, text); return p }
  const refused = (fn: () => unknown, message: RegExp): void => {
    let err: unknown
    try { fn() } catch (e) { err = e }
    expect(err).to.be.instanceOf(ConfigError).with.property('code', 'ERR_REVERSELB_CONFIG')
    expect((err as Error).message).to.match(message)
  }

  it('turns a tunnels file into the client options and checked services', function () {
    writeFileSync(join(dir, 'token'), 'from-a-file\n')
    const config = loadTunnelConfig(file([
      'apiendpoint: [a:1, "b:2,c:3"]', 'token: { file: token }', 'connections: 2', 'services:',
      '  - { servicename: web, serviceendpoint: [10.0.0.1:80, 10.0.0.2:80], frontendport: 8000, proxyprotocol: v1 }',
      '  - { servicename: ssh, instancename: box1, serviceendpoint: "127.0.0.1:22" }'
    ].join('\n')))
    expect(config.top).to.deep.equal({ apiendpoint: ['a:1', 'b:2,c:3'], token: 'from-a-file', connections: 2 })
    expect(config.services).to.deep.equal([
      { data: { serviceName: 'web', frontendData: { port: 8000 }, backendAcceptBacklog: 2, targetPort: 80, targetAddresses: ['10.0.0.1', '10.0.0.2'] }, options: { proxyProtocol: 'v1' } },
      { data: { serviceName: 'ssh', instanceName: 'box1', frontendData: { port: 0 }, backendAcceptBacklog: 2, targetPort: 22, targetAddresses: ['127.0.0.1'] }, options: {} }
    ])
  })

  it('names file, line and key of what it refuses', function () {
    refused(() => loadTunnelConfig(file('services:\n  - servicename: a\n    serviceendpoint: [1.2.3.4:1, 1.2.3.4:2]\n')), /c\.yaml:3: services\.0\.serviceendpoint: every endpoint of a service must use the same port/)
    refused(() => loadTunnelConfig(file('services:\n  - servicename: a\n    serviceendpoint: nohost\n')), /c\.yaml:3: services\.0\.serviceendpoint: "nohost" is not in the form hostname:port/)
    refused(() => loadTunnelConfig(file('services: {}\n')), /c\.yaml:1: services: must be array/)
    refused(() => loadTunnelConfig(file('mux: spdy\nservices: []\n')), /c\.yaml:1: mux: must be one of "yamux", "mplex"/)
    refused(() => loadTunnelConfig(file('token: { file: a, env: B }\nservices: []\n')), /c\.yaml:1: token: must be a string or \{ file: \.\.\. \} or \{ env: \.\.\. \}/)
    refused(() => loadTunnelConfig(file('services: [\n')), /c\.yaml:2: not valid YAML/)
    refused(() => loadTunnelConfig(join(dir, 'absent.yaml')), /absent\.yaml: cannot read the config file \(ENOENT\)/)
    refused(() => loadServerConfig(file('tokens:\n  - services: [a]\n')), /c\.yaml:2: tokens\.0: missing key "token"/)
  })

  it('reads an empty file as an empty object, which the tunnels schema refuses (no services key)', function () {
    refused(() => loadTunnelConfig(file('')), /c\.yaml: \(top level\): missing key "services"/)
    expect(loadConfigFile(file('# nothing\n'), 'server.schema.json').value).to.deep.equal({})
  })

  it('tells options given on the command line or in the environment from defaults', function () {
    const was = process.env.RLB_UNIT_ENV
    process.env.RLB_UNIT_ENV = 'x'
    try {
      const given = givenOptions(['--keepalive=5', '-e', 'h:1', '--no-insecuretls'], {
        keepalive: {}, apiendpoint: { alias: 'e' }, insecuretls: { alias: 'i' }, mux: { env: 'RLB_UNIT_ENV' }, proxy: {}
      })
      expect([...given].sort()).to.deep.equal(['apiendpoint', 'insecuretls', 'keepalive', 'mux'])
    } finally {
      if (was === undefined) delete process.env.RLB_UNIT_ENV; else process.env.RLB_UNIT_ENV = was
    }
  })
})
