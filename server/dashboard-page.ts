import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'

/*
 * The dashboard served at `/`: server/dashboard/ (index.html, app.js, style.css). It asks for the
 * token, keeps it in sessionStorage, and streams /events with fetch() and an Authorization header
 * (EventSource cannot send headers, and a token in the URL would end up in proxy logs and browser
 * history). Everything that comes from the server is inserted as text, never as HTML: service
 * names are chosen by clients.
 *
 * The script and style are inlined into the page once, at load, so it stays one self-contained
 * response under a CSP that allows exactly their hashes (no further routes). The files are read
 * from the package root, not copied into dist/: dist/server/ -> ../../server/dashboard/ is the
 * same place in a checkout and in an installed package (package.json "files" ships it).
 */
const DIR = new URL('../../server/dashboard/', import.meta.url)
const read = (name: string): string => readFileSync(new URL(name, DIR), 'utf8')

const STYLE = `\n${read('style.css')}`
const SCRIPT = `\n${read('app.js')}`

function inline (html: string, tag: string, replacement: string): string {
  if (!html.includes(tag)) throw new Error(`server/dashboard/index.html lacks ${tag}`)
  return html.replace(tag, () => replacement)
}

export const DASHBOARD_HTML = inline(inline(read('index.html'),
  '<link rel="stylesheet" href="style.css">', `<style>${STYLE}</style>`),
  '<script src="app.js"></script>', `<script>${SCRIPT}</script>`)

const hash = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`

/** Allows exactly the page's own inline script and style, and fetches to the same origin. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${hash(SCRIPT)}`,
  `style-src ${hash(STYLE)}`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')
