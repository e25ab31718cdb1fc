import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { Ajv } from 'ajv'
import { LineCounter, isMap, isScalar, parseDocument } from 'yaml'
import { UsageError } from './env.js'
import type { ErrorObject, ValidateFunction } from 'ajv'
import type { Document } from 'yaml'

/** A config file that is unreadable, not YAML, or not what its schema allows: `file:line: key: why`. */
export class ConfigError extends UsageError {
  override name = 'ConfigError'
  readonly code = 'ERR_REVERSELB_CONFIG'
}

/** The published schemas (docs/schema/, shipped in the package) by file name. */
export type SchemaName = 'tunnels.schema.json' | 'server.schema.json'

const validators = new Map<SchemaName, ValidateFunction>()

function validator (name: SchemaName): ValidateFunction {
  let v = validators.get(name)
  if (v === undefined) {
    const schema = JSON.parse(readFileSync(new URL(`../../docs/schema/${name}`, import.meta.url), 'utf8')) as object
    v = new Ajv({ allErrors: true, strict: false, verbose: true }).compile(schema)
    validators.set(name, v)
  }
  return v
}

/** A parsed, schema-checked file, with what is needed to name the line of a later finding. */
export interface ConfigFile<T> {
  path: string
  value: T
  /** `path:line: key: message` for the node at `at` (keys and list indexes). */
  error: (at: Array<string | number>, message: string) => ConfigError
}

/** Reads and checks a YAML (or JSON) config file; throws ConfigError naming file, line and key. */
export function loadConfigFile<T> (path: string, schema: SchemaName): ConfigFile<T> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`${path}: cannot read the config file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  const lines = new LineCounter()
  // Duplicate keys are errors (uniqueKeys), as is anything that is not plain data.
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true })
  const bad = doc.errors[0]
  if (bad !== undefined) {
    const line = bad.linePos?.[0].line
    throw new ConfigError(`${path}${line !== undefined ? `:${line}` : ''}: not valid YAML: ${bad.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}`)
  }
  const value = doc.toJS({ maxAliasCount: 100 }) as unknown
  const error = (at: Array<string | number>, message: string): ConfigError => {
    const line = lineOf(doc, lines, at)
    const key = at.length > 0 ? at.join('.') : '(top level)'
    return new ConfigError(`${path}${line !== undefined ? `:${line}` : ''}: ${key}: ${message}`)
  }
  const validate = validator(schema)
  if (!validate(value ?? {})) {
    throw error(...describe(pick(validate.errors ?? [])))
  }
  return { path, value: (value ?? {}) as T, error }
}

/** The error to report: a value of no allowed form is reported once, not once per form. */
function pick (errors: ErrorObject[]): ErrorObject | undefined {
  const first = errors.find(e => e.keyword !== 'oneOf')
  const form = errors.find(e => e.keyword === 'oneOf' && first !== undefined && (first.instancePath + '/').startsWith(e.instancePath + '/'))
  return form ?? first ?? errors[0]
}

/** The place and wording of an Ajv error: unknown keys name the key itself. */
function describe (e: ErrorObject | undefined): [Array<string | number>, string] {
  if (e === undefined) return [[], 'does not match the schema']
  const at = e.instancePath.split('/').slice(1).map(p => /^\d+$/.test(p) ? Number(p) : p.replace(/~1/g, '/').replace(/~0/g, '~'))
  if (e.keyword === 'additionalProperties') {
    const key = (e.params as { additionalProperty: string }).additionalProperty
    return [[...at, key], 'unknown key (keys are the command\'s long option names; see docs/config.md)']
  }
  if (e.keyword === 'required') return [at, `missing key "${(e.params as { missingProperty: string }).missingProperty}"`]
  if (e.keyword === 'oneOf') {
    const forms = (e.schema as Array<{ type?: string, properties?: Record<string, unknown> }>).map(b =>
      b.type === 'array' ? 'a list of strings' : b.type === 'object' ? `{ ${Object.keys(b.properties ?? {}).join(', ')}: ... }` : `a ${b.type ?? 'value'}`)
    return [at, `must be ${forms.join(' or ')}`]
  }
  if (e.keyword === 'enum') return [at, `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map(v => JSON.stringify(v)).join(', ')}`]
  return [at, e.message ?? 'does not match the schema']
}

/** The 1-based line of the node at `at` (the key itself for a map entry), or of its nearest parent found. */
function lineOf (doc: Document, lines: LineCounter, at: Array<string | number>): number | undefined {
  for (let n = at.length; n >= 0; n--) {
    const parent = n <= 1 ? doc.contents : doc.getIn(at.slice(0, n - 1), true)
    let offset: number | undefined
    if (n === 0) offset = doc.contents?.range?.[0]
    else if (isMap(parent)) {
      const pair = parent.items.find(p => isScalar(p.key) && p.key.value === at[n - 1])
      offset = (pair?.key as { range?: [number, number, number] } | undefined)?.range?.[0]
    } else {
      offset = (doc.getIn(at.slice(0, n), true) as { range?: [number, number, number] } | undefined)?.range?.[0]
    }
    if (offset !== undefined) return lines.linePos(offset).line
  }
  return undefined
}

/** A secret given inline, as `{ file: PATH }` or as `{ env: NAME }` (so it need not sit in the file). */
export type SecretRef = string | { file: string } | { env: string }

/** Resolves a secret reference; a relative file is taken from the config file's directory. */
export function resolveSecret (ref: SecretRef, file: ConfigFile<unknown>, at: Array<string | number>): string {
  if (typeof ref === 'string') return ref
  if ('env' in ref) {
    const v = process.env[ref.env]
    if (v === undefined || v === '') throw file.error(at, `environment variable ${ref.env} is not set`)
    return v
  }
  try {
    const v = readFileSync(resolve(dirname(file.path), ref.file), 'utf8').trim()
    if (v === '') throw file.error(at, `${ref.file} is empty`)
    return v
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw file.error(at, `cannot read ${ref.file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
}

/** Options given on the command line or in the environment (they win over a config file). */
export function givenOptions (args: string[], options: Record<string, { alias?: string, env?: string }>): Set<string> {
  const given = new Set<string>()
  for (const [name, { alias, env }] of Object.entries(options)) {
    if (env !== undefined && (process.env[env] ?? '') !== '') given.add(name)
    const flags = [`--${name}`, `--no-${name}`, ...(alias !== undefined ? [`-${alias}`] : [])]
    if (args.some(a => flags.includes(a.split('=')[0]))) given.add(name)
  }
  return given
}
