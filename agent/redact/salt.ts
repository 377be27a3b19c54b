// The key of the redaction markers' HMAC: random, made once per node, kept in
// the state directory (0600). Markers stay comparable across restarts; without
// the salt nobody can test guesses of a secret against a marker.
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export function loadOrCreateSalt(stateDir: string): Buffer {
  const file = join(stateDir, 'redaction-salt')
  try {
    return readFileSync(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const salt = randomBytes(32)
  try {
    writeFileSync(file, salt, { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFileSync(file)
    throw err
  }
  return salt
}
