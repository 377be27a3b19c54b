// Rule and detector definitions live in directories of YAML files: one
// definition per YAML document, or a list of them per document.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { DefinitionError } from './event-filter.ts'

const MAX_FILES = 1000
const MAX_FILE_BYTES = 1024 * 1024
/** More definitions than anyone writes: a bound on what one load compiles and keeps. */
const MAX_DEFINITIONS = 5000

/**
 * Every definition in the .yaml/.yml files of `dir` (not recursive, file name
 * order; names starting with "." are skipped: a mounted ConfigMap keeps its
 * real files in "..data"). Every error is collected, so that a linter can
 * report them all; a loader refuses the whole directory when there is any.
 */
export function readDefinitionDirectory<T extends { id: string }>(dir: string, kind: 'rule' | 'detector', compile: (raw: unknown, file: string) => T): { items: T[]; errors: DefinitionError[] } {
  const items: T[] = []
  const errors: DefinitionError[] = []
  let names: string[]
  try {
    names = readdirSync(dir).filter((n) => /\.ya?ml$/.test(n) && !n.startsWith('.')).sort()
  } catch (err) {
    return { items, errors: [new DefinitionError(dir, undefined, `cannot read the ${kind}s directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): check ${kind}s.dirs in the configuration and the volume mount`)] }
  }
  if (names.length > MAX_FILES) return { items, errors: [new DefinitionError(dir, undefined, `more than ${MAX_FILES} files`)] }
  const seen = new Map<string, string>()
  for (const name of names) {
    const file = join(dir, name)
    try {
      const stat = statSync(file)
      if (!stat.isFile()) continue
      if (stat.size > MAX_FILE_BYTES) throw new DefinitionError(file, undefined, `larger than ${MAX_FILE_BYTES} bytes: split it into several files`)
      for (const raw of yamlDocuments(readFileSync(file, 'utf8'), file)) {
        try {
          const item = compile(raw, file)
          const other = seen.get(item.id)
          if (other) throw new DefinitionError(file, item.id, `the id is already used in ${other}: ${kind} ids must be unique within a directory`, kind)
          seen.set(item.id, file)
          items.push(item)
        } catch (err) {
          if (!(err instanceof DefinitionError)) throw err
          errors.push(err)
        }
      }
    } catch (err) {
      if (err instanceof DefinitionError) errors.push(err)
      else errors.push(new DefinitionError(file, undefined, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`))
    }
  }
  return { items, errors }
}

/**
 * Loads the directories in order: a definition whose id an earlier directory
 * already defined replaces it (so a user can tune or, with `enabled: false`,
 * turn off a built-in one). Returns the enabled ones; throws an AggregateError
 * of DefinitionErrors when any file is bad.
 */
export function loadDefinitions<T extends { id: string; enabled: boolean }>(dirs: readonly string[], kind: 'rule' | 'detector', compile: (raw: unknown, file: string) => T): T[] {
  const byId = new Map<string, T>()
  const errors: DefinitionError[] = []
  for (const dir of dirs) {
    const loaded = readDefinitionDirectory(dir, kind, compile)
    errors.push(...loaded.errors)
    for (const item of loaded.items) {
      byId.delete(item.id)
      byId.set(item.id, item)
    }
  }
  if (byId.size > MAX_DEFINITIONS) errors.push(new DefinitionError(dirs.join(', '), undefined, `more than ${MAX_DEFINITIONS} ${kind}s`))
  if (errors.length > 0) throw new AggregateError(errors, errors.map((e) => e.message).join('\n'))
  return [...byId.values()].filter((item) => item.enabled)
}

function yamlDocuments(text: string, file: string): unknown[] {
  const out: unknown[] = []
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!
      throw new DefinitionError(file, undefined, `not valid YAML at line ${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`)
    }
    let value: unknown
    try { value = doc.toJS({ maxAliasCount: 100 }) } catch (err) { throw new DefinitionError(file, undefined, `not valid YAML: ${(err as Error).message.split('\n')[0]}`) } // an alias without its anchor, or too many aliases
    if (value === null || value === undefined) continue
    out.push(...(Array.isArray(value) ? value : [value]))
  }
  return out
}
