// Writes the reference blocks of docs/cli.md from the CLI's own --help (`npm run docs:cli`).
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'

export const CLI_DOC = fileURLToPath(new URL('../../docs/cli.md', import.meta.url))
const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url))

/** `<!-- generated: reverselb ARGS -->`, a fenced block, `<!-- end generated -->`. */
const BLOCK = /(<!-- generated: reverselb ([^>]*?) -->\n```\n)[\s\S]*?(```\n<!-- end generated -->)/g

/**
 * What `reverselb ...args` prints. Defaults are read from the environment (PORT, TOKEN, ...), so
 * the CLI runs with none of it; without a terminal yargs wraps at the CLI's fixed 110 columns.
 */
export async function cliHelp (args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH } })
  return stdout
}

/** `doc` with every generated block replaced by the current --help output. */
export async function renderCliDoc (doc: string): Promise<string> {
  const outputs = new Map<string, string>()
  for (const m of doc.matchAll(BLOCK)) outputs.set(m[2], await cliHelp(m[2].split(' ')))
  if (outputs.size === 0) throw new Error(`no generated blocks in ${CLI_DOC}`)
  return doc.replace(BLOCK, (_all, open: string, args: string, close: string) => `${open}${(outputs.get(args) ?? '').trimEnd()}\n${close}`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await writeFile(CLI_DOC, await renderCliDoc(await readFile(CLI_DOC, 'utf8')))
}
