import { expect } from 'chai'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Script } from 'node:vm'
import { DASHBOARD_CSP, DASHBOARD_HTML } from '../../../server/dashboard-page.js'

// dist/test/unit/server -> the repository's server/dashboard/
const source = (name: string): string => readFileSync(new URL(`../../../../server/dashboard/${name}`, import.meta.url), 'utf8')
const sha256 = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`

describe('unit: dashboard page', function () {
  const style = /<style>([\s\S]*?)<\/style>/.exec(DASHBOARD_HTML)?.[1]
  const script = /<script>([\s\S]*?)<\/script>/.exec(DASHBOARD_HTML)?.[1]

  it('inlines server/dashboard/style.css and app.js into index.html, leaving no reference to fetch', function () {
    expect(style?.trim()).to.equal(source('style.css').trim())
    expect(script?.trim()).to.equal(source('app.js').trim())
    expect(DASHBOARD_HTML.match(/<script/g)).to.have.length(1)
    expect(DASHBOARD_HTML).not.to.match(/\ssrc=|rel="stylesheet"/)
    const undone = DASHBOARD_HTML
      .replace(`<style>${style ?? ''}</style>`, () => '<link rel="stylesheet" href="style.css">')
      .replace(`<script>${script ?? ''}</script>`, () => '<script src="app.js"></script>')
    expect(undone).to.equal(source('index.html'))
  })

  it('app.js compiles (a syntax error would otherwise show only in a browser)', function () {
    expect(() => new Script(source('app.js'), { filename: 'server/dashboard/app.js' })).not.to.throw()
  })

  it('has a CSP that allows exactly that script and that style', function () {
    const directives = new Map(DASHBOARD_CSP.split('; ').map(d => [d.split(' ')[0], d.split(' ').slice(1).join(' ')]))
    expect(directives.get('default-src')).to.equal("'none'")
    expect(directives.get('script-src')).to.equal(sha256(script ?? ''))
    expect(directives.get('style-src')).to.equal(sha256(style ?? ''))
    expect(directives.get('connect-src')).to.equal("'self'")
  })
})
