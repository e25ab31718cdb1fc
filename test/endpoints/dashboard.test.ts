import { expect } from 'chai'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
import { echoServer, freePort, freePortRange, randomPayload } from '../fixtures/net.js'
import { TOKEN, startClient, startServer, tunnelData } from '../fixtures/tunnel.js'
import type { TunnelClient, TunnelServer } from '../../index.js'
import type { TcpServer } from '../fixtures/net.js'
import type { BrowserContext, Page } from 'playwright-core'

const CHROMIUM = '/usr/bin/chromium'
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
// dist/test/endpoints -> repository root
const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/', import.meta.url))

/** Sends data through the tunnel for about `ms`, in bounded steps, so the chart has something to show. */
async function traffic (port: number, ms: number): Promise<void> {
  const socket = connect({ port, host: '127.0.0.1' })
  socket.resume()
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const until = Date.now() + ms
  for (let i = 0; i < 1000 && Date.now() < until; i++) {
    socket.write(randomPayload(32 * 1024))
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  socket.end()
  await new Promise(resolve => socket.once('close', resolve))
}

describe('endpoints: dashboard in headless Chromium', function () {
  this.timeout(60_000)
  let backend: TcpServer
  let server: TunnelServer
  let base: string
  let context: BrowserContext
  let profile: string
  let page: Page
  const clients: TunnelClient[] = []
  const pageErrors: string[] = []

  before(async function () {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`)
    backend = await echoServer()
    const httpPort = await freePort()
    server = await startServer({ httpPort, dynPort: await freePortRange(3), dynPortCount: 3 })
    base = `http://127.0.0.1:${httpPort}/`
    profile = await mkdtemp(join(tmpdir(), 'reverselb-chromium-'))
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: ARGS, headless: true, viewport: { width: 1280, height: 900 } })
    page = await context.newPage()
    page.on('pageerror', (err) => pageErrors.push(err.message))
    // Errors other than the expected 401 of the wrong-token attempt (a CSP violation would show here).
    page.on('console', (msg) => { if (msg.type() === 'error' && !/status of 401/.test(msg.text())) pageErrors.push(msg.text()) })
    await mkdir(ARTIFACTS, { recursive: true })
  })
  after(async function () {
    await Promise.all(clients.splice(0).map(async c => await c.close()))
    await context?.close()
    if (profile !== undefined) await rm(profile, { recursive: true, force: true })
    await server?.close()
    await backend?.close()
  })

  it('refuses a wrong token, then connects with the right one', async function () {
    await page.goto(base)
    await page.locator('#token').fill('not-the-token')
    await page.locator('#login-form button[type=submit]').click()
    await page.locator('#login-error').filter({ hasText: 'not accepted' }).waitFor()
    await page.locator('#token').fill(TOKEN)
    await page.locator('#login-form button[type=submit]').click()
    await page.locator('#status-text').filter({ hasText: /^live$/ }).waitFor()
    expect(await page.locator('#empty').isVisible()).to.equal(true)
    // The token is kept for the tab only, and never put in the URL.
    expect(page.url()).to.equal(base)
  })

  it('shows a service when a tunnel registers, its throughput, and removes it when it closes', async function () {
    const client = startClient(server, tunnelData(backend.port, { serviceName: 'web-ui', backendAcceptBacklog: 2 }))
    clients.push(client)
    const { frontendPort } = await client.ready()
    const card = page.locator('[data-service="web-ui"]')
    await card.waitFor({ state: 'visible', timeout: 10_000 })
    expect(await card.locator('h3').textContent()).to.equal('web-ui')
    expect(await card.locator('.addr').textContent()).to.equal(`127.0.0.1:${frontendPort}`)
    await card.locator('tbody tr').nth(1).waitFor()
    expect(await card.locator('tbody tr').count()).to.equal(2)
    expect(await page.locator('#stat-services').textContent()).to.equal('1')

    // A second service with a hostile name: shown as text, never run as HTML.
    const hostile = '<img src=x onerror=window.__pwned=1>'
    const other = startClient(server, tunnelData(backend.port, { serviceName: hostile }))
    clients.push(other)
    const { frontendPort: otherPort } = await other.ready()
    const hostileCard = page.locator('article.service').filter({ has: page.locator('h3', { hasText: hostile }) })
    await hostileCard.waitFor()
    expect(await page.evaluate('window.__pwned')).to.equal(undefined)
    expect(await page.locator('article.service img').count()).to.equal(0)

    // Live throughput: the legend and the service line show a non-zero rate while data flows.
    const flows = Promise.all([traffic(frontendPort, 4000), traffic(otherPort, 4000)])
    await page.locator('#legend li', { hasText: /web-ui \d+(\.\d)? (KiB|MiB)\/s/ }).waitFor({ timeout: 10_000 })
    await page.waitForTimeout(1500)
    const moved = await card.locator('.kv').textContent()
    expect(moved).to.match(/in \d+(\.\d)? (KiB|MiB)\/s/)
    // Browser-side code as a string: the tests compile without the DOM library.
    const chartPixels = await page.evaluate(`(() => {
      const c = document.getElementById('chart')
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data
      let painted = 0
      for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) painted++
      return painted
    })()`)
    expect(chartPixels).to.be.greaterThan(1000)
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true })
    await flows

    // Usable on a phone: no sideways scrolling, sessions as stacked rows.
    const phone = await context.newPage()
    await phone.setViewportSize({ width: 390, height: 844 })
    await phone.goto(base)
    // sessionStorage is per tab: a new tab asks for the token again.
    await phone.locator('#token').fill(TOKEN)
    await phone.locator('#login-form button[type=submit]').click()
    await phone.locator('[data-service="web-ui"]').waitFor({ timeout: 10_000 })
    const overflow = await phone.evaluate('document.documentElement.scrollWidth - window.innerWidth')
    expect(overflow).to.be.at.most(0)
    // A page opened later still lists what happened before (the stream replays recent events).
    expect(await phone.locator('#events li .ev').allTextContents()).to.include.members(['service.up', 'session.join'])
    expect(await phone.locator('[data-service="web-ui"] thead').isVisible()).to.equal(false)
    await phone.screenshot({ path: join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true })
    await phone.close()

    await other.close()
    await hostileCard.waitFor({ state: 'detached', timeout: 10_000 })
    await client.close()
    await card.waitFor({ state: 'detached', timeout: 10_000 })
    expect(await page.locator('#empty').isVisible()).to.equal(true)
    expect(await page.locator('#stat-services').textContent()).to.equal('0')
    // The lifecycle events were listed as they happened.
    const events = await page.locator('#events li .ev').allTextContents()
    expect(events).to.include.members(['service.up', 'session.join', 'session.leave', 'service.down'])
  })

  it('disconnects a session with its Disconnect button', async function () {
    const client = startClient(server, tunnelData(backend.port, { serviceName: 'kick-me' }))
    clients.push(client)
    const { id } = await client.ready()
    const row = page.locator(`[data-service="kick-me"] tr[data-session="${id}"]`)
    await row.waitFor()
    const disconnected = new Promise<string>(resolve => client.once('disconnected', (r: { id: string }) => resolve(r.id)))
    page.once('dialog', (d) => { void d.accept() })
    await row.locator('button', { hasText: 'Disconnect' }).click()
    expect(await disconnected).to.equal(id)
    await row.waitFor({ state: 'detached', timeout: 10_000 })
    expect(pageErrors).to.deep.equal([])
  })
})
