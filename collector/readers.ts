// Who may read the query API. The readers file holds one reader per line:
//
//   # role    sha256 of the token                                              name
//   auditor   sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08   alice
//
// Only the SHA-256 of each token is stored, so the file itself grants nothing to
// whoever reads it. Generate a token and its line with `auditrail collector token --name N`.
// Roles: `auditor` reads events and findings. Any other role name is accepted
// (for future use) and grants nothing: its tokens get 403.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { readFileSync, unwatchFile, watchFile } from 'node:fs'
import type { Logger } from 'pino'

export type Permission = 'events' | 'findings'

export const ROLE_PERMISSIONS: Readonly<Record<string, readonly Permission[]>> = Object.freeze({
  auditor: ['events', 'findings'],
})

export interface Reader {
  name: string
  role: string
}

export class ReadersError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ReadersError'
  }
}

const LINE = /^([a-z][a-z0-9-]{0,62})\s+sha256:([0-9a-f]{64})\s+([A-Za-z0-9][A-Za-z0-9._@-]{0,127})$/

export class Readers {
  #byHash: Map<string, Reader & { hash: Buffer }>

  constructor(entries: Array<Reader & { sha256: string }>) {
    this.#byHash = new Map()
    for (const e of entries) this.#byHash.set(e.sha256, { name: e.name, role: e.role, hash: Buffer.from(e.sha256, 'hex') })
  }

  get size(): number {
    return this.#byHash.size
  }

  /** The reader a bearer token belongs to, or undefined. */
  identify(token: string): Reader | undefined {
    const hash = sha256(token)
    const found = this.#byHash.get(hash.toString('hex'))
    // The map lookup already matched; the constant-time compare keeps the check honest if lookup ever changes.
    if (!found || !timingSafeEqual(found.hash, hash)) return undefined
    return { name: found.name, role: found.role }
  }

  roles(): string[] {
    return [...new Set([...this.#byHash.values()].map((r) => r.role))].sort()
  }

  names(): string[] {
    return [...this.#byHash.values()].map((r) => r.name).sort()
  }

  /** Takes the readers of `other` in place of these: the next request is checked against them. */
  replaceWith(other: Readers): void {
    this.#byHash = new Map(other.#byHash)
  }
}

export function sha256(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}

export function may(reader: Reader, permission: Permission): boolean {
  return ROLE_PERMISSIONS[reader.role]?.includes(permission) === true
}

export function parseReaders(text: string, file = 'readers file'): Readers {
  const entries: Array<Reader & { sha256: string }> = []
  const names = new Set<string>()
  const hashes = new Set<string>()
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const where = `${file} line ${i + 1}`
    const m = LINE.exec(line.replace(/\s+/g, ' '))
    if (!m) {
      if (/^\S+\s+[0-9a-f]{64}\b/i.test(line) || !/sha256:/.test(line)) {
        throw new ReadersError(`${where}: expected 'ROLE sha256:HEX NAME' (the SHA-256 of the token, never the token itself; 'auditrail collector token --name NAME' prints a line)`)
      }
      throw new ReadersError(`${where}: expected 'ROLE sha256:<64 lowercase hex digits> NAME' (role: lowercase letters, digits, '-'; name: letters, digits, '.', '_', '@', '-')`)
    }
    const [, role, hash, name] = m as unknown as [string, string, string, string]
    if (names.has(name)) throw new ReadersError(`${where}: reader ${name} appears twice; give each reader one line`)
    if (hashes.has(hash)) throw new ReadersError(`${where}: this token hash is already given to another reader; each reader needs its own token`)
    names.add(name)
    hashes.add(hash)
    entries.push({ role, sha256: hash, name })
  }
  return new Readers(entries)
}

export function loadReaders(file: string): Readers {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ReadersError(`cannot read readers file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  return parseReaders(text, file)
}

/** A new random token and the readers-file line that admits it. */
export function newToken(role: string, name: string): { token: string; line: string } {
  const token = `art_${randomBytes(32).toString('base64url')}`
  const line = `${role} sha256:${sha256(token).toString('hex')} ${name}`
  if (!LINE.test(line)) throw new ReadersError(`role ${JSON.stringify(role)} or name ${JSON.stringify(name)} is not allowed (role: lowercase letters, digits, '-'; name: letters, digits, '.', '_', '@', '-')`)
  return { token, line }
}

export interface ReadersWatch {
  /** Reads the file again now (SIGHUP); `reason` goes into the log line. */
  reload(reason: string): void
  close(): void
}

/**
 * Keeps `readers` in step with `file`, as the agent's rules are: read again when it changes and on
 * `reload()`. Polled (a stat every `intervalMs`), not watched: a ConfigMap or Secret is updated by
 * swapping a symlink, which a watch on the file never sees. A file that cannot be read or parsed
 * leaves the previous readers in place, and says why.
 */
export function watchReaders(file: string, readers: Readers, log: Logger, intervalMs = 1000): ReadersWatch {
  const reload = (reason: string) => {
    let next: Readers
    try {
      next = loadReaders(file)
    } catch (err) {
      log.error({ file, reason, err: (err as Error).message }, 'readers file not reloaded: the previous readers stay; fix the file')
      return
    }
    const before = new Set(readers.names())
    const after = new Set(next.names())
    readers.replaceWith(next)
    log.info({ file, reason, readers: next.size, added: [...after].filter((n) => !before.has(n)), removed: [...before].filter((n) => !after.has(n)) }, 'readers reloaded')
  }
  const onChange = () => reload('file changed')
  watchFile(file, { interval: intervalMs, persistent: false }, onChange)
  return { reload, close: () => unwatchFile(file, onChange) }
}
