// `--store` names either store: a postgres:// (or postgresql://) URL, or a directory.
import { pino, type Logger } from 'pino'
import { openFileStore, readFileStore } from './file-store.ts'
import { isPostgresUrl, openPostgresStore } from './postgres-store.ts'
import type { BatchStore } from './store.ts'

export interface OpenOptions {
  logger?: Logger
  /** File store: segment size (tests use small ones). */
  segmentBytes?: number
  /** PostgreSQL store: write the query index rows with each batch (default true; a file store's index is the collector's, see live-indexer.ts). */
  index?: boolean
}

/** Opens a store for a collector: the directory is locked and its torn tails cut; a database is checked for its schema. */
export function openStore(spec: string, options: OpenOptions = {}): Promise<BatchStore> {
  const logger = options.logger ?? pino({ level: 'silent' })
  if (isPostgresUrl(spec)) return openPostgresStore(spec, { logger, ...(options.index === false ? { index: false } : {}) })
  return openFileStore(spec, { logger, ...(options.segmentBytes ? { segmentBytes: options.segmentBytes } : {}) })
}

/** Opens a store to read it (verify, export) while a collector may be writing it. */
export function readStore(spec: string): Promise<BatchStore> {
  if (isPostgresUrl(spec)) return openPostgresStore(spec, { logger: pino({ level: 'silent' }) })
  return Promise.resolve(readFileStore(spec))
}

/**
 * Runs `task` on a store given as an open store (left open) or as a directory or URL
 * (opened to read, and closed after): callers that read once pass the path.
 */
export async function reading<T>(store: BatchStore | string, task: (store: BatchStore) => Promise<T>): Promise<T> {
  if (typeof store !== 'string') return task(store)
  const opened = await readStore(store)
  try {
    return await task(opened)
  } finally {
    await opened.close()
  }
}
