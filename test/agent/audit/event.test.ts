import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { isDeepStrictEqual } from 'node:util'
import { gunzipSync } from 'node:zlib'
import t from 'tap'
import { bodyIsJson, decodeAuditLine, execCommandOf, MAX_EXEC_ARG_LENGTH, MAX_EXEC_ARGS, type AuditEvent } from '../../../agent/audit/event.ts'

const base = { kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Metadata', auditID: 'a', stage: 'ResponseComplete', verb: 'get', requestURI: '/api/v1/pods', user: { username: 'alice', groups: ['dev'] }, sourceIPs: ['10.0.0.1'], objectRef: { resource: 'pods' }, responseStatus: { code: 200 } }
const decode = (v: unknown) => decodeAuditLine(Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)))

t.test('a well-formed event decodes; what every stage carries is required', async (t) => {
  t.ok('event' in decode(base))
  t.ok('event' in decode({ ...base, kind: undefined, apiVersion: 'audit.k8s.io/v1beta1', timestamp: '2018-10-25T13:58:49Z' }), 'old events (Falco\'s fixtures) decode')
  t.same(decode('not json'), { unparsed: 'not JSON' })
  t.same(decode(Buffer.from([0x7b, 0xff, 0x7d]).toString('latin1')), { unparsed: 'not JSON' })
  t.same(decodeAuditLine(Buffer.from([0x7b, 0xff, 0x7d])), { unparsed: 'invalid UTF-8' })
  t.same(decode([base]), { unparsed: 'not a JSON object' })
  t.same(decode({ ...base, kind: 'Pod' }), { unparsed: 'kind is "Pod", not Event' })
  t.same(decode({ ...base, auditID: 7 }), { unparsed: 'auditID missing or not a string' })
  t.same(decode({ ...base, user: 'alice' }), { unparsed: 'user missing or not an object' })
})

t.test('a field the agent reads, of the wrong type, makes the line unparsed and is named', async (t) => {
  const cases: [Record<string, unknown>, string][] = [
    [{ requestURI: 7 }, 'field requestURI: expected a string'],
    [{ stageTimestamp: 1 }, 'field stageTimestamp: expected a string'],
    [{ user: { username: 42 } }, 'field user.username: expected a string'],
    [{ user: { username: 'a', groups: 'system:masters' } }, 'field user.groups: expected a list of strings'],
    [{ impersonatedUser: 'admin' }, 'field impersonatedUser: expected an object'],
    [{ impersonatedUser: { groups: [1] } }, 'field impersonatedUser.groups: expected a list of strings'],
    [{ sourceIPs: '10.0.0.1' }, 'field sourceIPs: expected a list of strings'],
    [{ objectRef: null }, 'field objectRef: expected an object'],
    [{ objectRef: { resource: ['pods'] } }, 'field objectRef.resource: expected a string'],
    [{ objectRef: { resource: 'pods', namespace: { toString: 1 } } }, 'field objectRef.namespace: expected a string'],
    [{ responseStatus: { code: '200' } }, 'field responseStatus.code: expected a whole number'],
    [{ responseStatus: { code: 200.5 } }, 'field responseStatus.code: expected a whole number'],
    [{ annotations: { a: 1 } }, 'field annotations: expected an object of strings'],
  ]
  for (const [fields, reason] of cases) t.same(decode({ ...base, ...fields }), { unparsed: reason }, reason)
  t.ok('event' in decode({ ...base, requestObject: 'anything', responseObject: [1, { a: null }], user: { username: 'a', extra: 'x' } }), 'bodies and fields the agent does not read stay free-form')
})

// In the apiserver's order: the bodies, then requestReceivedTimestamp, stageTimestamp, annotations.
const withBody = (body: string, before = '') =>
  `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"alice"},"objectRef":{"resource":"widgets","name":"w"}${before},"responseObject":${body},"requestReceivedTimestamp":"2026-12-07T06:00:00.000000Z","stageTimestamp":"2026-12-07T06:00:00.001000Z","annotations":{"a":"b"}}`
const isLazy = (e: AuditEvent) => typeof Object.getOwnPropertyDescriptor(e, 'responseObject')?.get === 'function'

t.test('the response body is parsed when first read, then kept', async (t) => {
  const result = decodeAuditLine(Buffer.from(withBody('{"kind":"Widget","metadata":{"name":"w"},"spec":{"size":3}}')))
  if (!('event' in result)) return t.fail('not decoded')
  const e = result.event
  t.ok(isLazy(e), 'not parsed by decoding')
  t.equal(e.stageTimestamp, '2026-12-07T06:00:00.001000Z', 'the fields after the body are read')
  t.same(e.annotations, { a: 'b' })
  t.same(Object.keys(e), ['kind', 'apiVersion', 'level', 'auditID', 'stage', 'verb', 'user', 'objectRef', 'requestReceivedTimestamp', 'stageTimestamp', 'annotations', 'responseObject'])
  t.strictSame(e.responseObject, { kind: 'Widget', metadata: { name: 'w' }, spec: { size: 3 } })
  t.notOk(isLazy(e), 'parsed once, then a plain field')
  t.equal(e.responseObject, e.responseObject)
  t.ok(bodyIsJson(e))
})

t.test('every line of the real apiserver sample decodes to what JSON.parse makes of it', async (t) => {
  const file = fileURLToPath(new URL('../../fixtures/apiserver-v1.26/sample.jsonl.gz', import.meta.url))
  const lines = gunzipSync(readFileSync(file)).toString().split('\n').filter((l) => l.length > 0)
  let lazy = 0
  const differ: string[] = []
  for (const line of lines) {
    const result = decodeAuditLine(Buffer.from(line))
    if (!('event' in result)) return t.fail(`not decoded: ${result.unparsed}`)
    if (isLazy(result.event)) lazy++
    // JSON.stringify reads every field, the body too.
    if (!isDeepStrictEqual(JSON.parse(JSON.stringify(result.event)), JSON.parse(line))) differ.push(result.event.auditID)
  }
  t.ok(lazy > 100, `${lazy} of ${lines.length} bodies left for later`)
  t.same(differ, [], 'no event differs')
})

t.test('a cut that is not at the top level is not taken: the line is parsed whole', async (t) => {
  const cases = {
    'a body holding a key of that name': withBody('{"spec":{"a":1,"responseObject":{"b":2}}}'),
    'a request body holding one, no response body': withBody('{"x":1}').replace(',"responseObject":{"x":1}', ',"requestObject":{"a":1,"responseObject":{"b":2}}'),
    'an annotation key of the timestamp\'s name': withBody('{"x":1}').replace('{"a":"b"}', '{"a":"b","requestReceivedTimestamp":"c"}'),
    'keys sorted (a reformatted log)': JSON.stringify(Object.fromEntries(Object.entries(JSON.parse(withBody('{"x":1}'))).sort(([a], [b]) => (a < b ? -1 : 1)))),
  }
  for (const [name, line] of Object.entries(cases)) {
    const result = decodeAuditLine(Buffer.from(line))
    if (!('event' in result)) return t.fail(`${name}: not decoded`)
    t.strictSame(JSON.parse(JSON.stringify(result.event)), JSON.parse(line), name)
  }
})

t.test('a body that is not JSON reads as none, and says so; the rest of the event stands', async (t) => {
  const result = decodeAuditLine(Buffer.from(withBody('{"data":{"k":}')))
  if (!('event' in result)) return t.fail('not decoded')
  const e = result.event
  t.equal(e.verb, 'get')
  t.notOk(bodyIsJson(e), 'the body does not parse')
  t.equal(e.responseObject, undefined)
  t.notOk('responseObject' in e, 'no such field once read')
  t.same(decode(withBody('{"data":{"k":}').replace('"annotations":{"a":"b"}}', '"annotations":{"a":')), { unparsed: 'not JSON' }, 'a line cut short is not JSON')
})

t.test('execCommandOf: the command parameters of an exec URI, decoded, in order, bounded', async (t) => {
  const exec = (query: string, ref: Record<string, string> = { resource: 'pods', subresource: 'exec', namespace: 'prod', name: 'api-0' }): AuditEvent =>
    ({ ...base, verb: 'create', objectRef: ref, requestURI: `/api/v1/namespaces/prod/pods/api-0/exec${query}` }) as AuditEvent
  t.same(execCommandOf(exec('?command=sh&command=-c&command=cat+%2Fetc%2Fkubernetes%2Fadmin.conf+%7C+head&container=api&stdin=true&tty=true')), ['sh', '-c', 'cat /etc/kubernetes/admin.conf | head'], '+ is a space, %XX decoded, other parameters left out')
  t.same(execCommandOf(exec('?container=api&command=ls&stdout=true&command=-la')), ['ls', '-la'], 'every command parameter, wherever it stands')
  t.same(execCommandOf(exec('?command=&command=%ZZ%2')), ['', '%ZZ%2'], 'an empty argument is kept; a malformed escape stays as written')
  t.same(execCommandOf(exec('?container=api&stdin=true')), [], 'an exec without a command')
  t.same(execCommandOf(exec('')), [], 'an exec URI without a query')
  t.equal(execCommandOf(exec('?command=sh', { resource: 'pods', subresource: 'attach' })), undefined, 'attach runs no command')
  t.equal(execCommandOf({ ...base } as AuditEvent), undefined, 'not an exec')
  const many = execCommandOf(exec(`?${Array.from({ length: 10_000 }, (_, i) => `command=a${i}`).join('&')}`))!
  t.equal(many.length, MAX_EXEC_ARGS, 'at most MAX_EXEC_ARGS arguments')
  t.equal(many[MAX_EXEC_ARGS - 1], `a${MAX_EXEC_ARGS - 1}`, 'the first ones, in order')
  const long = execCommandOf(exec(`?command=${'%41'.repeat(100_000)}&command=next`))!
  t.same(long.map((a) => a.length), [MAX_EXEC_ARG_LENGTH, 4], 'a long argument is cut, the next still read')
})
