// The file store: a directory of append-only segment files, one folder per stream.
//
// Layout: <store>/streams/<streamId>/<first sequence, 20 digits>.seg
// Entry:  [u32 BE length][u32 BE crc32 of the bytes][SealedBatch bytes]
//
// Files are only ever opened for appending. The one exception is start-up:
// a torn tail (what a crash mid-write leaves) in a stream's last segment is cut
// off with ftruncate and logged, so that it is never served nor appended after.
// The readers below (readSegment, streamEntries) never write: verify and
// export use them on a store that may be live.
import { open, mkdir, readdir, readFile, stat, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { pino, type Logger } from 'pino'
import { batchDigest, decodeBatch, decodeSealedBatch, encodeSealedBatch } from '../../proto/wire.ts'
import {
  isValidStreamId,
  STREAM_ID_PATTERN,
  StoreError,
  StoreUnavailableError,
  type BatchStore,
  type ChainCheck,
  type LocatedBatch,
  type NewEntry,
  type StoredItem,
  type StoreHead,
  type StreamView,
} from './store.ts'

const MiB = 1024 * 1024
export const DEFAULT_SEGMENT_BYTES = 64 * MiB
export const ENTRY_HEADER_BYTES = 8
/** No entry the collector writes is larger (its request limits are far below); a bigger length is damage. */
export const MAX_ENTRY_BYTES = 256 * MiB
/** Digests of the most recent batches per stream, so that a re-sent batch is recognised without disk reads. */
const RECENT_DIGESTS = 4096
const SEGMENT_NAME = /^(\d{20})\.seg$/
const LOCK_FILE = 'collector.lock'

export function segmentName(firstSequence: number): string {
  return `${String(firstSequence).padStart(20, '0')}.seg`
}

export function streamDir(dir: string, streamId: string): string {
  if (!isValidStreamId(streamId)) throw new StoreError(`stream id ${JSON.stringify(streamId)} does not match ${STREAM_ID_PATTERN}`)
  return join(dir, 'streams', streamId)
}

export interface SegmentFile {
  name: string
  path: string
  /** The sequence number its name claims for its first entry. */
  first: number
}

/** Stream directories of a store, sorted; names that are not valid stream ids are not streams. */
export async function listStreams(dir: string): Promise<string[]> {
  let names: string[]
  try {
    names = await readdir(join(dir, 'streams'))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  return names.filter(isValidStreamId).sort()
}

/** A stream's segment files in sequence order, and any other file found in its directory. */
export async function listSegments(dir: string, streamId: string): Promise<{ segments: SegmentFile[]; strays: string[] }> {
  const path = streamDir(dir, streamId)
  const segments: SegmentFile[] = []
  const strays: string[] = []
  for (const name of await readdir(path)) {
    const m = SEGMENT_NAME.exec(name)
    if (m) segments.push({ name, path: join(path, name), first: Number(m[1]) })
    else strays.push(name)
  }
  segments.sort((a, b) => a.first - b.first)
  return { segments, strays: strays.sort() }
}

export type SegmentItem =
  | { kind: 'entry'; offset: number; bytes: Buffer }
  /**
   * The bytes from `offset` on are not a whole, valid entry. `torn` says the damage
   * reaches the end of the file the way an interrupted append does (cut short, or
   * nothing but zeros after it); otherwise valid-looking data may follow.
   */
  | { kind: 'bad'; offset: number; reason: string; torn: boolean }

/** Reads a segment entry by entry (one entry in memory at a time); stops after the first bad one. */
export async function* readSegment(path: string): AsyncGenerator<SegmentItem> {
  const fh = await open(path, 'r')
  try {
    const size = (await fh.stat()).size
    const header = Buffer.alloc(ENTRY_HEADER_BYTES)
    let offset = 0
    while (offset < size) {
      const remaining = size - offset
      if (remaining < ENTRY_HEADER_BYTES) {
        yield { kind: 'bad', offset, reason: `entry header cut short (${remaining} of ${ENTRY_HEADER_BYTES} bytes)`, torn: true }
        return
      }
      await readExactly(fh, header, offset)
      const length = header.readUInt32BE(0)
      const crc = header.readUInt32BE(4)
      const available = remaining - ENTRY_HEADER_BYTES
      if (length === 0 || length > MAX_ENTRY_BYTES) {
        const torn = await onlyZerosFrom(fh, offset, size)
        yield { kind: 'bad', offset, reason: `entry header claims ${length} bytes (must be 1 to ${MAX_ENTRY_BYTES})`, torn }
        return
      }
      if (length > available) {
        yield { kind: 'bad', offset, reason: `entry cut short (${available} of ${length} bytes)`, torn: true }
        return
      }
      const bytes = Buffer.allocUnsafe(length)
      await readExactly(fh, bytes, offset + ENTRY_HEADER_BYTES)
      if (crc32(bytes) !== crc) {
        // A SealedBatch ends with its algorithm name, never a zero byte; a page a crash left
        // zero-filled does. Any other mismatch is an alteration, and is never cut.
        const end = offset + ENTRY_HEADER_BYTES + length
        const torn = end === size && bytes[length - 1] === 0
        yield { kind: 'bad', offset, reason: 'crc32 mismatch: the entry\'s bytes were altered', torn }
        return
      }
      yield { kind: 'entry', offset, bytes }
      offset += ENTRY_HEADER_BYTES + length
    }
  } finally {
    await fh.close()
  }
}

export interface StreamItem {
  segment: SegmentFile
  item: SegmentItem
}

/** Every entry of a stream, segment by segment, in file order. Read-only. */
export async function* streamEntries(dir: string, streamId: string): AsyncGenerator<StreamItem> {
  const { segments } = await listSegments(dir, streamId)
  for (const segment of segments) {
    for await (const item of readSegment(segment.path)) yield { segment, item }
  }
}

async function readExactly(fh: FileHandle, into: Buffer, position: number): Promise<void> {
  let done = 0
  while (done < into.length) {
    const { bytesRead } = await fh.read(into, done, into.length - done, position + done)
    if (bytesRead === 0) throw new StoreError(`unexpected end of file at byte ${position + done}`)
    done += bytesRead
  }
}

/** A crash can leave zero-filled blocks after the last complete write (delayed allocation). */
async function onlyZerosFrom(fh: FileHandle, offset: number, size: number): Promise<boolean> {
  const chunk = Buffer.alloc(Math.min(MiB, size - offset))
  for (let at = offset; at < size; at += chunk.length) {
    const n = Math.min(chunk.length, size - at)
    await readExactly(fh, chunk.subarray(0, n), at)
    for (let i = 0; i < n; i++) if (chunk[i] !== 0) return false
  }
  return true
}

export interface StoreOptions {
  logger?: Logger
  /** A segment is closed once the next entry would take it past this size. */
  segmentBytes?: number
}

interface StreamState {
  dir: string
  segments: SegmentFile[]
  /** Bytes in the last segment. */
  size: number
  head: StoreHead | undefined
  recent: Map<number, Buffer>
  /** Set when a write or fsync failed: the file's tail is unknown until a restart cuts it. */
  failed: string | undefined
  /** Date.now() of the head's append: at recovery, the modification time of the head's segment. */
  lastAppendMs: number | undefined
}

/**
 * Told of each append, once it is on disk: where the entry went and its bytes (the query index is fed
 * from here). The bytes stay the store's (they are its stream's head): a listener copies what it keeps.
 */
export type AppendListener = (streamId: string, sequence: number, at: { segment: number; offset: number }, entry: Uint8Array) => void

const lockedDirs = new Set<string>()

export async function openFileStore(dir: string, options: StoreOptions = {}): Promise<FileStore> {
  const log = options.logger ?? pino({ level: 'silent' })
  await mkdir(join(dir, 'streams'), { recursive: true, mode: 0o700 })
  await lock(dir)
  try {
    const streams = new Map<string, StreamState>()
    for (const id of await listStreams(dir)) streams.set(id, await recoverStream(dir, id, log))
    return new FileStore(dir, streams, options.segmentBytes ?? DEFAULT_SEGMENT_BYTES, log)
  } catch (err) {
    await unlock(dir)
    throw err
  }
}

/**
 * A directory opened for reading only (verify, export): no lock, no recovery, so that it
 * can be read while a collector appends to it. head() and append() refuse.
 */
export function readFileStore(dir: string): FileStore {
  return new FileStore(dir, undefined, DEFAULT_SEGMENT_BYTES, pino({ level: 'silent' }))
}

export class FileStore implements BatchStore {
  readonly kind = 'file'
  readonly dir: string
  readonly name: string
  /** Undefined when opened for reading only. */
  readonly #streams: Map<string, StreamState> | undefined
  readonly #segmentBytes: number
  readonly #log: Logger
  readonly #locks = new StreamLocks()
  #closed = false
  onAppend: AppendListener | undefined

  constructor(dir: string, streams: Map<string, StreamState> | undefined, segmentBytes: number, log: Logger) {
    this.dir = dir
    this.name = dir
    this.#streams = streams
    this.#segmentBytes = segmentBytes
    this.#log = log
  }

  async streams(): Promise<string[]> {
    return this.#streams ? [...this.#streams.keys()].sort() : listStreams(this.dir)
  }

  async head(streamId: string): Promise<StoreHead | undefined> {
    if (!this.#streams) throw new StoreError(`store ${this.dir} is open for reading only`)
    return this.#streams.get(streamId)?.head
  }

  /** Each stream's head sequence now (the index catches up to these). */
  headSequences(): Record<string, number> {
    return Object.fromEntries([...(this.#streams ?? [])].map(([id, s]) => [id, s.head?.sequence ?? 0]))
  }

  async lastBatchAges(): Promise<number[]> {
    const now = Date.now()
    return [...(this.#streams?.values() ?? [])].flatMap((s) => (s.lastAppendMs === undefined ? [] : [Math.max(0, now - s.lastAppendMs) / 1000]))
  }

  async unready(): Promise<string | undefined> {
    if (this.#closed) return 'the store is closed'
    const failed = [...(this.#streams ?? [])].find(([, s]) => s.failed)
    return failed ? `stream ${failed[0]} is not writable since a write failed (${failed[1].failed}); restart the collector` : undefined
  }

  append(streamId: string, entry: NewEntry, check: ChainCheck): Promise<'appended' | 'stored'> {
    const streams = this.#streams
    if (!streams) return Promise.reject(new StoreError(`store ${this.dir} is open for reading only`))
    return this.#locks.run(streamId, async () => {
      const known = streams.get(streamId)
      const view: StreamView = {
        head: known?.head,
        digestAt: (sequence) => this.#digestAt(known, sequence),
        streamsOfKey: async (keyId) => [...streams.values()].filter((s) => s.head?.keyId === keyId).length,
      }
      if ((await check(view)) === 'stored') return 'stored'
      const bytes = encodeSealedBatch(entry.sealed, ENTRY_HEADER_BYTES)
      const at = await this.#append(known ?? (await this.#createStream(streamId)), streamId, entry.batch.sequence, entry.digest, bytes, entry.sealed.keyId)
      this.onAppend?.(streamId, entry.batch.sequence, at, bytes.subarray(ENTRY_HEADER_BYTES))
      return 'appended'
    })
  }

  async #digestAt(state: StreamState | undefined, sequence: number): Promise<Buffer | undefined> {
    if (!state?.head || sequence < 1 || sequence > state.head.sequence) return undefined
    const recent = state.recent.get(sequence)
    if (recent) return recent
    // Older than the in-memory window: sequences are consecutive, so the entry is the
    // (sequence - first)-th of the last segment starting at or before it; skip by headers.
    const segment = state.segments.findLast((s) => s.first <= sequence)
    if (!segment) return undefined
    const fh = await open(segment.path, 'r')
    try {
      const header = Buffer.alloc(ENTRY_HEADER_BYTES)
      let offset = 0
      for (let n = segment.first; n < sequence; n++) {
        await readExactly(fh, header, offset)
        offset += ENTRY_HEADER_BYTES + header.readUInt32BE(0)
      }
      await readExactly(fh, header, offset)
      const bytes = Buffer.allocUnsafe(header.readUInt32BE(0))
      await readExactly(fh, bytes, offset + ENTRY_HEADER_BYTES)
      if (crc32(bytes) !== header.readUInt32BE(4)) throw new StoreError(`${segment.path} at byte ${offset}: crc32 mismatch; run 'auditrail verify'`)
      const sealed = decodeSealedBatch(bytes)
      const found = decodeBatch(sealed.batch).sequence
      if (found !== sequence) throw new StoreError(`${segment.path} at byte ${offset} holds sequence ${found} where ${sequence} belongs; run 'auditrail verify'`)
      return batchDigest(sealed.batch)
    } finally {
      await fh.close()
    }
  }

  /**
   * Appends the next batch of a stream and returns once it is on disk (file and,
   * for a new file, its directory fsynced). The caller checked the chain; this
   * only insists on the next sequence number. Returns where the entry went.
   * `entry`: the SealedBatch's bytes after ENTRY_HEADER_BYTES left for the header (written here).
   */
  async #append(state: StreamState, streamId: string, sequence: number, digest: Buffer, entry: Buffer, keyId: string): Promise<{ segment: number; offset: number }> {
    if (this.#closed) throw new StoreError('store is closed')
    if (state.failed) throw new StoreUnavailableError(`stream ${streamId} is not writable since an earlier write failed (${state.failed}); restart the collector`)
    const expected = (state.head?.sequence ?? 0) + 1
    if (sequence !== expected) throw new StoreError(`stream ${streamId}: append of sequence ${sequence}, expected ${expected}`)
    const sealed = entry.subarray(ENTRY_HEADER_BYTES)
    if (sealed.length === 0 || sealed.length > MAX_ENTRY_BYTES) throw new StoreError(`stream ${streamId}: entry of ${sealed.length} bytes`)

    entry.writeUInt32BE(sealed.length, 0)
    entry.writeUInt32BE(crc32(sealed), 4)

    const last = state.segments.at(-1)
    const roll = !last || (state.size > 0 && state.size + entry.length > this.#segmentBytes)
    const segment = roll ? { name: segmentName(sequence), path: join(state.dir, segmentName(sequence)), first: sequence } : last
    try {
      // 'ax' for a new segment: a file that exists already is not ours to append to.
      const fh = await open(segment.path, roll ? 'ax' : 'a', 0o600)
      try {
        let written = 0
        while (written < entry.length) written += (await fh.write(entry, written)).bytesWritten
        await fh.sync()
      } finally {
        await fh.close()
      }
      if (roll) await fsyncDir(state.dir)
    } catch (err) {
      state.failed = (err as Error).message
      this.#log.error({ stream: streamId, segment: segment.path, err: state.failed }, 'append failed; the stream takes no more writes until a restart checks its tail')
      throw new StoreUnavailableError(state.failed)
    }
    if (roll) {
      state.segments.push(segment)
      state.size = 0
    }
    const offset = state.size
    state.size += entry.length
    // The head's bytes are those of the entry as written, not a copy: each megabyte allocated per
    // batch on this thread adds to what makes V8 run a full collection every few batches.
    state.head = { sequence, digest, sealed, keyId }
    remember(state, sequence, digest)
    state.lastAppendMs = Date.now()
    return { segment: segment.first, offset }
  }

  /** Waits for the appends in flight (and their onAppend calls). */
  settled(): Promise<void> {
    return this.#locks.idle()
  }

  /** Waits for appends in flight, then releases the store's lock; appends already returned are on disk. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#locks.idle()
    if (this.#streams) await unlock(this.dir)
  }

  async #createStream(streamId: string): Promise<StreamState> {
    const dir = streamDir(this.dir, streamId)
    await mkdir(dir, { mode: 0o700 })
    await fsyncDir(join(this.dir, 'streams'))
    const state: StreamState = { dir, segments: [], size: 0, head: undefined, recent: new Map(), failed: undefined, lastAppendMs: undefined }
    this.#streams!.set(streamId, state)
    return state
  }

  async layoutProblem(streamId: string): Promise<{ segment?: string; reason: string } | undefined> {
    const { segments, strays } = await listSegments(this.dir, streamId)
    if (strays.length > 0) return { segment: strays[0]!, reason: 'unexpected file in the stream directory (segments are named <20-digit first sequence>.seg)' }
    if (segments.length === 0) return { reason: 'the stream directory holds no segment files' }
    return undefined
  }

  async *entries(streamId: string): AsyncGenerator<StoredItem> {
    const { segments } = await listSegments(this.dir, streamId)
    for (const [index, segment] of segments.entries()) {
      let first = true
      for await (const item of readSegment(segment.path)) {
        const place = { segment: segment.name, offset: item.offset }
        if (item.kind === 'bad') {
          // Listed again: on a live store, the segment that was last may have been followed by a new one meanwhile.
          const inLastSegment = (await listSegments(this.dir, streamId)).segments.at(-1)?.name === segment.name
          yield { kind: 'bad', reason: item.reason, torn: item.torn, inLastSegment, place }
          return
        }
        yield { kind: 'entry', bytes: item.bytes, place, ...(first ? { segmentFirst: segment.first } : {}) }
        first = false
      }
      if (first) yield { kind: 'empty', segment: segment.name, first: segment.first, last: index === segments.length - 1 }
    }
  }

  /** Sequences are consecutive, so the batch is in the last segment starting at or before it. */
  async batchAt(streamId: string, sequence: number): Promise<LocatedBatch> {
    const { segments } = await listSegments(this.dir, streamId)
    const segment = segments.findLast((s) => s.first <= sequence)
    if (!segment) return { found: false, reason: `sequence ${sequence} is not stored`, absent: true }
    let n = segment.first
    for await (const item of readSegment(segment.path)) {
      const place = { segment: segment.name, offset: item.offset }
      if (item.kind === 'bad') return { found: false, reason: `altered or truncated entry where sequence ${n} was expected: ${item.reason}`, absent: false, place }
      if (n === sequence) return { found: true, bytes: item.bytes, place }
      n++
    }
    return { found: false, reason: `sequence ${sequence} is not stored (segment ${segment.name} ends at ${n - 1})`, absent: true }
  }
}

/** Runs one task at a time per stream, so that concurrent requests cannot interleave a chain. */
class StreamLocks {
  readonly #tails = new Map<string, Promise<void>>()

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve()
    const result = previous.then(task)
    const tail = result.then(() => {}, () => {})
    this.#tails.set(key, tail)
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key)
    })
    return result
  }

  async idle(): Promise<void> {
    await Promise.all(this.#tails.values())
  }
}

function remember(state: StreamState, sequence: number, digest: Buffer): void {
  state.recent.set(sequence, digest)
  if (state.recent.size > RECENT_DIGESTS) state.recent.delete(sequence - RECENT_DIGESTS)
}

/**
 * Finds a stream's head from its last non-empty segment and cuts a torn tail
 * there. Damage that is not a torn tail (valid data after a bad entry, or a
 * segment that does not hold the sequences its name says) stops the start-up:
 * appending to a damaged chain would bury the damage.
 */
async function recoverStream(dir: string, streamId: string, log: Logger): Promise<StreamState> {
  const { segments } = await listSegments(dir, streamId)
  const state: StreamState = { dir: streamDir(dir, streamId), segments, size: 0, head: undefined, recent: new Map(), failed: undefined, lastAppendMs: undefined }
  for (let i = segments.length - 1; i >= 0 && !state.head; i--) {
    const segment = segments[i]!
    let expected = segment.first
    let end = 0
    for await (const item of readSegment(segment.path)) {
      if (item.kind === 'bad') {
        if (i !== segments.length - 1 || !item.torn) {
          throw new StoreError(`${segment.path} is damaged at byte ${item.offset}: ${item.reason}; run 'auditrail verify' on the store and keep a copy before repairing it`)
        }
        await cutTornTail(segment.path, item.offset, item.reason, log, streamId)
        break
      }
      const sealed = decodeSealedBatch(item.bytes)
      const sequence = decodeBatch(sealed.batch).sequence
      if (sequence !== expected) {
        throw new StoreError(`${segment.path} at byte ${item.offset} holds sequence ${sequence} where ${expected} belongs; run 'auditrail verify' on the store`)
      }
      const digest = batchDigest(sealed.batch)
      remember(state, sequence, digest)
      state.head = { sequence, digest, sealed: item.bytes, keyId: sealed.keyId }
      end = item.offset + ENTRY_HEADER_BYTES + item.bytes.length
      expected++
    }
    if (state.head) state.lastAppendMs = (await stat(segment.path)).mtimeMs
    if (i === segments.length - 1) state.size = end
    if (!state.head && i !== segments.length - 1) throw new StoreError(`${segment.path} holds no entries, yet later segments exist; run 'auditrail verify' on the store`)
  }
  const last = segments.at(-1)
  if (last && last.first !== (state.head?.sequence ?? 0) + 1 && state.size === 0) {
    throw new StoreError(`${last.path} is empty but its name says it starts at ${last.first}, while the stream's head is ${state.head?.sequence ?? 0}; run 'auditrail verify' on the store`)
  }
  return state
}

async function cutTornTail(path: string, offset: number, reason: string, log: Logger, streamId: string): Promise<void> {
  const fh = await open(path, 'r+')
  try {
    const size = (await fh.stat()).size
    await fh.truncate(offset)
    await fh.sync()
    log.warn({ stream: streamId, segment: path, offset, cutBytes: size - offset, sizeBefore: size, reason }, `cut a torn tail: ${size - offset} bytes from byte ${offset} of ${path} (${reason}); the sender re-sends what was not acknowledged`)
  } finally {
    await fh.close()
  }
}

async function fsyncDir(path: string): Promise<void> {
  const fh = await open(path, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** One collector per store: a second one would interleave appends. A lock left by a dead process is taken over. */
async function lock(dir: string): Promise<void> {
  const path = join(dir, LOCK_FILE)
  if (lockedDirs.has(path)) throw new StoreError(`store ${dir} is already open in this process`)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o600)
      try {
        await fh.write(`${process.pid}\n`)
      } finally {
        await fh.close()
      }
      lockedDirs.add(path)
      return
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim())
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
      throw new StoreError(`store ${dir} is in use by process ${pid} (${path}); stop that collector first, or remove the lock file if ${pid} is not one`)
    }
    await unlink(path).catch(() => {})
  }
  throw new StoreError(`cannot lock store ${dir}: ${path} keeps reappearing (another collector starting?)`)
}

async function unlock(dir: string): Promise<void> {
  const path = join(dir, LOCK_FILE)
  lockedDirs.delete(path)
  await unlink(path).catch(() => {})
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
