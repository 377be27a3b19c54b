// The apiserver's log backend (lumberjack) renames audit.log to
// audit-2006-01-02T15-04-05.000.log (UTC) and may gzip it to .log.gz. The
// timestamp in the name is the rotation time: it orders backups.
import { basename, dirname, extname } from 'node:path'

export interface BackupName {
  name: string
  /** Rotation time from the name, Unix ms. */
  rotatedAt: number
  gzip: boolean
}

export interface BackupNaming {
  dir: string
  liveName: string
  parse(name: string): BackupName | undefined
}

const STAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})\.(\d{3})$/

export function backupNaming(livePath: string): BackupNaming {
  const liveName = basename(livePath)
  const ext = extname(liveName)
  const prefix = `${liveName.slice(0, liveName.length - ext.length)}-`
  return {
    dir: dirname(livePath),
    liveName,
    parse(name) {
      if (!name.startsWith(prefix)) return undefined
      let rest = name.slice(prefix.length)
      const gzip = rest.endsWith('.gz')
      if (gzip) rest = rest.slice(0, -3)
      if (!rest.endsWith(ext)) return undefined
      const m = STAMP.exec(rest.slice(0, rest.length - ext.length))
      if (!m) return undefined
      const [, y, mo, d, h, mi, s, ms] = m.map(Number) as number[]
      const rotatedAt = Date.UTC(y!, mo! - 1, d!, h!, mi!, s!, ms!)
      return Number.isFinite(rotatedAt) ? { name, rotatedAt, gzip } : undefined
    },
  }
}

/** The backup name lumberjack would give a file rotated at `ms` (used by the generator and tests). */
export function backupNameFor(livePath: string, ms: number): string {
  const liveName = basename(livePath)
  const ext = extname(liveName)
  const stamp = new Date(ms).toISOString().replace(/:/g, '-').replace(/Z$/, '')
  return `${liveName.slice(0, liveName.length - ext.length)}-${stamp}${ext}`
}
