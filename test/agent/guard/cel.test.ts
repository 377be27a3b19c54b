import { RE2JS } from '@bufbuild/re2'
import t from 'tap'
import { decodeAuditLine, type AuditEvent } from '../../../agent/audit/event.ts'
import { CelCompileError, compileExpression, compilePredicate, compileText, evaluateToText } from '../../../agent/guard/cel.ts'

const event = (fields: Partial<AuditEvent> & Record<string, unknown>): AuditEvent => ({ auditID: 'a', stage: 'ResponseComplete', verb: 'get', user: { username: 'alice', groups: ['dev'] }, ...fields })

t.test('a compile error names the place in the expression', async (t) => {
  const cases: [string, RegExp, number, number][] = [
    ['event.verb ==', /found|expect/, 1, 12],
    ['event.verb == "get" &&\n  nosuch(event)', /unknown function nosuch\(\)/, 2, 3],
    ['evnt.verb == "get"', /unknown variable evnt: an expression reads event, object, name, target, podSpec, containers/, 1, 1],
    ['event.user.username.matches("(")', /invalid regular expression/, 1, 29],
  ]
  for (const [text, message, line, column] of cases) {
    const err = t.throws(() => compileExpression(text)) as CelCompileError
    t.ok(err instanceof CelCompileError, text)
    t.match(err.message, message, text)
    t.same([err.line, err.column], [line, column], `${text}: line and column`)
  }
  t.throws(() => compileExpression(`event.verb == "${'x'.repeat(5000)}"`), /limit is 4096/)
})

t.test('a condition that reads a missing field is false, never a throw', async (t) => {
  const p = compilePredicate('event.requestObject.spec.hostNetwork == true')
  t.equal(p(event({})), false)
  t.equal(p(event({ requestObject: 'not an object' })), false)
  t.equal(p(event({ requestObject: { spec: { hostNetwork: true } } })), true)
  t.equal(compilePredicate('event.responseStatus.code')(event({ responseStatus: { code: 200 } })), false, 'only exactly true fires')
  t.equal(compilePredicate('event.responseStatus.code == 403')(event({ responseStatus: { code: 403 } })), true, 'JSON numbers compare with int literals')
})

t.test('regular expressions run in linear time on hostile input', async (t) => {
  // A backtracking engine takes minutes on this (measured: 186 s); RE2 answers at once.
  const p = compilePredicate('event.user.username.matches("^(a+)+$")')
  t.equal(p(event({ user: { username: `${'a'.repeat(5000)}!` } })), false)
  t.equal(p(event({ user: { username: 'aaaa' } })), true)
})

t.test('a pattern is compiled once, not at every evaluation (one from event data too)', async (t) => {
  const compile = RE2JS.compile
  let compiled = 0
  RE2JS.compile = ((...args: Parameters<typeof compile>) => (compiled++, compile.apply(RE2JS, args))) as typeof compile
  t.teardown(() => void (RE2JS.compile = compile))
  const p = compilePredicate('event.user.username.matches("^sys(tem)?:[a-z]+-once$") || event.userAgent.matches(event.verb)')
  const answers = Array.from({ length: 99 }, (_, i) => p(event({ verb: `v${i % 3}`, userAgent: 'kubectl/v2' })))
  t.same(answers, Array.from({ length: 99 }, (_, i) => i % 3 === 2))
  t.equal(compiled, 4, 'the constant once, each of the three patterns from the events once')
  t.equal(p(event({ verb: '(', userAgent: 'kubectl/v2' })), false, 'a pattern from the event that does not compile is an error, so false')
})

t.test('object, podSpec and containers are derived from the event', async (t) => {
  const pod = { kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ name: 'a' }], initContainers: [{ name: 'i', securityContext: { privileged: true } }], ephemeralContainers: [{ name: 'e' }] } }
  const names = compileExpression('containers.map(c, c.name).join(",")')
  t.equal(evaluateToText(names, event({ verb: 'create', requestObject: pod })), 'a,i,e')
  const deployment = { kind: 'Deployment', metadata: { name: 'web' }, spec: { template: { spec: { hostPID: true, containers: [] } } } }
  t.equal(compilePredicate('podSpec.hostPID == true')(event({ verb: 'create', requestObject: deployment })), true)
  const cronJob = { kind: 'CronJob', spec: { jobTemplate: { spec: { template: { spec: { hostIPC: true } } } } } }
  t.equal(compilePredicate('podSpec.hostIPC == true')(event({ verb: 'create', requestObject: cronJob })), true)
  // The response is what was stored (a patch's request body is only the patch).
  const patched = event({ verb: 'patch', requestObject: { spec: { template: {} } }, responseObject: deployment })
  t.equal(compilePredicate('podSpec.hostPID == true')(patched), true)
  t.equal(compilePredicate('object.kind == "Deployment"')(patched), true)
  t.equal(compilePredicate('podSpec.hostPID == true')(event({ verb: 'create', requestObject: { kind: 'ConfigMap', data: {} } })), false)
  t.equal(compilePredicate('size(containers) == 0')(event({ verb: 'create', requestObject: { kind: 'Pod', spec: { containers: 'nope' } } })), true, 'a malformed list is no containers')
})

t.test('name and target: what a message says the request was about', async (t) => {
  const text = (expr: string, fields: Partial<AuditEvent> & Record<string, unknown>) => evaluateToText(compileExpression(expr), event(fields))
  t.equal(text('target', { objectRef: { resource: 'secrets', namespace: 'prod', name: 'db' } }), 'secrets prod/db')
  t.equal(text('target', { verb: 'list', objectRef: { resource: 'secrets', namespace: 'prod' } }), 'secrets in prod')
  t.equal(text('target', { verb: 'list', objectRef: { resource: 'secrets' } }), 'secrets')
  t.equal(text('target', { objectRef: { resource: 'pods', subresource: 'exec', namespace: 'd', name: 'p' } }), 'pods/exec d/p')
  t.equal(text('target', { verb: 'delete', objectRef: { resource: 'namespaces', namespace: 'foo', name: 'foo' } }), 'namespaces foo')
  t.equal(text('target', { requestURI: '/healthz' }), '/healthz')
  const created = { verb: 'create', objectRef: { resource: 'pods', namespace: 'd' }, requestObject: { kind: 'Pod', metadata: { generateName: 'web-7d4b9c-' } } }
  t.equal(text('name', created), 'web-7d4b9c-*', 'a generated name not known yet')
  t.equal(text('target', { ...created, responseObject: { kind: 'Pod', metadata: { name: 'web-7d4b9c-x2x9k' } } }), 'pods d/web-7d4b9c-x2x9k', 'the response knows the name')
  t.equal(text('object.metadata.name', { ...created, responseObject: { kind: 'Status', metadata: {}, code: 500 } }), undefined, 'a Status response is not the object')
})

t.test('the variables are derived when read: a name found in objectRef leaves the response body unparsed', async (t) => {
  const line = (name: string) =>
    `{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"create","user":{"username":"alice"},"objectRef":{"resource":"pods","namespace":"prod"${name}},"responseObject":{"kind":"Pod","metadata":{"name":"api-0","ownerReferences":[{"controller":true,"kind":"ReplicaSet","name":"api"}]},"spec":{"containers":[{"name":"c","securityContext":{"privileged":true}}]}},"requestReceivedTimestamp":"2026-12-07T06:00:00Z","stageTimestamp":"2026-12-07T06:00:00Z"}`
  const decoded = (name: string): AuditEvent => {
    const r = decodeAuditLine(Buffer.from(line(name)))
    if (!('event' in r)) throw new Error(r.unparsed)
    return r.event
  }
  const bodyRead = (e: AuditEvent) => typeof Object.getOwnPropertyDescriptor(e, 'responseObject')?.get !== 'function'
  const named = decoded(',"name":"api-0"')
  t.equal(evaluateToText(compileExpression('target'), named), 'pods prod/api-0')
  t.notOk(bodyRead(named), 'objectRef named it')
  const created = decoded('')
  t.equal(evaluateToText(compileExpression('target'), created), 'pods prod/api-0', 'a create names its object in the body')
  t.ok(bodyRead(created))
  const e = decoded(',"name":"api-0"')
  t.equal(compilePredicate('containers.exists(c, c.securityContext.privileged == true) && owner == "ReplicaSet/api" && podSpec.containers.size() == 1 && object.kind == "Pod"')(e), true, 'object, podSpec, containers and owner from the body')
  t.equal(compilePredicate('has(event.responseObject)')(decoded(',"name":"api-0"')), true)
  const broken = decodeAuditLine(Buffer.from(line(',"name":"api-0"').replace('"privileged":true', '"privileged":')))
  if (!('event' in broken)) return t.fail(broken.unparsed)
  t.equal(compilePredicate('has(event.responseObject)')(broken.event), false, 'a body that is not JSON is not there')
  t.equal(compilePredicate('"responseObject" in event')(broken.event), false, 'not even as a key')
  t.equal(evaluateToText(compileExpression('target'), broken.event), 'pods prod/api-0', 'the rest of the event is')
})

t.test('evaluateToText renders scalars and nothing else', async (t) => {
  const ev = event({ responseStatus: { code: 201 } })
  t.equal(evaluateToText(compileExpression('event.responseStatus.code'), ev), '201')
  t.equal(evaluateToText(compileExpression('event.user.username'), ev), 'alice')
  t.equal(evaluateToText(compileExpression('event.nothing'), ev), undefined)
  t.equal(evaluateToText(compileExpression('event.user.groups'), ev), undefined)
})

t.test('compileText reads a field of the event straight from the JSON, with the answer CEL gives', async (t) => {
  const hostile = JSON.parse('{"auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"x","__proto__":{"admin":true},"constructor":"c","groups":["g"]},"responseStatus":{"code":403,"status":null,"ratio":1.5,"ok":false},"objectRef":"not an object","annotations":{"k":"v"}}') as AuditEvent
  const texts = ['event.user.username', 'event.user.admin', 'event.user.__proto__', 'event.user.constructor', 'event.user.toString', 'event.user.groups', 'event.user.groups.length',
    'event.responseStatus.code', 'event.responseStatus.status', 'event.responseStatus.ratio', 'event.responseStatus.ok', 'event.responseStatus', 'event.objectRef.name', 'event.nothing.deeper',
    'event.annotations.k', 'event.verb', 'event.user.username + "!"', 'has(event.user.username)']
  for (const ev of [hostile, event({ responseStatus: { code: 201 } }), event({ user: 'a string' as never })]) {
    for (const text of texts) t.equal(compileText(text)(ev), evaluateToText(compileExpression(text), ev), `${text} on ${JSON.stringify(ev).slice(0, 60)}...`)
  }
  t.throws(() => compileText('event.user.'), CelCompileError, 'compile errors as for any expression')
})

t.test('event data is read through lazy views: own keys only, the same answers as plain JSON', async (t) => {
  const hostile = JSON.parse('{"auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"x","__proto__":{"admin":true},"constructor":"c"},"annotations":{"k":"v"}}') as AuditEvent
  t.equal(compilePredicate('has(event.user.admin)')(hostile), false, 'a __proto__ key is not a way in')
  t.equal(compilePredicate('event.user.constructor == "c"')(hostile), true, 'a key named constructor is just a key')
  t.equal(compilePredicate('has(event.toString)')(hostile), false, 'inherited properties are not fields')
  t.equal(compilePredicate('size(event.user) == 3 && "username" in event.user')(hostile), true)
  t.equal(compilePredicate('event.annotations.all(k, event.annotations[k] == "v")')(hostile), true)
  t.equal(compilePredicate('event.user.exists(k, k == "constructor")')(hostile), true)
})

t.test('an evaluation has a budget: nested comprehensions over huge lists stop, and rules count such an event as a match', async (t) => {
  const { CelBudgetExceeded } = await import('../../../agent/guard/cel.ts')
  const big = Array.from({ length: 10_000 }, (_, i) => ({ name: `c${i}` }))
  const ev = event({ verb: 'create', requestObject: { kind: 'Pod', metadata: { name: 'p' }, spec: { containers: big } } })
  const nested = compilePredicate('containers.exists(a, containers.exists(b, a.name == b.name && b.name == "none"))')
  const started = performance.now()
  t.throws(() => nested(ev), CelBudgetExceeded)
  t.ok(performance.now() - started < 30_000, 'it ends (10^8 steps unbudgeted)')
  t.equal(compilePredicate('containers.exists(c, c.name == "c9999")')(ev), true, 'one pass over 10,000 elements is within budget')
  const { loadRuleSet } = await import('../../../agent/guard/rule-set.ts')
  const dir = t.testdir({ 'r.yaml': 'id: costly\ntitle: Costly\nseverity: medium\nmatch:\n  verbs: [create]\n  resources: [pods]\n  codes: [201]\ncondition: containers.exists(a, containers.exists(b, a.name == b.name && b.name == "none"))\n' })
  const out: import('../../../agent/guard/rule-set.ts').RuleFinding[] = []
  loadRuleSet([dir]).inspect({ ...ev, objectRef: { resource: 'pods', namespace: 'd' }, responseStatus: { code: 201 } }, out)
  t.equal(out.length, 1)
  t.match(out[0], { id: 'costly', details: { overBudget: 'true' }, message: /too costly to evaluate .* counts as a match/ })
})

t.test('a condition that needs an address list is not evaluated without it (not even to run out of budget)', async (t) => {
  const { NetworkSet, setClusterNetworks, setKnownBadAddresses } = await import('../../../agent/guard/networks.ts')
  t.teardown(() => {
    setKnownBadAddresses(new NetworkSet([]))
    setClusterNetworks(new NetworkSet([]))
  })
  const big = Array.from({ length: 10_000 }, (_, i) => ({ name: `c${i}` }))
  const ev = event({ verb: 'create', sourceIPs: ['203.0.113.9'], requestObject: { kind: 'Pod', metadata: { name: 'p' }, spec: { containers: big } } })
  const costly = 'containers.exists(a, containers.exists(b, a.name == b.name && b.name == "none"))'
  const needsKnownBad = [
    `${costly} && event.sourceIPs.exists(ip, knownBadAddress(ip))`,
    `knownBadAddress(event.sourceIPs[0]) && ${costly}`,
    `event.sourceIPs.exists(ip, ip != "" && knownBadAddress(ip)) && ${costly}`,
  ]
  for (const text of needsKnownBad) t.equal(compilePredicate(text)(ev), false, `no list: false, unevaluated: ${text.slice(0, 60)}`)
  t.equal(compilePredicate(`event.sourceIPs.exists(ip, outsideClusterNetworks(ip)) && ${costly}`)(ev), false, 'the same for the cluster networks')
  // Not a conjunct of the condition: it is evaluated (and runs out of budget).
  const { CelBudgetExceeded } = await import('../../../agent/guard/cel.ts')
  for (const text of [`${costly} || knownBadAddress(event.sourceIPs[0])`, `!knownBadAddress(event.sourceIPs[0]) && ${costly}`, `event.sourceIPs.all(ip, knownBadAddress(ip)) || ${costly}`]) {
    t.throws(() => compilePredicate(text)(ev), CelBudgetExceeded, `evaluated: ${text.slice(-60)}`)
  }
  setKnownBadAddresses(new NetworkSet(['203.0.113.0/24']))
  setClusterNetworks(new NetworkSet(['10.0.0.0/8']))
  t.equal(compilePredicate('event.sourceIPs.exists(ip, knownBadAddress(ip))')(ev), true, 'with the list loaded, the same condition is evaluated')
  t.equal(compilePredicate('event.sourceIPs.exists(ip, outsideClusterNetworks(ip))')(ev), true)
  t.throws(() => compilePredicate(needsKnownBad[0]!)(ev), CelBudgetExceeded)
})
