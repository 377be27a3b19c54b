// The match block binds detectors as it binds rules. For every built-in
// detector and every field its match block names (verbs, resources, codes,
// users...), the stream that fires it, with that one field set to a value the
// block does not admit, must not fire it. Detectors call matchesEvent
// directly (no index in front), so a field it forgets shows up here.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import t from 'tap'
import { parseAllDocuments } from 'yaml'
import type { AuditEvent } from '../../../agent/audit/event.ts'
import { BUILTIN_DETECTORS_DIR, Detectors, type DetectorFinding } from '../../../agent/anomaly/detectors.ts'
import { NameList, type EventMatch } from '../../../agent/guard/event-filter.ts'
import { cases } from './builtin-cases.ts'

const STAGES = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic']

/** The match keys each built-in detector's YAML names (the compiled block cannot tell a default from a choice). */
const namedKeys = new Map<string, string[]>()
for (const name of readdirSync(BUILTIN_DETECTORS_DIR).filter((n) => n.endsWith('.yaml'))) {
  for (const doc of parseAllDocuments(readFileSync(join(BUILTIN_DETECTORS_DIR, name), 'utf8'))) {
    const d = doc.toJS() as { id: string; match?: Record<string, unknown> }
    namedKeys.set(d.id, Object.keys(d.match ?? {}))
  }
}

type Field = { set: (ev: AuditEvent, v: string | number) => AuditEvent; values: (m: EventMatch) => fc.Arbitrary<string | number> | undefined }
const ref = (ev: AuditEvent, patch: Record<string, unknown>) => ({ ...ev, objectRef: { ...ev.objectRef, ...patch } }) as AuditEvent
const outsideSet = (s: Set<string> | undefined) => s && fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('get', 'list', 'delete', 'create', 'secrets', 'configmaps', 'pods', 'exec', 'log', '')).filter((v) => !s.has(v))
const outsideNames = (n: NameList | undefined) => n && fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('alice', 'system:anonymous', 'system:serviceaccount:x:y', 'system:node:n1')).filter((v) => !n.has(v))
const FIELDS: Record<string, Field> = {
  verbs: { set: (ev, v) => ({ ...ev, verb: String(v) }), values: (m) => outsideSet(m.verbs) },
  resources: { set: (ev, v) => ref(ev, { resource: v }), values: (m) => outsideSet(m.resources) },
  subresources: { set: (ev, v) => ref(ev, { subresource: v === '' ? undefined : v }), values: (m) => outsideSet(m.subresources) },
  apiGroups: { set: (ev, v) => ref(ev, { apiGroup: v }), values: (m) => outsideSet(m.apiGroups) },
  namespaces: { set: (ev, v) => ref(ev, { namespace: v }), values: (m) => outsideNames(m.namespaces) },
  names: { set: (ev, v) => ref(ev, { name: v }), values: (m) => outsideNames(m.names) },
  users: { set: (ev, v) => ({ ...ev, user: { ...ev.user, username: String(v) } }), values: (m) => outsideNames(m.users) },
  groups: { set: (ev, v) => ({ ...ev, user: { ...ev.user, groups: [String(v)] } }), values: (m) => outsideNames(m.groups) },
  userAgents: { set: (ev, v) => ({ ...ev, userAgent: String(v) }), values: (m) => outsideNames(m.userAgents) },
  stages: { set: (ev, v) => ({ ...ev, stage: String(v) }), values: (m) => fc.constantFrom(...STAGES.filter((s) => !m.stages.has(s))) },
  codes: { set: (ev, v) => ({ ...ev, responseStatus: { code: Number(v) } }), values: (m) => m.codes && fc.integer({ min: 100, max: 599 }).filter((c) => !m.codes!.has(c)) },
}

const fired = (id: string, events: AuditEvent[]) => {
  const d = new Detectors({ builtin: true, dirs: [] })
  const out: DetectorFinding[] = []
  for (const e of events) d.inspect(e, out)
  return out.filter((f) => f.id === id).length
}

const detectors = new Detectors({ builtin: true, dirs: [] }).detectors

t.test('the match blocks read here are those of the pack loaded', async (t) => {
  t.same([...namedKeys.keys()].sort(), detectors.map((d) => d.id).sort(), 'the YAML read here is the pack loaded')
})

for (const def of detectors) {
  const c = cases.find((x) => x.id === def.id)!
  for (const key of namedKeys.get(def.id) ?? []) {
    const field = FIELDS[key]!
    const values = field.values(def.match)
    if (!values) continue // "*": the block admits any value, so there is none to differ in
    t.test(`${def.id}: a stream that differs only in ${key} (not admitted) never fires it`, async (t) => {
      t.ok(fired(def.id, c.fires()) > 0, 'the unchanged stream fires it')
      fc.assert(fc.property(values, (v) => fired(def.id, c.fires().map((ev) => field.set(ev, v))) === 0), { numRuns: 25 })
    })
  }
}
