// Feeds end-to-end tests with real kube-apiserver audit lines (a v1.26
// sample in test/fixtures), cycled to any count, written to a log that rotates by size the way
// the apiserver's log backend does: rename to audit-<time>.log, optionally gzip
// in the background (the .log and an unfinished .gz side by side for a moment),
// then a fresh audit.log.
import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream, openSync, closeSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { pipeline } from 'node:stream/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createGzip, gunzipSync } from 'node:zlib'
import { backupNameFor } from '../../agent/tail/backup-names.ts'

const FIXTURE = fileURLToPath(new URL('../fixtures/apiserver-v1.26/sample.jsonl.gz', import.meta.url))

const fixtureLines = (): string[] => gunzipSync(readFileSync(FIXTURE)).toString('utf8').split('\n').filter((l) => l.length > 0)

/**
 * `count` real audit lines, the fixture's lines cycled. Each cycle gets fresh
 * auditIDs (same length), as a real apiserver's would: a file's first bytes
 * then identify it, as they do in production.
 */
export function realAuditLines(count: number): string[] {
  const lines = fixtureLines()
  return Array.from({ length: count }, (_, i) => {
    const line = lines[i % lines.length]!
    const cycle = Math.floor(i / lines.length)
    return cycle === 0 ? line : line.replace(/"auditID":"[0-9a-f]{8}/, `"auditID":"${cycle.toString(16).padStart(8, '0')}`)
  })
}

export class RotatingLog {
  readonly path: string
  readonly #maxBytes: number
  readonly #gzipEvery: number
  #fd: number
  #size = 0
  #rotations = 0
  #clock = Date.now()
  readonly #compressions: Promise<void>[] = []
  /** SHA-256 and count of every line written, newline included: what the collector's export must equal. */
  readonly hash = createHash('sha256')
  lines = 0

  constructor(path: string, options: { maxBytes: number; gzipEvery: number }) {
    this.path = path
    this.#maxBytes = options.maxBytes
    this.#gzipEvery = options.gzipEvery
    this.#fd = openSync(path, 'a', 0o600)
  }

  get rotations(): number {
    return this.#rotations
  }

  write(line: string): void {
    const bytes = Buffer.from(`${line}\n`)
    if (this.#size > 0 && this.#size + bytes.length > this.#maxBytes) this.rotate()
    writeSync(this.#fd, bytes)
    this.#size += bytes.length
    this.hash.update(bytes)
    this.lines++
  }

  rotate(): void {
    closeSync(this.#fd)
    // Backup names carry the rotation time in ms: keep them distinct and increasing.
    this.#clock = Math.max(Date.now(), this.#clock + 1)
    const backup = join(dirname(this.path), backupNameFor(this.path, this.#clock))
    renameSync(this.path, backup)
    this.#fd = openSync(this.path, 'a', 0o600)
    this.#size = 0
    this.#rotations++
    if (this.#gzipEvery > 0 && this.#rotations % this.#gzipEvery === 0) {
      this.#compressions.push(pipeline(createReadStream(backup), createGzip(), createWriteStream(`${backup}.gz`, { mode: 0o600 })).then(() => unlinkSync(backup)))
    }
  }

  async close(): Promise<void> {
    closeSync(this.#fd)
    await Promise.all(this.#compressions)
  }
}
