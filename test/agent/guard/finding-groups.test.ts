// Finding groups on their own: the key, the window on event time, the
// threshold, the audit IDs kept, and the bound on the state.
import t from 'tap'
import { compileGroup, FindingGroups, groupFinding, MAX_GROUP_AUDIT_IDS, type GroupChange, type GroupSpec } from '../../../agent/guard/finding-groups.ts'
import type { RuleFinding } from '../../../agent/guard/rule-set.ts'
import { at, T0 } from '../anomaly/events.ts'

const fail = (m: string): never => {
  throw new Error(m)
}
const spec = (raw: unknown): GroupSpec => compileGroup(raw, 'rule', undefined, fail)
const finding = (auditId: string, details: Record<string, string> = {}): RuleFinding => ({ source: 'rule', id: 'r', severity: 'high', message: `m ${auditId}`, auditId, details })

/** Feeds events (ms, user) through groups of `raw`; returns the changes as text. */
function run(raw: unknown, events: [number, string][], max?: number) {
  const groups = new FindingGroups(() => spec(raw), max)
  const changes: GroupChange[] = []
  for (const [ms, user] of events) {
    const ev = at(ms, { user: { username: user } })
    groups.advance(ms, changes)
    groups.add(finding(ev.auditID), ev, ms, changes)
  }
  groups.advance(Infinity, changes)
  return { groups, changes, text: changes.map((c) => `${c.kind}:${c.group.key}:${c.count}`) }
}

t.test('one group per key and window: opened at the first event, grown, ended when its window has passed', async (t) => {
  const { text } = run({ by: ['user'], window: '1m' }, [[0, 'a'], [1000, 'b'], [2000, 'a'], [61_000, 'a'], [62_000, 'a']])
  t.same(text, ['open:a:1', 'open:b:1', 'update:a:2', 'end:a:2', 'end:b:1', 'open:a:1', 'update:a:2', 'end:a:2'])
})

t.test('quiet: a group ends when nothing has joined it for that long, however long it lasted', async (t) => {
  const steady: [number, string][] = Array.from({ length: 30 }, (_, i) => [i * 50_000, 'a'])
  const { text } = run({ by: ['user'], quiet: '1m' }, [...steady, [30 * 50_000 + 61_000, 'a']])
  t.same(text.filter((x) => !x.startsWith('update')), ['open:a:1', 'end:a:30', 'open:a:1', 'end:a:1'], '25 minutes of an event every 50 s is one group; a quiet minute ends it')
})

t.test('a threshold: below it, a group is no finding and ends unheard', async (t) => {
  const { text } = run({ by: ['user'], window: '1m', threshold: 3 }, [[0, 'a'], [1, 'b'], [2, 'a'], [3, 'a'], [4, 'a'], [5, 'b']])
  t.same(text, ['open:a:3', 'update:a:4', 'end:a:4'])
})

t.test('the group keeps the first audit IDs, its extent, and tags every finding with its id', async (t) => {
  const groups = new FindingGroups(() => spec({ by: ['user'], window: '1h' }))
  const changes: GroupChange[] = []
  const findings = Array.from({ length: 150 }, (_, i) => {
    const ev = at(i * 1000)
    const f = finding(ev.auditID)
    groups.add(f, ev, i * 1000, changes)
    return f
  })
  const g = changes[0]!.group
  t.equal(g.count, 150)
  t.same(g.auditIds, findings.slice(0, MAX_GROUP_AUDIT_IDS).map((f) => f.auditId))
  t.ok(findings.every((f) => f.details.group === g.groupId))
  const shown = groupFinding(changes.at(-1)!)
  t.same([shown.details.groupState, shown.details.groupCount, shown.auditId], ['update', '150', findings.at(-1)!.auditId], 'an update shows the latest finding')
  t.equal(groupFinding({ kind: 'open', group: g, count: 1 }).auditId, findings[0]!.auditId, 'the opening its first')
  t.match(shown.message, /\(150 events, .* to .*\)$/)
})

t.test('default key: rule, user, namespace and object; a CEL key; ids stable across replays', async (t) => {
  const d = spec(undefined)
  t.equal(d.by, 'user, namespace, object')
  t.equal(d.windowMs, 3_600_000)
  const ev = at(0, { objectRef: { resource: 'secrets', namespace: 'prod', name: 'db' } })
  t.equal(d.keyOf(ev, finding('x')), 'alice\u0000prod\u0000secrets/db')
  const exec = at(0, { objectRef: { resource: 'pods', subresource: 'exec', namespace: 'prod', name: 'web' } })
  t.equal(d.keyOf(exec, finding('x')), 'alice\u0000prod\u0000pods/exec/web', 'the object is resource/subresource/name, read from the event')
  t.equal(d.keyOf(at(0, { objectRef: undefined }), finding('x')), 'alice\u0000<none>\u0000<none>', 'no objectRef: no object')
  t.equal(spec({ by: 'event.objectRef.namespace + "/" + event.verb' }).keyOf(ev, finding('x')), 'prod/get')
  const idOf = () => {
    const changes: GroupChange[] = []
    new FindingGroups(() => d).add(finding('fixed-id'), { ...ev, auditID: 'fixed-id' }, 0, changes)
    return changes[0]!.group.groupId
  }
  t.match(idOf(), /^r-[0-9a-f]{16}$/)
  t.equal(idOf(), idOf(), 'the same first event gives the same group id (a replay names the same groups)')
  const detector = compileGroup(undefined, 'detector', { windowMs: 600_000, quiet: false }, fail)
  t.same([detector.by, detector.windowMs, detector.quiet, detector.keyOf(ev, finding('x', { key: 'user=alice' }))], ['key', 600_000, false, 'user=alice'])
  t.throws(() => spec({ window: '1m', quiet: '1m' }), /group: window or quiet, not both/)
})

t.test('state is bounded: past the maximum the least recently grown group goes, and is counted', async (t) => {
  const events: [number, string][] = Array.from({ length: 500 }, (_, i) => [i, `u${i}`])
  const { groups, changes } = run({ by: ['user'], window: '1h' }, events, 100)
  t.equal(groups.evictions, 400)
  t.equal(groups.size, 0, 'all ended at the end')
  t.equal(changes.filter((c) => c.kind === 'end').length, 100, 'only the groups still held get an end')
})

t.test('a burst\'s group ends with its extent: refused 200 times in 100 s, the end says 200', async (t) => {
  const { Detectors } = await import('../../../agent/anomaly/detectors.ts')
  const detectors = new Detectors({ builtin: true, dirs: [] })
  const groups = new FindingGroups((f) => detectors.groupOf(f.id))
  const changes: GroupChange[] = []
  for (let i = 0; i < 200; i++) {
    const ev = at(i * 500, { user: { username: 'mallory' }, responseStatus: { code: 403 } })
    const out: RuleFinding[] = []
    detectors.inspect(ev, out)
    for (const f of out.filter((x) => x.id === 'forbidden-burst')) groups.add(f, ev, i * 500, changes)
  }
  groups.advance(Infinity, changes)
  t.same(changes.filter((c) => c.kind !== 'update').map((c) => c.kind), ['open', 'end'], 'one group')
  const end = groupFinding(changes.at(-1)!)
  t.match(end.details, { groupState: 'end', burstCount: '200', burstFirstSeen: new Date(T0).toISOString(), burstLastSeen: new Date(T0 + 99_500).toISOString() })
  t.ok(Number(end.details.burstPeak) > 100 && Number(end.details.burstPeak) < 200, `peak per minute ${end.details.burstPeak}`)
  t.match(end.message, /the burst so far: 200 events/)
})
