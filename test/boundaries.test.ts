// The agent and the collector are separate programs that share only the wire
// contract (proto/) and small common pieces (shared/): neither imports the other,
// and neither imports what composes them (programs/: the CLI and the demo).
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** Folders each side must not import from. */
const FORBIDDEN: Record<string, string[]> = {
  agent: ['collector', 'programs'],
  collector: ['agent', 'programs'],
}

/** Top-level folders a module imports from: static imports and exports, side-effect imports, dynamic import(). */
function importedFolders(file: string, source: string): string[] {
  const folders: string[] = []
  for (const m of source.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) {
    const target = relative(ROOT, resolve(dirname(file), m[1]!))
    folders.push(target.split('/')[0]!)
  }
  return folders
}

function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => join(dir, f))
}

t.test('the check sees every kind of import (it can fail)', async (t) => {
  const file = join(ROOT, 'agent', 'tail', 'x.ts')
  t.same(importedFolders(file, "import { a } from '../../collector/a.ts'\nexport { b } from '../../shared/b.ts'\nimport '../../programs/c.ts'\nconst d = await import('../../collector/d.ts')\nimport e from 'node:fs'\nimport f from './f.ts'"), ['collector', 'shared', 'programs', 'collector', 'agent'])
})

for (const [side, forbidden] of Object.entries(FORBIDDEN)) {
  t.test(`${side}/ imports neither ${forbidden.join(' nor ')}/`, async (t) => {
    const files = sources(join(ROOT, side))
    t.ok(files.length > 5, `${files.length} modules checked`)
    const crossings = files.flatMap((file) => importedFolders(file, readFileSync(file, 'utf8')).filter((f) => forbidden.includes(f)).map((f) => `${relative(ROOT, file)} imports ${f}/`))
    t.same(crossings, [], 'shared pieces belong in shared/ (or proto/ for the wire contract); programs that compose both sides in programs/')
  })
}
