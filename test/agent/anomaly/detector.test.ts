import t from 'tap'
import { compileDetector } from '../../../agent/anomaly/detector.ts'
import { duration } from '../../../agent/guard/event-filter.ts'
import { DefinitionError } from '../../../agent/guard/event-filter.ts'

const base = { id: 'd', title: 'D', severity: 'high', key: ['user'], window: '60s', trigger: { threshold: 5 } }

t.test('errors name the file, the detector and the field', async (t) => {
  const cases: [unknown, RegExp][] = [
    [{ ...base, id: 'D D' }, /^f\.yaml: id: expected a kebab-case name/],
    [{ ...base, key: ['username'] }, /^f\.yaml: detector d: key: "username" is not a key field; use user, sourceIP/],
    [{ ...base, key: [] }, /detector d: key: a threshold detector counts per key/],
    [{ ...base, window: '60' }, /detector d: window: expected a duration such as 60s, 5m or 1h/],
    [{ ...base, window: '30d' }, /window: expected a duration/],
    [{ ...base, trigger: {} }, /trigger: expected exactly one of threshold, baseline, firstSeen, unanswered, silence; got none/],
    [{ ...base, trigger: { threshold: 5, silence: '5m' } }, /got threshold, silence/],
    [{ ...base, trigger: { threshold: 0 } }, /trigger\.threshold: expected a whole number of at least 1/],
    [{ ...base, trigger: { baseline: { sigma: 3 } } }, /trigger\.baseline: unknown field "sigma"/],
    [{ ...base, trigger: { firstSeen: 'ip' } }, /trigger\.firstSeen: expected a field name/],
    [{ ...base, filter: 'event.verb ==' }, /detector d: filter: .*line 1, column/],
    [{ ...base, maxKeys: 0 }, /maxKeys: expected a whole number from 1/],
    [{ ...base, colour: 1 }, /unknown field "colour"/],
  ]
  for (const [raw, message] of cases) {
    const err = t.throws(() => compileDetector(raw, 'f.yaml'), message)
    t.ok(err instanceof DefinitionError)
  }
})

t.test('defaults: cool-down ten windows (at least a minute), 5000 keys; unanswered and silence need no key or window', async (t) => {
  const d = compileDetector(base, 'f.yaml')
  t.equal(d.coolDownMs, 600_000)
  t.equal(d.maxKeys, 5000)
  t.same(d.trigger, { kind: 'threshold', count: 5 })
  const s = compileDetector({ id: 's', title: 'S', severity: 'high', trigger: { silence: '5m' } }, 'f.yaml')
  t.same(s.trigger, { kind: 'silence', afterMs: 300_000 })
  t.same(compileDetector({ ...base, trigger: { baseline: {} } }, 'f.yaml').trigger, { kind: 'baseline', sigmas: 6, factor: 3, minCount: 100, warmupWindows: 30 })
  t.same(compileDetector({ ...base, trigger: { firstSeen: 'sourceIP' } }, 'f.yaml').trigger, { kind: 'firstSeen', field: 'sourceIP', learningMs: 3_600_000 })
})

t.test('durations', async (t) => {
  const fail = (m: string): never => {
    throw new Error(m)
  }
  t.equal(duration('250ms', 'x', fail), 250)
  t.equal(duration('90s', 'x', fail), 90_000)
  t.equal(duration('5m', 'x', fail), 300_000)
  t.equal(duration('2h', 'x', fail), 7_200_000)
  t.throws(() => duration(60, 'x', fail), /x: expected a duration/)
  t.throws(() => duration('0s', 'x', fail))
})
