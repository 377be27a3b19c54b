// Writes an audit log the way kube-apiserver's log backend (lumberjack v2)
// does, so that agents are tested against what they meet in production:
// - each line in one write(2) on an O_APPEND descriptor; new files are 0600;
// - when a write would take the file past maxBytes: close, rename audit.log to
//   audit-2006-01-02T15-04-05.000.log (UTC rotation time), open a new audit.log;
// - then, in the background and one run at a time (lumberjack's "mill"):
//   delete backups beyond maxBackups / older than maxAgeDays (by the time in
//   their names), and gzip the rest: `<backup>.gz` grows while `<backup>` still
//   exists, then `<backup>` is removed.
// Two rotations that agents meet with other log shippers are here too:
// logrotate's copytruncate, and the file deleted and re-created.
// Two deliberate departures from lumberjack: a second rotation within the same
// millisecond gets the next millisecond in its name (lumberjack would overwrite
// the first backup), and a line longer than maxBytes is written alone in a file
// (lumberjack refuses it and the apiserver drops the event) so tests can make one.
import { createHash } from 'node:crypto'
import { chmodSync, closeSync, copyFileSync, createReadStream, createWriteStream, existsSync, fstatSync, ftruncateSync, openSync, readdirSync, renameSync, rmSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'
import { backupNameFor, backupNaming, type BackupNaming } from '../agent/tail/backup-names.ts'

export type RotationMode = 'rename' | 'copytruncate' | 'recreate'

export interface AuditLogWriterOptions {
  /** The live file, e.g. /var/log/kubernetes/audit/audit.log. */
  path: string
  /** Rotate before a write would take the file past this many bytes (--audit-log-maxsize, in bytes). */
  maxBytes: number
  /** Backups kept, the newest; 0 keeps all (--audit-log-maxbackup). */
  maxBackups?: number
  /** Backups older than this many days (by the time in their names) are deleted; 0 keeps all (--audit-log-maxage). */
  maxAgeDays?: number
  /** Gzip every backup (--audit-log-compress). */
  compress?: boolean
  /** Gzip only every Nth backup, for a mix of .log and .log.gz backups in tests; overrides `compress` when set above 0. */
  gzipEvery?: number
  /** 'rename' (the apiserver), 'copytruncate' (logrotate) or 'recreate' (delete, then create anew); default 'rename'. */
  mode?: RotationMode
}

const NEWLINE = Buffer.from('\n')
const DAY_MS = 24 * 60 * 60 * 1000

export class AuditLogWriter {
  readonly path: string
  readonly #maxBytes: number
  readonly #maxBackups: number
  readonly #maxAgeDays: number
  readonly #gzipEvery: number
  readonly #mode: RotationMode
  readonly #naming: BackupNaming
  #fd: number
  #size: number
  #rotations = 0
  #lastRotationMs = 0
  #closed = false
  /** Backups picked for compression when gzipEvery > 1 (with 1 every backup is compressed, as lumberjack does). */
  readonly #toCompress = new Set<string>()
  /** The mill: one background run at a time, at most one more queued, as lumberjack's millCh (buffer 1). */
  #mill: Promise<void> = Promise.resolve()
  #millQueued = false
  #millError: unknown
  /** SHA-256 of every byte written, in order: what a lossless pipeline must deliver. */
  readonly hash = createHash('sha256')
  /** Lines (newlines) and bytes written since construction. */
  lines = 0
  bytes = 0

  constructor(options: AuditLogWriterOptions) {
    const whole = (name: string, v: number | undefined, min: number) => {
      if (v !== undefined && (!Number.isSafeInteger(v) || v < min)) throw new Error(`audit log writer: ${name} must be a whole number >= ${min}, got ${String(v)}`)
      return v ?? 0
    }
    this.path = options.path
    this.#maxBytes = whole('maxBytes', options.maxBytes, 1)
    this.#maxBackups = whole('maxBackups', options.maxBackups, 0)
    this.#maxAgeDays = whole('maxAgeDays', options.maxAgeDays, 0)
    const gzipEvery = whole('gzipEvery', options.gzipEvery, 0)
    this.#gzipEvery = gzipEvery > 0 ? gzipEvery : options.compress ? 1 : 0
    const mode = options.mode ?? 'rename'
    if (mode !== 'rename' && mode !== 'copytruncate' && mode !== 'recreate') throw new Error(`audit log writer: mode must be rename, copytruncate or recreate, got ${JSON.stringify(mode)}`)
    this.#mode = mode
    this.#naming = backupNaming(options.path)
    // Like lumberjack: append to an existing file, or create it 0600; then let the mill tidy up.
    this.#fd = openSync(this.path, 'a', 0o600)
    this.#size = fstatSync(this.#fd).size
    this.#scheduleMill()
  }

  get rotations(): number {
    return this.#rotations
  }

  /** Inode and size of the live file: where the last line written ends. */
  position(): { inode: number; offset: number } {
    return { inode: fstatSync(this.#fd).ino, offset: this.#size }
  }

  /** Appends `line` and a newline in one write, rotating first if the file would pass maxBytes; returns the bytes written. */
  write(line: string | Buffer): Buffer {
    const bytes = typeof line === 'string' ? Buffer.from(`${line}\n`) : Buffer.concat([line, NEWLINE])
    if (this.#size > 0 && this.#size + bytes.length > this.#maxBytes) this.rotate()
    this.#append(bytes)
    return bytes
  }

  /**
   * Appends bytes as they are, without a newline and without rotating: what a
   * reader sees while the apiserver is in the middle of a write. Finish the
   * line with another writePartial that ends in '\n'.
   */
  writePartial(bytes: string | Buffer): void {
    this.#append(typeof bytes === 'string' ? Buffer.from(bytes) : bytes)
  }

  /** Rotates now, whatever the size. */
  rotate(): void {
    this.#assertOpen()
    this.#rotations++
    if (this.#mode === 'recreate') {
      closeSync(this.#fd)
      unlinkSync(this.path)
      this.#fd = openSync(this.path, 'a', 0o600)
      this.#size = 0
      return
    }
    const backup = join(this.#naming.dir, this.#nextBackupName())
    if (this.#mode === 'copytruncate') {
      copyFileSync(this.path, backup)
      chmodSync(backup, 0o600)
      ftruncateSync(this.#fd, 0)
    } else {
      closeSync(this.#fd)
      // As lumberjack: a live file someone else removed is not an error, there is just nothing to back up.
      if (existsSync(this.path)) renameSync(this.path, backup)
      this.#fd = openSync(this.path, 'a', 0o600)
    }
    this.#size = 0
    if (this.#gzipEvery > 1 && this.#rotations % this.#gzipEvery === 0) this.#toCompress.add(backup)
    this.#scheduleMill()
  }

  /** Closes the live file and waits for the background compression and retention to finish. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true
      closeSync(this.#fd)
    }
    await this.#mill
    if (this.#millError !== undefined) throw this.#millError
  }

  #append(bytes: Buffer): void {
    this.#assertOpen()
    // One write call per line; a short write on a regular file is an error worth stopping for.
    const n = writeSync(this.#fd, bytes)
    if (n !== bytes.length) throw new Error(`audit log writer: short write to ${this.path} (${n} of ${bytes.length} bytes): is the disk full?`)
    this.#size += n
    this.bytes += n
    this.hash.update(bytes)
    for (let i = bytes.indexOf(10); i !== -1; i = bytes.indexOf(10, i + 1)) this.lines++
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error(`audit log writer: ${this.path} is closed`)
  }

  /** The lumberjack name for now, one millisecond later than the last one if it is taken. */
  #nextBackupName(): string {
    let ms = Math.max(Date.now(), this.#lastRotationMs + 1)
    let name = backupNameFor(this.path, ms)
    while (existsSync(join(this.#naming.dir, name)) || existsSync(join(this.#naming.dir, `${name}.gz`))) name = backupNameFor(this.path, ++ms)
    this.#lastRotationMs = ms
    return name
  }

  #scheduleMill(): void {
    if (this.#millQueued) return
    this.#millQueued = true
    this.#mill = this.#mill.then(() => {
      this.#millQueued = false
      return this.#millRunOnce()
    }).catch((err: unknown) => {
      this.#millError ??= err
    })
  }

  /** Retention first, then compression of what is left, one file at a time: lumberjack's millRunOnce. */
  async #millRunOnce(): Promise<void> {
    const backups = readdirSync(this.#naming.dir)
      .map((name) => this.#naming.parse(name))
      .filter((b) => b !== undefined)
      .sort((a, b) => b.rotatedAt - a.rotatedAt)
    // A .log and its .log.gz (mid-compression) are one backup.
    const times = [...new Set(backups.map((b) => b.rotatedAt))]
    const doomed = new Set(this.#maxBackups > 0 ? times.slice(this.#maxBackups) : [])
    const cutoff = Date.now() - this.#maxAgeDays * DAY_MS
    if (this.#maxAgeDays > 0) for (const t of times) if (t < cutoff) doomed.add(t)
    const compressNow: string[] = []
    for (const b of backups) {
      const file = join(this.#naming.dir, b.name)
      if (doomed.has(b.rotatedAt)) {
        rmSync(file, { force: true })
        this.#toCompress.delete(file)
      } else if (!b.gzip && (this.#gzipEvery === 1 || this.#toCompress.has(file))) {
        compressNow.push(file)
      }
    }
    // Newest first, as lumberjack orders them.
    for (const file of compressNow) {
      await compress(file)
      this.#toCompress.delete(file)
    }
  }
}

/** Gzips `file` to `file.gz` progressively (mode 0600), then removes `file`; a failed attempt leaves no .gz behind. */
async function compress(file: string): Promise<void> {
  try {
    await pipeline(createReadStream(file), createGzip(), createWriteStream(`${file}.gz`, { mode: 0o600 }))
  } catch (err) {
    rmSync(`${file}.gz`, { force: true })
    throw new Error(`audit log writer: could not gzip ${file}: ${(err as Error).message}`)
  }
  unlinkSync(file)
}
