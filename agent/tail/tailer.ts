// Follows the audit log across rotation, truncation and restarts.
//
// Files are read in the order the apiserver wrote them: the file we are in,
// then the backups rotated after it (ordered by the time in their names), then
// the live file. Every file we have seen is pinned by an open descriptor (up to
// a bound), so that gzip and retention cannot take unread bytes away; a file is
// finished only by a read that hit its end after a newer file was found. When
// data is lost anyway (a backup deleted while the agent was down, a file that
// shrank), the tailer says so with a gap record instead of skipping quietly.
import { open, readdir, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Gap } from '../../proto/wire.ts'
import { backupNaming, type BackupName, type BackupNaming } from './backup-names.ts'
import { GzipSource, gzipHead, PlainSource, type ByteSource } from './byte-source.ts'
import { FINGERPRINT_BYTES, fingerprintOf, headMatches, readHead, type FileIdentity } from './file-identity.ts'
import { LineSplitter, type SplitRecord } from './line-splitter.ts'
import type { QuarantineStore } from './quarantine.ts'
import { ReadBuffers } from './read-buffers.ts'

const READ_CHUNK_BYTES = 256 * 1024
/** Read buffers kept for reuse: the agent releases each read before the next. */
const READ_BUFFERS_KEPT = 2
const HEAD_CHECK_MS = 1000

/** Where a file sits in rotation order. */
export interface FileOrder {
  /** Rotation time from the backup name, once the file has been seen as a backup. */
  rotatedAt?: number
  /** While live: the newest backup time seen then; every later backup is newer than this file. */
  liveAfter: number
}

/** What the checkpoint remembers about the file being read. */
export interface TailPosition {
  path: string
  identity: FileIdentity
  order: FileOrder
  /** First byte not yet acknowledged: always at a line boundary. */
  offset: number
  /** The file was read to its end; resume with the next one. */
  endOfFile: boolean
}

export type StartAt = 'oldest' | 'live' | 'end'

/** Rotated files waiting ahead of the live file when reading starts: a first start's backfill, or a restart's backlog. */
export interface Backlog {
  files: number
  /** Rotation time of the newest of them (0 when there are none): chunks up to it are backlog. */
  rotatedUntil: number
}

export type TailRecord = SplitRecord | { kind: 'gap'; offset: number; gap: Gap }

/** A run of records from one file. */
export interface TailChunk {
  path: string
  identity: FileIdentity
  order: FileOrder
  startOffset: number
  /** Offset after the last complete record: a safe resume point. */
  endOffset: number
  records: TailRecord[]
  /** The file is finished: the next chunk comes from another file. */
  endOfFile: boolean
  /** Bytes read for this chunk; more may be waiting when it is not 0 (a long line in progress). */
  bytesRead: number
  /** The read took all the plain file held: what comes next is still being written. */
  caughtUp: boolean
}

export interface TailerOptions {
  /** The live audit log, e.g. /var/log/kubernetes/audit/audit.log */
  path: string
  maxLineBytes: number
  quarantine: QuarantineStore
  /** Upper bound on pinned files (descriptors held) ahead of the reader. */
  maxOpenFiles: number
  /**
   * Where to begin when there is no checkpoint: the oldest retained backup (then every newer one and the
   * live file, as after a restart), the start of the live file, or its current end.
   */
  startAt: StartAt
  onRotation?: (from: string, to: string) => void
  onError?: (err: Error) => void
}

interface Tracked {
  path: string
  identity: FileIdentity
  order: FileOrder
  /** Undefined while the file is only known by name (over the open-file bound) or is lost. */
  source: ByteSource | undefined
  /** A backup known only by its name: opened when its turn comes. */
  backupName?: BackupName
  /** Set when the file's data cannot be read: the reason for the gap. */
  lost?: string
  /** Value of the discovery counter when this file was queued. */
  queuedAt: number
}

interface Current {
  file: Tracked
  /** Next byte to read. */
  position: number
  splitter: LineSplitter
  /** Lost or already finished: skip to the next file. */
  skip: boolean
  /** When the first bytes were last compared with the fingerprint (performance.now()). */
  headCheckedAt: number
}

const ZERO_IDENTITY: FileIdentity = { device: 0, inode: 0, fingerprint: Buffer.alloc(0), fingerprintLength: 0 }

export class Tailer {
  readonly #options: TailerOptions
  readonly #naming: BackupNaming
  #current: Current | undefined
  readonly #queue: Tracked[] = []
  #discoveries = 0
  #discovering: Promise<void> | undefined
  #closed = false
  readonly #buffers = new ReadBuffers(READ_CHUNK_BYTES, READ_BUFFERS_KEPT)
  readonly #takeBuffer = () => this.#buffers.take()

  constructor(options: TailerOptions) {
    this.#options = options
    this.#naming = backupNaming(options.path)
  }

  /** Positions the reader: at the checkpoint, or (first start) where `startAt` says; returns the rotated files ahead. */
  async start(checkpoint: TailPosition | undefined): Promise<Backlog> {
    if (!checkpoint) {
      await this.#startFresh()
      return this.#backlog()
    }
    const found = await this.#locate(checkpoint)
    const file: Tracked = found ?? {
      path: checkpoint.path,
      identity: checkpoint.identity,
      order: checkpoint.order,
      source: undefined,
      queuedAt: 0,
      lost: checkpoint.endOfFile
        ? undefined
        : `${checkpoint.path} was rotated away and deleted while the agent was not running; bytes from offset ${checkpoint.offset} to its end are lost`,
    }
    this.#setCurrent(file, checkpoint.offset, checkpoint.endOfFile)
    await this.discover()
    return this.#backlog()
  }

  #backlog(): Backlog {
    const rotated = [this.#current?.file, ...this.#queue].flatMap((f) => (f?.order.rotatedAt === undefined ? [] : [f.order.rotatedAt]))
    return { files: rotated.length, rotatedUntil: Math.max(0, ...rotated) }
  }

  /** The position reached so far (records up to it have been returned). */
  position(): TailPosition | undefined {
    const c = this.#current
    if (!c) return undefined
    return { path: c.file.path, identity: c.file.identity, order: c.file.order, offset: c.splitter.committedOffset, endOfFile: false }
  }

  /** Bytes between the reader and the end of the live file, as far as we know. */
  async lagBytes(): Promise<number> {
    const c = this.#current
    if (!c) return 0
    let lag = 0
    const size = await c.file.source?.size().catch(() => undefined)
    if (size !== undefined) lag += Math.max(0, size - c.splitter.committedOffset)
    for (const f of this.#queue) lag += (await f.source?.size().catch(() => undefined)) ?? 0
    return lag
  }

  /**
   * Reads the next run of records. Returns a chunk with no records when there is
   * nothing new right now; the caller waits for a change and calls again.
   */
  async read(): Promise<TailChunk> {
    const c = this.#current
    if (!c) {
      await this.discover()
      await this.#advance()
      return this.#emptyChunk()
    }
    if (c.skip) return this.#finishCurrent([])
    const source = c.file.source!
    const queuedBefore = this.#discoveries
    const start = c.splitter.committedOffset
    let bytes: Buffer
    try {
      bytes = await source.read(c.position, READ_CHUNK_BYTES, this.#takeBuffer)
    } catch (err) {
      // A corrupt gzip or an I/O error: declare the rest of the file lost rather than stall forever.
      const reason = `reading ${c.file.path} failed at offset ${c.position}: ${(err as Error).message}; the rest of the file is lost`
      this.#options.onError?.(new Error(reason))
      return this.#finishCurrent([{ kind: 'gap', offset: start, gap: { path: c.file.path, fromOffset: start, toOffset: 0, reason } }])
    }
    if (bytes.length > 0) {
      if (c.position < FINGERPRINT_BYTES) await refreshFingerprint(c.file)
      c.position += bytes.length
      const records: SplitRecord[] = []
      c.splitter.feed(bytes, records)
      return { ...this.#chunk(c, start, records, false), bytesRead: bytes.length, caughtUp: !source.gzip && bytes.length < READ_CHUNK_BYTES }
    }
    // At the end of what is there.
    if (!source.gzip) {
      const truncated = await this.#checkTruncation(c)
      if (truncated) return truncated
    }
    const next = this.#queue[0]
    const rotated = c.file.order.rotatedAt !== undefined || source.gzip
    if (rotated || (next !== undefined && next.queuedAt <= queuedBefore)) {
      if (next === undefined) await this.discover()
      if (this.#queue.length > 0) return this.#finishCurrent([])
    }
    // Idle at the end of the file held as live, and the live path names another file: it was rotated.
    // Discover now rather than at the next timer tick; the read after that reaches its end for good.
    if (next === undefined && !rotated && (await this.#liveIsAnotherFile(c.file))) {
      await this.discover()
      if (this.#queue.length > 0) return this.read()
    }
    return this.#chunk(c, start, [], false)
  }

  /**
   * Nothing read so far is held any more (the records' bytes were copied): the buffers are read
   * into again. Until then a record's bytes are a view into the buffer they were read into.
   */
  releaseReads(): void {
    this.#buffers.release()
  }

  /**
   * Finds files newer than the last one we know of and pins them. Runs on
   * watcher events and a timer, independent of reading, so that backups are
   * pinned before retention deletes them even while the reader is paused.
   */
  discover(): Promise<void> {
    this.#discovering ??= this.#discover().finally(() => {
      this.#discovering = undefined
    })
    return this.#discovering
  }

  async close(): Promise<void> {
    this.#closed = true
    await this.#discovering?.catch(() => {})
    const files = [this.#current?.file, ...this.#queue]
    this.#current = undefined
    this.#queue.length = 0
    for (const f of files) await f?.source?.close().catch(() => {})
  }

  // --- starting

  async #startFresh(): Promise<void> {
    if (this.#options.startAt === 'oldest' && (await this.#startAtOldestBackup())) return
    const live = await this.#openPlain(this.#options.path)
    // No live file yet: the next discovery queues it when it appears.
    if (!live) return
    live.order.liveAfter = await this.#rotatedBefore(live, await this.#list())
    let offset = 0
    if (this.#options.startAt === 'end') offset = await lastLineBoundary(live.source!)
    this.#setCurrent(live, offset, false)
  }

  /**
   * Makes the oldest retained backup current and queues the newer ones and the live file, exactly as a
   * restart whose checkpoint lies in that backup would. False when there is no backup left to open.
   */
  async #startAtOldestBackup(): Promise<boolean> {
    // Retention may delete the oldest between the listing and the open: the next one is then the oldest.
    for (const b of newerBackups(await this.#list(), 0)) {
      const file: Tracked = { path: join(this.#naming.dir, b.name), identity: ZERO_IDENTITY, order: { rotatedAt: b.rotatedAt, liveAfter: b.rotatedAt }, source: undefined, backupName: b, queuedAt: 0 }
      await this.#openByName(file)
      if (file.lost) continue
      this.#setCurrent(file, 0, false)
      await this.discover()
      return true
    }
    return false
  }

  /** Finds the checkpoint's file: the live file, a plain backup, or a complete gzip backup. */
  async #locate(cp: TailPosition): Promise<Tracked | undefined> {
    const candidates: string[] = [this.#options.path]
    const listing = await this.#list()
    for (const b of listing) candidates.push(join(this.#naming.dir, b.name))
    for (const path of candidates) {
      const parsed = this.#naming.parse(path.slice(this.#naming.dir.length + 1))
      if (parsed?.gzip) {
        if (cp.identity.fingerprintLength === 0 || listing.some((b) => b.rotatedAt === parsed.rotatedAt && !b.gzip)) continue
        const handle = await open(path, 'r').catch(() => undefined)
        if (!handle) continue
        const head = await gzipHead(handle, FINGERPRINT_BYTES).catch(() => undefined)
        if (!head || !headMatches(cp.identity, head)) continue
        const pinned = await open(path, 'r').catch(() => undefined)
        if (!pinned) continue
        return { path, identity: cp.identity, order: { ...cp.order, rotatedAt: parsed.rotatedAt }, source: new GzipSource(pinned), queuedAt: 0 }
      }
      const handle = await open(path, 'r').catch(() => undefined)
      if (!handle) continue
      const st = await handle.stat()
      if (st.dev === cp.identity.device && st.ino === cp.identity.inode && headMatches(cp.identity, await readHead(handle)) && st.size >= cp.offset) {
        const order = parsed ? { ...cp.order, rotatedAt: parsed.rotatedAt } : cp.order
        return { path, identity: cp.identity, order, source: new PlainSource(handle), queuedAt: 0 }
      }
      await handle.close()
    }
    return undefined
  }

  // --- reading

  #setCurrent(file: Tracked, offset: number, skip: boolean): void {
    const describe = () => file.path
    this.#current = {
      file,
      position: offset,
      splitter: new LineSplitter({ maxLineBytes: this.#options.maxLineBytes, quarantine: this.#options.quarantine, startOffset: offset, describeSource: describe }),
      skip: skip || file.lost !== undefined,
      headCheckedAt: performance.now(),
    }
  }

  #chunk(c: Current, start: number, records: TailRecord[], endOfFile: boolean): TailChunk {
    return { path: c.file.path, identity: c.file.identity, order: c.file.order, startOffset: start, endOffset: c.splitter.committedOffset, records, endOfFile, bytesRead: 0, caughtUp: false }
  }

  #emptyChunk(): TailChunk {
    return { path: this.#options.path, identity: ZERO_IDENTITY, order: { liveAfter: 0 }, startOffset: 0, endOffset: 0, records: [], endOfFile: false, bytesRead: 0, caughtUp: false }
  }

  /** Ends the current file (flushing a last line without newline) and moves to the next. */
  async #finishCurrent(records: TailRecord[]): Promise<TailChunk> {
    const c = this.#current!
    const start = c.splitter.committedOffset
    if (c.file.lost) {
      records.push({ kind: 'gap', offset: start, gap: { path: c.file.path, fromOffset: start, toOffset: 0, reason: c.file.lost } })
    } else if (!c.skip) {
      c.splitter.flush(records as SplitRecord[])
    }
    const chunk = this.#chunk(c, start, records, true)
    await c.file.source?.close().catch(() => {})
    this.#current = undefined
    await this.#advance()
    if (this.#current) this.#options.onRotation?.(c.file.path, (this.#current as Current).file.path)
    return chunk
  }

  /** Makes the next queued file current, opening it now if it was only known by name. */
  async #advance(): Promise<void> {
    const next = this.#queue.shift()
    if (!next) return
    if (!next.source && !next.lost && next.backupName) await this.#openByName(next)
    this.#setCurrent(next, 0, false)
  }

  async #openByName(file: Tracked): Promise<void> {
    const b = file.backupName!
    const plain = join(this.#naming.dir, b.name.replace(/\.gz$/, ''))
    const opened = (await this.#openPlain(plain)) ?? (await this.#openGzip(`${plain}.gz`))
    if (opened) {
      file.path = opened.path
      file.identity = opened.identity
      file.source = opened.source
    } else {
      file.lost = `backup ${plain} was deleted (log retention) before the agent could read it; its contents are lost`
    }
  }

  /**
   * The live file shrank (copy-truncate or truncation) or was rewritten from the
   * start. Finish it from a copy if logrotate left one, else declare the loss.
   */
  async #checkTruncation(c: Current): Promise<TailChunk | undefined> {
    const source = c.file.source as PlainSource
    // The read that just hit the end measured the size.
    const size = source.lastSize
    let rewritten = false
    if (size >= c.position) {
      // Truncated and rewritten past our offset: only the first bytes tell. Checked at most once a second.
      if (c.file.identity.fingerprintLength === 0 || c.position === 0 || performance.now() - c.headCheckedAt < HEAD_CHECK_MS) return undefined
      c.headCheckedAt = performance.now()
      rewritten = !headMatches(c.file.identity, await source.read(0, c.file.identity.fingerprintLength))
      if (!rewritten) return undefined
    }
    const committed = c.splitter.committedOffset
    const copy = await this.#findCopy(c.file, committed)
    const what = rewritten ? 'was truncated and rewritten' : `shrank from ${c.position} to ${size} bytes`
    const restarted: Tracked = { ...c.file, order: { liveAfter: c.file.order.liveAfter }, queuedAt: this.#discoveries, identity: { ...c.file.identity, fingerprint: Buffer.alloc(0), fingerprintLength: 0 } }
    // The live file starts over as a new file after the copy (or the gap).
    this.#queue.unshift(restarted)
    if (copy) {
      this.#options.onRotation?.(c.file.path, copy.path)
      this.#setCurrent(copy, committed, false)
      return { ...this.#chunk(this.#current!, committed, [], false), path: c.file.path, identity: c.file.identity }
    }
    const reason = `${c.file.path} ${what} (copy-truncate or truncation) and no copy of it was found; bytes from offset ${committed} to its old end are lost`
    this.#options.onError?.(new Error(reason))
    const gap: TailRecord = { kind: 'gap', offset: committed, gap: { path: c.file.path, fromOffset: committed, toOffset: 0, reason } }
    const chunk = this.#chunk(c, committed, [gap], true)
    this.#current = undefined
    await this.#advance()
    return chunk
  }

  /** A backup that starts like `file` and holds at least `minSize` bytes: logrotate's copy before truncation. */
  async #findCopy(file: Tracked, minSize: number): Promise<Tracked | undefined> {
    for (const b of (await this.#list()).reverse()) {
      const path = join(this.#naming.dir, b.name)
      const opened = b.gzip ? await this.#openGzip(path) : await this.#openPlain(path)
      if (!opened) continue
      const size = await opened.source!.size()
      const sameInode = opened.identity.inode === file.identity.inode && opened.identity.device === file.identity.device
      if (!sameInode && headMatches(file.identity, await this.#headOf(opened)) && (size === undefined || size >= minSize)) {
        opened.order = { rotatedAt: b.rotatedAt, liveAfter: file.order.liveAfter }
        if (b.gzip) {
          // #headOf consumed the gzip stream's start: reopen for reading from the checkpoint.
          await opened.source!.close()
          const again = await this.#openGzip(path)
          if (!again) continue
          again.order = opened.order
          return again
        }
        return opened
      }
      await opened.source!.close()
    }
    return undefined
  }

  async #headOf(file: Tracked): Promise<Buffer> {
    if (file.source instanceof PlainSource) return file.source.read(0, FINGERPRINT_BYTES)
    const handle = await open(file.path, 'r')
    return gzipHead(handle, FINGERPRINT_BYTES)
  }

  // --- discovery

  async #list(): Promise<BackupName[]> {
    const names = await readdir(this.#naming.dir).catch(() => [] as string[])
    const backups: BackupName[] = []
    for (const name of names) {
      const b = this.#naming.parse(name)
      if (b) backups.push(b)
    }
    return backups.sort((a, b) => a.rotatedAt - b.rotatedAt || Number(a.gzip) - Number(b.gzip))
  }

  async #discover(): Promise<void> {
    if (this.#closed) return
    const anchor = this.#queue.at(-1) ?? this.#current?.file
    // Pin the live file before listing: whatever the listing then shows was
    // rotated before it, or is the pinned file itself (recognised by inode or fingerprint).
    let live = await this.#openPlain(this.#options.path)
    const listing = await this.#list()
    if (!anchor) {
      if (!live) return
      live.order.liveAfter = await this.#rotatedBefore(live, listing)
      this.#enqueue(live)
      return
    }
    if (anchor.order.rotatedAt === undefined && anchor.source) await this.#findRotation(anchor, listing)
    if (anchor.order.rotatedAt === undefined && live && anchor.source && live.identity.inode === anchor.identity.inode && live.identity.device === anchor.identity.device) {
      // The anchor is still the live file: nothing newer yet. (Truncation is the reader's business.)
      anchor.order.liveAfter = Math.max(anchor.order.liveAfter, await this.#rotatedBefore(anchor, listing))
      await live.source!.close()
      return
    }
    const after = anchor.order.rotatedAt ?? anchor.order.liveAfter
    for (const b of newerBackups(listing, after)) {
      if (this.#closed) break
      if (live && (await this.#isBackupOf(live, b))) {
        // The live file we pinned was rotated meanwhile: it goes here; later backups wait for the next round.
        live.order = { rotatedAt: b.rotatedAt, liveAfter: b.rotatedAt }
        this.#enqueue(live)
        return
      }
      const path = join(this.#naming.dir, b.name)
      const opened = this.#openCount() < this.#options.maxOpenFiles ? (b.gzip ? await this.#openGzip(path) : await this.#openPlain(path)) : undefined
      const file: Tracked = opened ?? { path, identity: ZERO_IDENTITY, order: { liveAfter: b.rotatedAt }, source: undefined, backupName: b, queuedAt: 0 }
      file.order = { rotatedAt: b.rotatedAt, liveAfter: b.rotatedAt }
      this.#enqueue(file)
    }
    // Rotated between our open and our listing, the pinned "live" file can be the anchor itself (now
    // known by its backup name): a file we already hold is never queued twice.
    if (live && (this.#closed || this.#holds(live.identity))) {
      await live.source!.close()
      live = undefined
    }
    if (live) {
      live.order.liveAfter = Math.max(after, await this.#rotatedBefore(live, listing))
      this.#enqueue(live)
    }
  }

  /**
   * The anchor was live and has been rotated: find its backup, by inode while
   * it is a plain .log, by fingerprint once it has been gzipped.
   */
  async #findRotation(anchor: Tracked, listing: BackupName[]): Promise<void> {
    await refreshFingerprint(anchor)
    for (const b of newerBackups(listing, anchor.order.liveAfter)) {
      if (await this.#isBackupOf(anchor, b)) {
        anchor.order.rotatedAt = b.rotatedAt
        return
      }
    }
  }

  /** The newest rotation time among backups older than `file` (its own backup and later ones excluded). */
  async #rotatedBefore(file: Tracked, listing: BackupName[]): Promise<number> {
    let newest = 0
    for (const b of listing) {
      if (b.rotatedAt <= newest) continue
      if (await this.#isBackupOf(file, b)) break
      newest = b.rotatedAt
    }
    return newest
  }

  /** Is backup `b` the file we hold? By inode for a plain .log; by fingerprint for a finished .gz. */
  async #isBackupOf(file: Tracked, b: BackupName): Promise<boolean> {
    const path = join(this.#naming.dir, b.name)
    if (!b.gzip) {
      const st = await stat(path).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? null : undefined))
      if (st) return sameInode(st, file.identity)
      // Gzipped since the listing named it (the .log goes only once its .gz is written): ask the .gz.
      // Answering "no" would queue the file a second time, as this backup, and read it twice.
      return st === null && this.#gzipIsBackupOf(file, `${path}.gz`)
    }
    return this.#gzipIsBackupOf(file, path)
  }

  async #gzipIsBackupOf(file: Tracked, path: string): Promise<boolean> {
    // A fingerprint taken while the file was short may be a prefix every audit line shares
    // ('{"kind":"Event","apiVersion":...'): extend it first, and while it stays short (the
    // file we hold is that short), only a backup exactly that short can be this file.
    await refreshFingerprint(file)
    if (file.identity.fingerprintLength === 0) return false
    const head = await open(path, 'r').then((h) => gzipHead(h, FINGERPRINT_BYTES)).catch(() => undefined)
    if (head === undefined) return false
    if (file.identity.fingerprintLength < FINGERPRINT_BYTES && head.length !== file.identity.fingerprintLength) return false
    return headMatches(file.identity, head)
  }

  /** The live path exists and is not `file` (one stat: cheap enough for every idle check). */
  async #liveIsAnotherFile(file: Tracked): Promise<boolean> {
    const st = await stat(this.#options.path).catch(() => undefined)
    return st !== undefined && !sameInode(st, file.identity)
  }

  /** Device and inode of a file we hold open: while we hold it, no other file can have them. */
  #holds(identity: FileIdentity): boolean {
    return [this.#current?.file, ...this.#queue].some((f) => f?.source !== undefined && f.identity.inode === identity.inode && f.identity.device === identity.device)
  }

  #enqueue(file: Tracked): void {
    file.queuedAt = ++this.#discoveries
    this.#queue.push(file)
  }

  #openCount(): number {
    return this.#queue.filter((f) => f.source !== undefined).length + (this.#current?.file.source ? 1 : 0)
  }

  async #openPlain(path: string): Promise<Tracked | undefined> {
    let handle: FileHandle | undefined
    try {
      handle = await open(path, 'r')
      const st = await handle.stat()
      if (!st.isFile()) throw new Error(`${path} is not a regular file`)
      const identity: FileIdentity = { device: st.dev, inode: st.ino, ...fingerprintOf(await readHead(handle)) }
      return { path, identity, order: { liveAfter: 0 }, source: new PlainSource(handle), queuedAt: 0 }
    } catch (err) {
      await handle?.close().catch(() => {})
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#options.onError?.(err as Error)
      return undefined
    }
  }

  async #openGzip(path: string): Promise<Tracked | undefined> {
    let handle: FileHandle | undefined
    try {
      handle = await open(path, 'r')
      const st = await handle.stat()
      const head = await gzipHead(await open(path, 'r'), FINGERPRINT_BYTES)
      const identity: FileIdentity = { device: st.dev, inode: st.ino, ...fingerprintOf(head) }
      return { path, identity, order: { liveAfter: 0 }, source: new GzipSource(handle), queuedAt: 0 }
    } catch (err) {
      await handle?.close().catch(() => {})
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#options.onError?.(err as Error)
      return undefined
    }
  }
}

/** Backups rotated after `after`, oldest first, one per rotation time: the plain .log while it exists (a .gz beside it is unfinished). */
function newerBackups(listing: BackupName[], after: number): BackupName[] {
  const byTime = new Map<number, BackupName>()
  for (const b of listing) {
    if (b.rotatedAt <= after) continue
    const seen = byTime.get(b.rotatedAt)
    if (!seen || seen.gzip) byTime.set(b.rotatedAt, b)
  }
  return [...byTime.values()]
}

function sameInode(st: { dev: number; ino: number }, identity: FileIdentity): boolean {
  return st.ino === identity.inode && st.dev === identity.device
}

/** A file opened while short gets its full fingerprint once it has grown. */
async function refreshFingerprint(file: Tracked): Promise<void> {
  if (file.identity.fingerprintLength >= FINGERPRINT_BYTES || !(file.source instanceof PlainSource)) return
  const head = await file.source.read(0, FINGERPRINT_BYTES)
  if (head.length > file.identity.fingerprintLength && headMatches(file.identity, head)) {
    file.identity = { ...file.identity, ...fingerprintOf(head) }
  }
}

/** Offset just after the last newline: starting there never splits a line. */
async function lastLineBoundary(source: ByteSource): Promise<number> {
  let end = (await source.size()) ?? 0
  const step = 64 * 1024
  while (end > 0) {
    const from = Math.max(0, end - step)
    const buf = await source.read(from, end - from)
    const nl = buf.lastIndexOf(0x0a)
    if (nl !== -1) return from + nl + 1
    end = from
  }
  return 0
}
