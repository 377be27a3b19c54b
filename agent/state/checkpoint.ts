// The checkpoint: where the collector's acknowledged data ends, in the file and
// in the chain. It moves only after an acknowledgement and is replaced
// atomically (temp file, fsync, rename, fsync of the directory), so a crash
// leaves either the old or the new checkpoint, never a torn one.
import { mkdirSync } from 'node:fs'
import { open, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { TailPosition } from '../tail/tailer.ts'

export interface Checkpoint {
  streamId: string
  /** Sequence number the next sealed batch gets. */
  nextSequence: number
  /** Digest of the last acknowledged batch; empty before the first. */
  headDigest: Buffer
  /** Undefined until the first acknowledged batch. */
  position: TailPosition | undefined
}

export class CheckpointError extends Error {
  constructor(file: string, problem: string) {
    super(`checkpoint ${file}: ${problem}. If the file is damaged, move it away: the agent then asks the collector for the stream head and starts over where tail.startAt says.`)
    this.name = 'CheckpointError'
  }
}

const FILE_NAME = 'checkpoint.json'

export class CheckpointFile {
  readonly path: string
  readonly #dir: string
  #writes = 0

  constructor(stateDir: string) {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 })
    this.#dir = stateDir
    this.path = join(stateDir, FILE_NAME)
  }

  async load(): Promise<Checkpoint | undefined> {
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
    let raw: unknown
    try {
      raw = JSON.parse(text)
    } catch {
      throw new CheckpointError(this.path, 'is not valid JSON')
    }
    return parseCheckpoint(raw, this.path)
  }

  async save(cp: Checkpoint): Promise<void> {
    const tmp = `${this.path}.${process.pid}.${++this.#writes}.tmp`
    const handle = await open(tmp, 'w', 0o600)
    try {
      try {
        await handle.writeFile(JSON.stringify(serialize(cp)))
        await handle.sync()
      } finally {
        await handle.close()
      }
      await rename(tmp, this.path)
    } catch (err) {
      // Failed writes are retried with the next acknowledgement: leave no temp file per attempt.
      await rm(tmp, { force: true })
      throw err
    }
    const dir = await open(this.#dir, 'r')
    try {
      await dir.sync()
    } finally {
      await dir.close()
    }
  }
}

function serialize(cp: Checkpoint): unknown {
  const p = cp.position
  return {
    version: 1,
    streamId: cp.streamId,
    nextSequence: cp.nextSequence,
    headDigest: cp.headDigest.toString('hex'),
    position: p && {
      path: p.path,
      device: p.identity.device,
      inode: p.identity.inode,
      fingerprint: p.identity.fingerprint.toString('hex'),
      fingerprintLength: p.identity.fingerprintLength,
      rotatedAt: p.order.rotatedAt,
      liveAfter: p.order.liveAfter,
      offset: p.offset,
      endOfFile: p.endOfFile,
    },
  }
}

function parseCheckpoint(raw: unknown, file: string): Checkpoint {
  const obj = record(raw, 'the top level', file)
  if (obj.version !== 1) throw new CheckpointError(file, `version: expected 1, found ${JSON.stringify(obj.version)}`)
  const nextSequence = count(obj.nextSequence, 'nextSequence', file)
  if (nextSequence < 1) throw new CheckpointError(file, 'nextSequence: must be 1 or more')
  const headDigest = hex(obj.headDigest, 'headDigest', file)
  if (headDigest.length !== (nextSequence === 1 ? 0 : 32)) throw new CheckpointError(file, 'headDigest: wrong length for nextSequence')
  if (typeof obj.streamId !== 'string' || obj.streamId === '') throw new CheckpointError(file, 'streamId: expected a non-empty string')
  let position: TailPosition | undefined
  if (obj.position !== undefined && obj.position !== null) {
    const p = record(obj.position, 'position', file)
    if (typeof p.path !== 'string') throw new CheckpointError(file, 'position.path: expected a string')
    if (typeof p.endOfFile !== 'boolean') throw new CheckpointError(file, 'position.endOfFile: expected true or false')
    const fingerprint = hex(p.fingerprint, 'position.fingerprint', file)
    position = {
      path: p.path,
      identity: {
        device: count(p.device, 'position.device', file),
        inode: count(p.inode, 'position.inode', file),
        fingerprint,
        fingerprintLength: count(p.fingerprintLength, 'position.fingerprintLength', file),
      },
      order: {
        ...(p.rotatedAt === undefined ? {} : { rotatedAt: count(p.rotatedAt, 'position.rotatedAt', file) }),
        liveAfter: count(p.liveAfter, 'position.liveAfter', file),
      },
      offset: count(p.offset, 'position.offset', file),
      endOfFile: p.endOfFile,
    }
  }
  return { streamId: obj.streamId, nextSequence, headDigest, position }
}

function record(v: unknown, field: string, file: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CheckpointError(file, `${field}: expected an object`)
  return v as Record<string, unknown>
}

function count(v: unknown, field: string, file: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new CheckpointError(file, `${field}: expected a whole number of 0 or more`)
  return v
}

function hex(v: unknown, field: string, file: string): Buffer {
  if (typeof v !== 'string' || !/^(?:[0-9a-f]{2})*$/.test(v)) throw new CheckpointError(file, `${field}: expected lowercase hex`)
  return Buffer.from(v, 'hex')
}
