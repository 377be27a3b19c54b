// Both stores, for the tests whose answers must not depend on the store: a fresh
// directory, or a fresh database on this test file's private PostgreSQL server
// (started on first use, stopped when the file ends; see postgres-server.ts).
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tap, { type Test } from 'tap'
import { openStore } from '../../collector/store/open.ts'
import type { SealedBatch } from '../../proto/wire.ts'
import { appendSealed } from './fixtures.ts'
import { startPostgres, type PostgresServer } from './postgres-server.ts'

export type StoreKind = 'file' | 'postgres'
export const STORE_KINDS: readonly StoreKind[] = ['file', 'postgres']

let server: Promise<PostgresServer> | undefined
let databases = 0

/** This file's PostgreSQL server. */
export function postgresServer(): Promise<PostgresServer> {
  server ??= startPostgres(tap)
  return server
}

/** A new, empty store of this kind: the directory or the (password-free) URL the code under test is given. */
export async function freshStore(t: Test, kind: StoreKind): Promise<string> {
  if (kind === 'file') {
    // Not t.testdir(): a second call to it in the same test empties it, store and all.
    const dir = mkdtempSync(join(tmpdir(), 'auditrail-store-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    return dir
  }
  return (await (await postgresServer()).database(`t${++databases}`)).url
}

/** A fresh store holding these chains, stored as given (small segments in a file store); closed again. */
export async function storeHolding(t: Test, kind: StoreKind, streams: Record<string, SealedBatch[]>, segmentBytes?: number): Promise<string> {
  const spec = await freshStore(t, kind)
  const store = await openStore(spec, segmentBytes ? { segmentBytes } : {})
  try {
    for (const [stream, sealed] of Object.entries(streams)) for (const s of sealed) await appendSealed(store, stream, s)
  } finally {
    await store.close()
  }
  return spec
}
