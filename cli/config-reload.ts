import { watch } from 'node:fs'
import { basename, dirname } from 'node:path'
import type { Logger } from '../protocol/index.js'

export interface ReloadOptions<T> {
  path: string
  /** Also reload when the file changes (its directory is watched: editors replace files). */
  watch: boolean
  /** Reads and checks the file; throws (ConfigError) when it is not valid. */
  load: (path: string) => T
  /** Applies a valid configuration. */
  apply: (config: T) => Promise<void>
  log: Logger
}

/**
 * Reloads a config file on SIGHUP (and on change with `watch`), one reload at a time: an invalid
 * file is refused, logged, and the running configuration stays. Returns a function that stops it.
 */
export function reloadOnChange<T> (opts: ReloadOptions<T>): () => void {
  let running: Promise<void> | undefined
  let again = false
  const reload = (why: string): void => {
    if (running !== undefined) { again = true; return }
    running = (async () => {
      do {
        again = false
        let config: T
        try {
          config = opts.load(opts.path)
        } catch (err) {
          opts.log.error(`${why}: refused: ${(err as Error).message}; the running configuration stays`)
          continue
        }
        opts.log.info(`${why}: applying ${opts.path}`)
        await opts.apply(config).catch((err: Error) => opts.log.error(`${why}: ${err.message}`))
      } while (again)
    })().finally(() => { running = undefined })
  }
  const onHup = (): void => reload('SIGHUP')
  process.on('SIGHUP', onHup)
  let timer: NodeJS.Timeout | undefined
  const watcher = opts.watch
    ? watch(dirname(opts.path), (_event, name) => {
      if (name !== null && name !== basename(opts.path)) return
      // An editor's save is several events; one reload once they stop.
      clearTimeout(timer)
      timer = setTimeout(() => reload(`${opts.path} changed`), 200)
    })
    : undefined
  watcher?.on('error', (err) => opts.log.warn(`--watch: ${err.message}; reload with SIGHUP`))
  return () => {
    process.off('SIGHUP', onHup)
    clearTimeout(timer)
    watcher?.close()
  }
}
