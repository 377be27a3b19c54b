// Fuzzing the rule and detector loaders (compileRule, compileDetector,
// readDefinitionDirectory) with arbitrary values, mutated valid definitions and
// CEL text from a grammar of hostile fragments: only DefinitionError, never
// another exception. Then compiled rules (the built-in pack and every fuzzed
// rule that compiled) and the detectors see arbitrary, hostile events: inspect
// never throws. Seeded (FUZZ_SEED); longer with FUZZ_SECONDS or
// `npm run fuzz -- --target definition`.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import t from 'tap'
import { stringify } from 'yaml'
import { compileDetector } from '../../../agent/anomaly/detector.ts'
import { Detectors } from '../../../agent/anomaly/detectors.ts'
import { toAuditEvent, type AuditEvent } from '../../../agent/audit/event.ts'
import { readDefinitionDirectory } from '../../../agent/guard/definition-files.ts'
import { DefinitionError } from '../../../agent/guard/event-filter.ts'
import { compileRule, type Rule } from '../../../agent/guard/rule.ts'
import { BUILTIN_RULES_DIR, loadRuleSet, RuleSet, type RuleFinding } from '../../../agent/guard/rule-set.ts'
import { executionsLine, fuzzParameters, fuzzSettings, Surprises } from '../../../scripts/fuzz.ts'

const surprises = new Surprises()
const SLOW_MS = 2000
const dir = t.testdir()
t.comment(`seed ${fuzzSettings().seed} (FUZZ_SEED to replay, FUZZ_SECONDS to run longer)`)

const VALID_RULE = {
  id: 'fuzz-rule',
  title: 'A privileged container',
  severity: 'high',
  description: 'why',
  mitre: ['T1611'],
  match: { verbs: ['create', 'update'], resources: ['pods'], namespaces: ['prod*'], stages: ['ResponseComplete'] },
  condition: 'containers.exists(c, has(c.securityContext) && c.securityContext.privileged == true)',
  exceptions: ['event.user.username == "admin"', { users: ['system:*'], namespaces: ['kube-system'] }],
  output: '{{ event.user.username }} made {{ target }} ({{ size(containers) }} containers)',
  group: { by: ['user', 'namespace'], window: '1h', threshold: 2 },
}
const VALID_DETECTOR = {
  id: 'fuzz-detector',
  title: 'Forbidden burst',
  severity: 'medium',
  match: { verbs: ['get', 'list'] },
  filter: 'event.responseStatus.code == 403',
  key: ['user', 'sourceIP'],
  window: '60s',
  trigger: { threshold: 5 },
  coolDown: '10m',
  maxKeys: 100,
  group: { by: 'event.user.username', quiet: '5m' },
}
const FIELDS = ['id', 'title', 'severity', 'description', 'mitre', 'match', 'condition', 'exceptions', 'output', 'enabled', 'filter', 'key', 'window', 'trigger', 'coolDown', 'maxKeys', 'verbs', 'resources', 'subresources', 'namespaces', 'users', 'groups', 'codes', 'stages', 'threshold', 'baseline', 'firstSeen', 'learning', 'unanswered', 'silence', 'sigmas', 'factor', 'minCount', 'warmupWindows', 'group', 'by', 'quiet', '0', '1']
const HOSTILE_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__']

// --- CEL text

const celFragment = fc.oneof(
  fc.constantFrom('event', 'object', 'name', 'target', 'podSpec', 'containers', 'execCommand', 'c', 'x', 'nope', 'request'),
  fc.constantFrom('.', '.user', '.username', '.groups', '.objectRef', '.resource', '.spec', '.containers', '.metadata', '.name', '.__proto__', '.constructor', '.toString', '["__proto__"]', '[0]', '[-1]', '[9223372036854775807]'),
  fc.constantFrom('.exists(c, ', '.all(c, ', '.exists_one(c, ', '.map(c, ', '.filter(c, ', 'has(', 'size(', 'int(', 'uint(', 'double(', 'string(', 'bytes(', 'dyn(', 'type(', 'duration(', 'timestamp(', '.matches(', '.startsWith(', '.contains(', '.split(', '.join(', '.lowerAscii(', '.replace(', '.substring(', 'matches(', 'unknownFn(', ')', ', '),
  fc.constantFrom(' == ', ' != ', ' < ', ' >= ', ' && ', ' || ', '!', '-', ' + ', ' * ', ' / ', ' % ', ' ? ', ' : ', ' in ', '(', ')', '[', ']', '{', '}', ': ', ','),
  fc.constantFrom('"x"', "'(a+)+$'", "'['", "'\\\\'", '"\\u0000"', 'r"\\d"', 'b"\\xff"', '"""', '0', '1', '-1', '9223372036854775807', '18446744073709551615u', '1e308', '1e999', '0x', '.5', 'true', 'false', 'null', '[1,2,3]', '{"a": 1}', '"a" * 1000', '[' + '0,'.repeat(50) + '0]'),
  fc.string({ maxLength: 6 }),
)
const celText = fc.oneof(
  fc.array(celFragment, { maxLength: 30 }).map((p) => p.join('')),
  fc.nat(300).map((n) => '('.repeat(n) + 'true' + ')'.repeat(n)),
  fc.nat(60).map((n) => `${'event.user.groups.exists(a, '.repeat(n)}true${')'.repeat(n)}`),
  fc.nat(5000).map((n) => 'a'.repeat(n)),
)
const templateText = fc.array(fc.oneof(fc.string({ maxLength: 8 }), celText.map((c) => `{{ ${c} }}`), fc.constantFrom('{{', '}}', '{{}}', '{{ {{ }} }}')), { maxLength: 6 }).map((p) => p.join(''))

// --- mutated definitions

const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  celText,
  templateText,
  fc.constantFrom(1e308, -1, 0, 0.5, 2 ** 53 + 1, NaN, '', ' ', null, true, [], {}, ['*'], ['a', 1], 'critical', 'nope', '60s', '0s', '9999999999999999h', '1000000h', 'user', '__proto__', 'constructor', 'toString'),
  fc.array(fc.constantFrom('create', 'get', '*', 'system:*', '', '__proto__', 'constructor', 'toString', 'user', 'sourceIP'), { maxLength: 5 }),
  fc.anything({ maxDepth: 3, withBigInt: false, withNullPrototype: true, withMap: true, withSet: true, withDate: true, withTypedArray: true, withSparseArray: true, withBoxedValues: true }),
  fc.nat(2000).map((n) => Array.from({ length: n }, (_, i) => `v${i}`)),
)
const edit = fc.record({ path: fc.array(fc.constantFrom(...FIELDS, ...HOSTILE_KEYS), { minLength: 1, maxLength: 3 }), value: hostileValue, remove: fc.boolean() })

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T
}
function applyEdit(root: Record<string, unknown>, e: { path: string[]; value: unknown; remove: boolean }): void {
  let obj: Record<string, unknown> = root
  for (const part of e.path.slice(0, -1)) {
    let next = Object.hasOwn(obj, part) ? obj[part] : undefined
    if (typeof next !== 'object' || next === null) {
      next = {}
      Object.defineProperty(obj, part, { value: next, enumerable: true, writable: true, configurable: true })
    }
    obj = next as Record<string, unknown>
  }
  const last = e.path.at(-1)!
  if (e.remove) delete obj[last]
  else Object.defineProperty(obj, last, { value: e.value, enumerable: true, writable: true, configurable: true })
}
const mutatedRule = fc.array(edit, { minLength: 1, maxLength: 4 }).map((edits) => {
  const r = clone(VALID_RULE) as Record<string, unknown>
  for (const e of edits) applyEdit(r, e)
  return r
})
const mutatedDetector = fc.array(edit, { minLength: 1, maxLength: 4 }).map((edits) => {
  const d = clone(VALID_DETECTOR) as Record<string, unknown>
  for (const e of edits) applyEdit(d, e)
  return d
})
const celInRule = fc.record({ field: fc.constantFrom('condition', 'output', 'exceptions'), text: fc.oneof(celText, templateText) }).map(({ field, text }) => ({ ...clone(VALID_RULE), [field]: field === 'exceptions' ? [text] : field === 'output' ? text : text }))

// --- checks

/** Compiled rules that passed the loader: they go through the event fuzzing below. */
const compiledRules: Rule[] = []

function compileChecked<T>(compile: (raw: unknown, file: string) => T, raw: unknown): T | undefined {
  const started = performance.now()
  try {
    return compile(raw, 'fuzz.yaml')
  } catch (err) {
    if (!(err instanceof DefinitionError)) surprises.record(err, raw)
    else if (!err.message.startsWith('fuzz.yaml')) surprises.record(new Error(`DefinitionError without its file: ${err.message}`), raw)
    return undefined
  } finally {
    const ms = performance.now() - started
    if (ms > SLOW_MS) surprises.record(new Error(`compiling took ${Math.round(ms)} ms`), raw)
  }
}

let fileCounter = 0
function readDirectoryChecked(texts: string[]): void {
  const d = join(dir, `defs-${fileCounter++ % 4}`)
  rmSync(d, { recursive: true, force: true })
  mkdirSync(d)
  texts.forEach((text, i) => writeFileSync(join(d, `${i}.yaml`), text))
  for (const [kind, compile] of [['rule', compileRule], ['detector', compileDetector]] as const) {
    try {
      const { errors } = readDefinitionDirectory(d, kind, compile as (raw: unknown, file: string) => { id: string })
      for (const e of errors) {
        if (!(e instanceof DefinitionError)) surprises.record(e, texts)
        // The loader turns any exception into "cannot read: ..."; on files it just wrote, that is a hidden crash.
        else if (/: cannot read: /.test(e.message)) surprises.record(new Error(`crash reported as a read error: ${e.message.slice(0, 200)}`), texts)
      }
    } catch (err) {
      surprises.record(err, texts)
    }
  }
}

// --- events

// JSON texts, parsed afresh for every use (no value is shared, and a "__proto__" key stays an own key as in a parsed event).
const evil = fc.constantFrom('{"toString":1}', '{"toString":1,"valueOf":1}', '{"__proto__":"x"}', '{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"polluted":1}}}', '[]', '{}', 'null', '1e308', '-0', '18446744073709551616', `"${'x'.repeat(10_000)}"`, '["a",{"toString":1}]', 'true').map((j) => JSON.parse(j) as unknown)
const eventField = fc.constantFrom('user', 'user.username', 'user.groups', 'user.extra', 'impersonatedUser', 'impersonatedUser.username', 'sourceIPs', 'userAgent', 'objectRef', 'objectRef.resource', 'objectRef.subresource', 'objectRef.namespace', 'objectRef.name', 'objectRef.apiGroup', 'responseStatus', 'responseStatus.code', 'requestObject', 'requestObject.spec', 'requestObject.spec.containers', 'responseObject', 'responseObject.metadata', 'stageTimestamp', 'requestReceivedTimestamp', 'annotations', 'requestURI', '__proto__', 'constructor')
const eventEdit = fc.record({ path: eventField, value: fc.oneof(evil, fc.jsonValue({ maxDepth: 3 })) })
const baseEvent = fc.record({
  verb: fc.constantFrom('create', 'update', 'patch', 'get', 'list', 'delete', 'watch', ''),
  resource: fc.constantFrom('pods', 'secrets', 'clusterrolebindings', 'roles', 'deployments', 'serviceaccounts', 'nodes', 'configmaps', 'x'),
  subresource: fc.constantFrom(undefined, 'exec', 'token', 'status', 'ephemeralcontainers'),
  // what an exec runs (execCommand): well-formed, malformed escapes, too long, too many
  query: fc.constantFrom('', '?command=sh&stdin=true&tty=true', '?command=tar&command=cf&command=-&command=%2F', '?command=cat+%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken', '?command=%ZZ%&command=&command', `?command=${'%41'.repeat(5000)}`, `?${'command=sh&'.repeat(500)}stdin=1`),
  namespace: fc.constantFrom(undefined, 'prod', 'kube-system', 'default'),
  user: fc.constantFrom('alice', 'admin', 'system:anonymous', 'system:serviceaccount:kube-system:x', 'system:node:n1'),
  stage: fc.constantFrom('ResponseComplete', 'RequestReceived', 'ResponseStarted', 'Panic'),
  code: fc.constantFrom(200, 201, 403, 404, 500),
  privileged: fc.boolean(),
  containers: fc.nat(50),
  time: fc.integer({ min: 1_700_000_000_000, max: 1_800_000_000_000 }),
})
const hostileEvent = fc.tuple(baseEvent, fc.array(eventEdit, { maxLength: 4 })).map(([b, edits]) => {
  const pod = { kind: 'Pod', apiVersion: 'v1', metadata: { name: 'p', namespace: b.namespace }, spec: { hostNetwork: b.privileged, containers: Array.from({ length: b.containers }, (_, i) => ({ name: `c${i}`, image: 'x', securityContext: { privileged: b.privileged } })) } }
  const e: Record<string, unknown> = {
    kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'RequestResponse', auditID: `id-${b.time}`, stage: b.stage, verb: b.verb,
    requestURI: `/api/v1/namespaces/${b.namespace}/${b.resource}${b.query}`, user: { username: b.user, groups: ['system:authenticated'] }, sourceIPs: ['10.0.0.1'], userAgent: 'kubectl',
    objectRef: { resource: b.resource, subresource: b.subresource, namespace: b.namespace, name: 'p', apiVersion: 'v1' },
    responseStatus: { code: b.code }, requestObject: pod, responseObject: pod,
    requestReceivedTimestamp: new Date(b.time).toISOString(), stageTimestamp: new Date(b.time).toISOString(),
  }
  for (const ed of edits) applyEdit(e, { path: ed.path.split('.'), value: structuredClone(ed.value), remove: false })
  // Events come from JSON.parse: the same own keys (a "__proto__" key included), no prototypes smuggled in.
  return JSON.stringify(e)
})

const builtin = loadRuleSet([BUILTIN_RULES_DIR])
const detectors = new Detectors({ builtin: true, dirs: [] })
let fuzzedSet: RuleSet | undefined

function inspectChecked(line: string): void {
  const decoded = toAuditEvent(JSON.parse(line))
  if (!('event' in decoded)) return
  const event: AuditEvent = decoded.event
  for (const [name, inspect] of [
    ['built-in rules', (ev: AuditEvent, out: RuleFinding[]) => builtin.inspect(ev, out)],
    ['fuzzed rules', (ev: AuditEvent, out: RuleFinding[]) => fuzzedSet?.inspect(ev, out)],
    ['built-in detectors', (ev: AuditEvent, out: RuleFinding[]) => detectors.inspect(ev, out)],
  ] as const) {
    const started = performance.now()
    try {
      const out: RuleFinding[] = []
      inspect(event, out)
      for (const f of out) if (typeof f.message !== 'string' || Object.values(f.details).some((v) => typeof v !== 'string')) throw new Error(`${name}: a finding with a non-string message or detail`)
    } catch (err) {
      surprises.record(err, { inspector: name, event: line.slice(0, 400) })
    }
    const ms = performance.now() - started
    if (ms > SLOW_MS) surprises.record(new Error(`${name} took ${Math.round(ms)} ms on one event`), line.slice(0, 400))
  }
}

const properties: Array<{ name: string; ciRuns: number; share: number; arb: fc.Arbitrary<unknown>; run: (v: never) => void }> = [
  {
    name: 'definition/rule-values',
    ciRuns: 2500,
    share: 0.3,
    arb: fc.oneof(mutatedRule, celInRule, fc.anything({ maxDepth: 2 })),
    run: (raw: unknown) => {
      const rule = compileChecked(compileRule, raw)
      if (rule && compiledRules.length < 300) compiledRules.push(rule)
    },
  },
  {
    name: 'definition/detector-values',
    ciRuns: 2000,
    share: 0.15,
    arb: fc.oneof(mutatedDetector, fc.anything({ maxDepth: 2 })),
    run: (raw: unknown) => void compileChecked(compileDetector, raw),
  },
  {
    name: 'definition/directory-files',
    ciRuns: 300,
    share: 0.2,
    arb: fc.array(fc.oneof(
      mutatedRule.map((r) => { try { return stringify(r) } catch { return 'x: [' } }),
      mutatedDetector.map((d) => { try { return stringify([d, d]) } catch { return '{' } }),
      fc.array(fc.constantFrom('id: a\n', '---\n', '- ', '&a ', '*a\n', '<<: *a\n', '<<: *nowhere\n', '__proto__: {}\n', 'condition: "', '{{', '  ', '\n', '!!binary x\n', '%YAML 1.2\n', 'a: &a [*a]\n'), { maxLength: 20 }).map((p) => p.join('')),
    ), { minLength: 1, maxLength: 3 }),
    run: (texts: string[]) => readDirectoryChecked(texts),
  },
  {
    name: 'definition/inspect-hostile-events',
    ciRuns: 2500,
    share: 0.35,
    arb: hostileEvent,
    run: (line: string) => {
      fuzzedSet ??= new RuleSet(compiledRules.filter((r) => r.enabled))
      inspectChecked(line)
    },
  },
]

for (const p of properties) {
  t.test(p.name, async (t) => {
    let executions = 0
    const started = performance.now()
    fc.assert(fc.property(p.arb, (v) => {
      executions++
      p.run(v as never)
    }), fuzzParameters(p.ciRuns, 9 * p.share, p.share))
    t.comment(executionsLine(p.name, executions, performance.now() - started))
    if (p.name === 'definition/rule-values') t.comment(`${compiledRules.length} fuzzed rules compiled; they run in the event fuzzing`)
    t.ok(executions > 0)
  })
}

t.test('hostile definitions, each with its outcome', async (t) => {
  const rule = (over: Record<string, unknown>) => ({ ...clone(VALID_RULE), ...over })
  const detector = (over: Record<string, unknown>) => ({ ...clone(VALID_DETECTOR), ...over })
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['detector key __proto__', () => compileDetector(detector({ key: ['__proto__'] }), 'f.yaml'), /key: "__proto__" is not a key field/],
    ['detector key toString', () => compileDetector(detector({ key: ['toString'] }), 'f.yaml'), /key: "toString" is not a key field/],
    ['detector firstSeen constructor', () => compileDetector(detector({ trigger: { firstSeen: 'constructor' } }), 'f.yaml'), /trigger.firstSeen: expected a field name/],
    ['rule with a __proto__ field', () => compileRule(JSON.parse('{"id":"x","title":"t","severity":"low","__proto__":{"polluted":1}}'), 'f.yaml'), /unknown field "__proto__"/],
    ['condition nested 300 deep', () => compileRule(rule({ condition: `${'('.repeat(300)}true${')'.repeat(300)}` }), 'f.yaml'), /./],
    ['an unknown function', () => compileRule(rule({ condition: 'system("rm")' }), 'f.yaml'), /unknown function system/],
    ['a regex that does not compile', () => compileRule(rule({ condition: "event.verb.matches('[')" }), 'f.yaml'), /invalid regular expression/],
    ['a BigInt severity (no YAML parser of ours makes one)', () => compileRule(rule({ severity: 10n }), 'f.yaml'), /severity: expected one of/],
    ['an expression over the limit', () => compileRule(rule({ condition: `event.verb == "${'a'.repeat(5000)}"` }), 'f.yaml'), /condition: .*(limit|longer)/],
  ]
  for (const [name, run, expected] of cases) {
    let outcome: string
    try {
      run()
      outcome = 'compiled'
    } catch (err) {
      outcome = `${(err as Error).name}: ${(err as Error).message}`
    }
    if (name === 'condition nested 300 deep') t.ok(outcome === 'compiled' || outcome.startsWith('DefinitionError'), `${name}: ${outcome.slice(0, 160)}`)
    else t.match(outcome, new RegExp(`^DefinitionError: .*${expected.source}`), `${name}: ${outcome.slice(0, 160)}`)
  }
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution')
})

// Found by this fuzzing: Detectors.inspect throws on a non-string field. Unreachable through the pipeline since the
// decoder checks every field's type (toAuditEvent, used above), so it should not show; kept as a todo if it does.
const KNOWN = [
  { match: /Cannot convert object to primitive value[\s\S]*detectors\.ts/, reason: 'agent/anomaly/detectors.ts keyOf (and String(event.user.username) for unanswered): a non-string event field (e.g. user.username = {"toString":1}) throws TypeError out of Detectors.inspect' },
]

t.test('no surprises: only DefinitionError, inspect never throws, no pollution', async (t) => {
  const entries = surprises.entries(KNOWN)
  for (const s of entries) t.fail(`${s.kind} (${s.count}×)\ninput: ${s.input}\n${s.stack}`, s.todo ? { todo: s.todo } : {})
  t.equal(entries.filter((s) => !s.todo).length, 0, 'no unexpected exception')
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution')
})
