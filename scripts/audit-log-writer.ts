// Writes an audit log the way kube-apiserver's log backend (lumberjack) does:
// each line in one write, files 0600, rotation by size: rename audit.log to
// audit-<UTC time>.log and open a new audit.log; optionally gzip the backup in
// the background (the .log and a growing .log.gz side by side, then the .log
// is removed); keep at most maxBackups backups. Two other rotation styles that
// agents meet in the wild are there too: logrotate's copytruncate, and the file
// deleted and re-created.
import { createHash } from 'node:crypto'
import { closeSync, copyFileSync, createReadStream, createWriteStream, existsSync, fstatSync, ftruncateSync, openSync, readdirSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'
import { backupNameFor, backupNaming } from '../agent/tail/backup-names.ts'

export interface AuditLogWriterOptions {
  path: string
  /** Rotate before a write would take the file past this size. */
  maxBytes: number
  /** Backups kept; older ones are deleted (0 keeps all). */
  maxBackups: number
  /** Gzip every Nth backup (1 = all, 0 = none). */
  gzipEvery: number
  mode: 'rename' | 'copytruncate' | 'recreate'
}

export class AuditLogWriter {
  readonly path: string
  readonly #o: AuditLogWriterOptions
  #fd: number
  #size = 0
  #rotations = 0
  #clock = 0
  /** Compression and retention run one after the other in the background, as lumberjack's mill does. */
  #mill: Promise<void> = Promise.resolve()
  /** SHA-256 of every byte written, in order: what a lossless pipeline must deliver. */
  readonly hash = createHash('sha256')
  lines = 0
  bytes = 0

  constructor(options: AuditLogWriterOptions) {
    this.#o = options
    this.path = options.path
    this.#fd = openSync(options.path, 'a', 0o600)
  }

  get rotations(): number {
    return this.#rotations
  }

  /** Inode and size of the live file: where the last line ended. */
  position(): { inode: number; offset: number } {
    return { inode: fstatSync(this.#fd).ino, offset: this.#size }
  }

  write(line: string | Buffer): void {
    const bytes = Buffer.concat([typeof line === 'string' ? Buffer.from(line) : line, NEWLINE])
    if (this.#size > 0 && this.#size + bytes.length > this.#o.maxBytes) this.rotate()
    writeSync(this.#fd, bytes)
    this.#size += bytes.length
    this.hash.update(bytes)
    this.lines++
    this.bytes += bytes.length
  }

  rotate(): void {
    // Backup names carry the rotation time in ms: keep them distinct and increasing.
    this.#clock = Math.max(Date.now(), this.#clock + 1)
    const backup = join(dirname(this.path), backupNameFor(this.path, this.#clock))
    if (this.#o.mode === 'copytruncate') {
      copyFileSync(this.path, backup)
      ftruncateSync(this.#fd, 0)
    } else {
      closeSync(this.#fd)
      if (this.#o.mode === 'rename') renameSync(this.path, backup)
      else unlinkSync(this.path)
      this.#fd = openSync(this.path, 'a', 0o600)
    }
    this.#size = 0
    this.#rotations++
    if (this.#o.mode === 'recreate') return
    const gzip = this.#o.gzipEvery > 0 && this.#rotations % this.#o.gzipEvery === 0
    this.#mill = this.#mill.then(async () => {
      // Retention may have removed this backup already when rotations outran the mill.
      if (gzip && existsSync(backup)) {
        await pipeline(createReadStream(backup), createGzip(), createWriteStream(`${backup}.gz`, { mode: 0o600 }))
        unlinkSync(backup)
      }
      this.#retain()
    })
  }

  async close(): Promise<void> {
    closeSync(this.#fd)
    await this.#mill
  }

  #retain(): void {
    if (this.#o.maxBackups <= 0) return
    const naming = backupNaming(this.path)
    const backups = readdirSync(naming.dir)
      .map((name) => naming.parse(name))
      .filter((b) => b !== undefined)
      .sort((a, b) => a.rotatedAt - b.rotatedAt)
    // A .log and its unfinished .gz are one backup.
    const times = [...new Set(backups.map((b) => b.rotatedAt))]
    const doomed = new Set(times.slice(0, Math.max(0, times.length - this.#o.maxBackups)))
    for (const b of backups) {
      if (doomed.has(b.rotatedAt)) {
        try {
          unlinkSync(join(naming.dir, b.name))
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        }
      }
    }
  }
}

const NEWLINE = Buffer.from('\n')
