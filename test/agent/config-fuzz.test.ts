// Fuzzing the agent's config loader (agent/config.ts): YAML-ish text from a
// grammar of hostile fragments, mutations of a valid configuration (wrong
// types, huge numbers, deep nesting, `__proto__` and `constructor` keys), and
// flag overrides. The loader may only succeed or throw ConfigError naming the
// file or the key, and nothing may pollute Object.prototype. Seeded
// (FUZZ_SEED); longer with FUZZ_SECONDS or `npm run fuzz -- --target config`.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import t from 'tap'
import { stringify } from 'yaml'
import { ConfigError, loadAgentConfig, type LoadOptions } from '../../agent/config.ts'
import { executionsLine, fuzzParameters, fuzzSettings, Surprises } from '../../scripts/fuzz.ts'

const dir = t.testdir()
const file = join(dir, 'agent.yaml')
const surprises = new Surprises()
const SLOW_MS = 2000
t.comment(`seed ${fuzzSettings().seed} (FUZZ_SEED to replay, FUZZ_SECONDS to run longer)`)

const VALID = {
  node: 'node-a',
  stateDir: '/var/lib/auditrail',
  tail: { path: '/var/log/kubernetes/audit/audit.log', maxLineBytes: '4MiB', pollInterval: '1s' },
  batch: { maxEvents: 2000, maxWait: '200ms' },
  collector: { url: 'https://collector.auditrail.svc:8443', timeout: '10s', retry: { initialDelay: '250ms', maxDelay: '5s' } },
  rules: { builtin: true, dirs: ['/etc/auditrail/rules'] },
  alert: { minSeverity: 'high', alertmanager: { url: 'http://alertmanager:9093' }, webhook: { url: 'https://hooks.example/x', format: 'array' } },
}
const KEYS = ['node', 'streamId', 'stateDir', 'logLevel', 'tail', 'path', 'startAt', 'maxLineBytes', 'maxOpenFiles', 'pollInterval', 'appendCheckInterval', 'quarantine', 'dir', 'maxBytes', 'batch', 'maxEvents', 'maxWait', 'heartbeatInterval', 'collector', 'url', 'timeout', 'caFile', 'allowInsecureHttp', 'retry', 'initialDelay', 'maxDelay', 'signing', 'keyFile', 'rules', 'builtin', 'dirs', 'alert', 'alertmanager', 'webhook', 'basicAuth', 'username', 'passwordFile', 'format']
const HOSTILE_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'polluted', '<<', '']

function pollutionCheck(input: unknown): void {
  for (const [name, proto] of [['Object', Object.prototype], ['Array', Array.prototype], ['Function', Function.prototype]] as const) {
    const own = Object.getOwnPropertyNames(proto).filter((n) => /polluted|^x$|^node$|^url$/.test(n))
    if (own.length > 0) {
      surprises.record(new Error(`${name}.prototype polluted with ${own.join(', ')}`), input)
      for (const n of own) delete (proto as Record<string, unknown>)[n]
    }
  }
}

/** Only ConfigError, naming the file (a file was given) or the flag's key. */
function load(options: LoadOptions, input: unknown): void {
  const started = performance.now()
  try {
    loadAgentConfig({ env: {}, ...options })
  } catch (err) {
    if (!(err instanceof ConfigError)) surprises.record(err, input)
    else if (options.file ? !err.message.startsWith(`config ${options.file}:`) : !/^(config: |flag for \S+: )/.test(err.message)) surprises.record(new Error(`ConfigError that names neither the file nor a key: ${err.message.slice(0, 200)}`), input)
  }
  const ms = performance.now() - started
  if (ms > SLOW_MS) surprises.record(new Error(`loading took ${Math.round(ms)} ms`), input)
  pollutionCheck(input)
}

// --- YAML-ish text from fragments

const fragment = fc.oneof(
  fc.constantFrom(...KEYS, ...HOSTILE_KEYS).map((k) => `${k}:`),
  fc.constantFrom(' ', '  ', '\n', '\n  ', '\n    ', '\t', '- ', '{', '}', '[', ']', ',', ': ', '"', "'", '#', '---\n', '...\n', '? ', '|\n', '>\n', '&a ', '*a', '&b ', '*b', '<<: *a', '!!str ', '!!int ', '!!binary ', '!!js/function ', '!!map ', '!!set ', '!!omap ', '%YAML 1.1\n', '%TAG ! tag:x,2000:\n', '\u0000', '\ufeff', '\r\n'),
  fc.constantFrom('true', 'false', 'null', '~', 'yes', '1e999', '-1e999', '.inf', '.nan', '0x7fffffffffffffff', '99999999999999999999999', '9007199254740993', '-0', '0o777', '1_000', '4MiB', '1e3MiB', '10s', '1.5h', '9999999999999h', 'https://[::1]:1', 'http://user:pw@h', 'javascript:alert(1)', '""'),
  fc.string({ maxLength: 8 }),
)
const yamlish = fc.array(fragment, { maxLength: 60 }).map((parts) => parts.join(''))

// --- mutations of the valid configuration

type Json = unknown
const hostileValue: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom(1e308, -1e308, 2 ** 53 + 1, Number.MAX_SAFE_INTEGER, -1, 0, 0.5, '1e999', 'NaN', '', ' ', null, true, [], {}, ['a', 1], 'https://x', '4GiB', '1000000h'),
  fc.anything({ maxDepth: 3, withBigInt: false, withBoxedValues: false, withDate: false, withMap: false, withSet: false, withTypedArray: false, withSparseArray: false, withNullPrototype: false }),
  fc.nat(200).map((depth) => {
    let v: Json = 'deep'
    for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { a: v }
    return v
  }),
)
const edit = fc.record({ path: fc.array(fc.constantFrom(...KEYS, ...HOSTILE_KEYS), { minLength: 1, maxLength: 4 }), value: hostileValue, remove: fc.boolean() })

function clone(v: Json): Json {
  return JSON.parse(JSON.stringify(v)) as Json
}

/** Sets a path as own properties, `__proto__` included (defineProperty, as a YAML parser would make it). */
function applyEdit(root: Record<string, unknown>, e: { path: string[]; value: Json; remove: boolean }): void {
  let obj: Record<string, unknown> = root
  for (const part of e.path.slice(0, -1)) {
    let next = Object.hasOwn(obj, part) ? obj[part] : undefined
    if (typeof next !== 'object' || next === null || Array.isArray(next)) {
      next = {}
      Object.defineProperty(obj, part, { value: next, enumerable: true, writable: true, configurable: true })
    }
    obj = next as Record<string, unknown>
  }
  const last = e.path.at(-1)!
  if (e.remove) delete obj[last]
  else Object.defineProperty(obj, last, { value: e.value, enumerable: true, writable: true, configurable: true })
}

const OVERRIDE_KEYS = ['node', 'collector.url', 'tail.path', 'tail.maxLineBytes', 'batch.maxWait', 'rules.dirs', 'rules.builtin', 'alert.minSeverity', 'collector.retry.maxDelay', '__proto__', '__proto__.polluted', 'constructor.prototype.polluted', 'tail.__proto__', 'tail.constructor', 'a..b', '.', '', 'tail', 'collector.retry', 'toString']

const properties: Array<{ name: string; ciRuns: number; share: number; arb: fc.Arbitrary<unknown>; run: (v: never) => void }> = [
  {
    name: 'config/yaml-ish-text',
    ciRuns: 2500,
    share: 0.4,
    arb: fc.oneof(yamlish, fc.tuple(fc.constant(stringify(VALID)), yamlish, fc.nat()).map(([valid, junk, at]) => valid.slice(0, at % valid.length) + junk + valid.slice(at % valid.length))),
    run: (text: string) => {
      writeFileSync(file, text)
      load({ file }, text)
    },
  },
  {
    name: 'config/mutated-valid-config',
    ciRuns: 2500,
    share: 0.4,
    arb: fc.tuple(fc.array(edit, { minLength: 1, maxLength: 4 }), fc.boolean()),
    run: ([edits, asJson]: [Array<{ path: string[]; value: Json; remove: boolean }>, boolean]) => {
      const doc = clone(VALID) as Record<string, unknown>
      for (const e of edits) applyEdit(doc, e)
      let text: string
      try {
        text = asJson ? JSON.stringify(doc) : stringify(doc, { aliasDuplicateObjects: false })
      } catch {
        return
      }
      writeFileSync(file, text)
      load({ file }, text)
    },
  },
  {
    name: 'config/overrides',
    ciRuns: 2000,
    share: 0.2,
    arb: fc.dictionary(fc.oneof(fc.constantFrom(...OVERRIDE_KEYS), fc.string({ maxLength: 12 })), fc.oneof(fc.string({ maxLength: 20 }), fc.boolean(), fc.constantFrom('1e999', '99999999999999999999MiB', 'https://h:1', 'true')), { maxKeys: 5 }),
    run: (overrides: Record<string, string | boolean>) => {
      const all = { node: 'n', 'collector.url': 'https://c:1', ...overrides }
      load({ overrides: all }, all)
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
    }), fuzzParameters(p.ciRuns, 8 * p.share, p.share))
    t.comment(executionsLine(p.name, executions, performance.now() - started))
    t.ok(executions > 0)
  })
}

t.test('hostile configurations, each with its outcome', async (t) => {
  const cases: Array<[string, string, RegExp | 'ok']> = [
    ['__proto__ at the top', 'node: n\ncollector: {url: "https://c:1"}\n__proto__: {polluted: 1}\n', /unknown key __proto__/],
    ['constructor.prototype', 'node: n\ncollector: {url: "https://c:1"}\nconstructor: {prototype: {polluted: 1}}\n', /unknown key constructor/],
    ['__proto__ in a section', 'node: n\ncollector: {url: "https://c:1", __proto__: {allowInsecureHttp: true}}\n', /unknown key collector.__proto__/],
    ['merge key from an alias', 'base: &b {polluted: 1}\nnode: n\n', /unknown key base/],
    ['a number beyond 2^53', 'node: n\ncollector: {url: "https://c:1"}\nbatch: {maxEvents: 9007199254740993}\n', /batch.maxEvents/],
    ['1e999 bytes', 'node: n\ncollector: {url: "https://c:1"}\ntail: {maxLineBytes: 1e999}\n', /tail.maxLineBytes/],
    ['a duration in 10^20 hours', 'node: n\ncollector: {url: "https://c:1"}\nbatch: {maxWait: 100000000000000000000h}\n', /batch.maxWait/],
    ['nesting 10,000 deep', `node: n\ncollector: {url: "https://c:1"}\ntail: ${'['.repeat(10_000)}${']'.repeat(10_000)}\n`, /not valid YAML/],
    ['a billion laughs', `a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n`, /config .*(alias|unknown key)/i],
    ['a NUL byte', 'node: "a\\0b"\ncollector: {url: "https://c:1"}\n', /streamId/],
    ['a duplicate key', 'node: a\nnode: b\n', /not valid YAML/],
    ['an alias without its anchor', '<<: *nowhere\nnode: n\n', /not valid YAML/],
  ]
  for (const [name, text, expected] of cases) {
    writeFileSync(file, text)
    let outcome: string
    try {
      loadAgentConfig({ file, env: {} })
      outcome = 'ok'
    } catch (err) {
      outcome = `${(err as Error).name}: ${(err as Error).message}`
    }
    if (expected === 'ok') t.equal(outcome, 'ok', name)
    else {
      t.match(outcome, /^ConfigError: /, `${name}: ConfigError`)
      t.match(outcome, expected, `${name}: ${outcome.slice(0, 160)}`)
    }
  }
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution')
})

// Bugs found and not yet fixed, reported as todos (none now: the alias errors of yaml's toJS, found here, are ConfigErrors since).
const KNOWN: Array<{ match: RegExp; reason: string }> = []

t.test('no surprises: only ConfigError naming the file or key, no pollution', async (t) => {
  for (const s of surprises.entries(KNOWN)) {
    t.fail(`${s.kind} (${s.count}×)\ninput: ${s.input}\n${s.stack}`, s.todo ? { todo: s.todo } : {})
  }
  t.equal(surprises.entries(KNOWN).filter((s) => !s.todo).length, 0, 'no exception other than ConfigError')
  t.equal(({} as Record<string, unknown>).polluted, undefined)
})
