import { expect } from 'chai'
import { readFile } from 'node:fs/promises'
import { CLI_DOC, cliHelp, renderCliDoc } from '../../scripts/cli-docs.js'

describe('docs/cli.md', function () {
  it('holds what `reverselb ... --help` prints (regenerate with `npm run docs:cli`)', async function () {
    const doc = await readFile(CLI_DOC, 'utf8')
    expect(doc).to.include((await cliHelp(['server', '--help'])).trimEnd())
    expect(await renderCliDoc(doc)).to.equal(doc)
  })
})
