import t from 'tap'
import { parseAuditLine, parseWithoutResponseBody } from '../../shared/audit-line.ts'

const line = (body: string, annotations = '{"a":"b"}') =>
  Buffer.from(`{"kind":"Event","auditID":"a","verb":"get","objectRef":{"resource":"widgets"},"responseObject":${body},"requestReceivedTimestamp":"2026-12-07T06:00:00Z","stageTimestamp":"2026-12-07T06:00:01Z","annotations":${annotations}}`)

t.test('the line without its body, and where the body is', async (t) => {
  const bytes = line('{"metadata":{"name":"w"},"spec":{"size":3}}')
  const cut = parseWithoutResponseBody(bytes)
  if (!cut) return t.fail('no cut')
  t.strictSame(cut.value, { kind: 'Event', auditID: 'a', verb: 'get', objectRef: { resource: 'widgets' }, requestReceivedTimestamp: '2026-12-07T06:00:00Z', stageTimestamp: '2026-12-07T06:00:01Z', annotations: { a: 'b' } })
  t.equal(bytes.toString('utf8', cut.bodyStart, cut.bodyEnd), '{"metadata":{"name":"w"},"spec":{"size":3}}')
  const wide = line('"\u00e9\u4e2d"')
  const wideCut = parseWithoutResponseBody(wide)!
  t.equal(wide.toString('utf8', wideCut.bodyStart, wideCut.bodyEnd), '"\u00e9\u4e2d"', 'byte offsets, whatever the characters')
})

t.test('no cut where it would not be at the top level, or there is no body where the apiserver puts it', async (t) => {
  t.equal(parseWithoutResponseBody(line('{"spec":{"x":1,"responseObject":{"y":2}}}')), undefined, 'a body holding a key of that name')
  t.equal(parseWithoutResponseBody(line('{"x":1}', '{"a":"b","requestReceivedTimestamp":"c"}')), undefined, 'an annotation of the timestamp\'s name')
  t.equal(parseWithoutResponseBody(Buffer.from('{"kind":"Event","requestReceivedTimestamp":"t","responseObject":{}}')), undefined, 'the body after the timestamp')
  t.equal(parseWithoutResponseBody(Buffer.from('{"kind":"Event","requestReceivedTimestamp":"t"}')), undefined, 'no body')
  t.equal(parseWithoutResponseBody(line('{"x":1}').subarray(0, 60)), undefined, 'a line cut short')
})

t.test('parseAuditLine: the cut when it holds, else the line whole, else nothing', async (t) => {
  const cut = parseAuditLine(line('{"metadata":{"name":"w"}}'))
  t.ok(cut && 'bodyStart' in cut, 'a body where the apiserver puts it: left unparsed')
  const nested = line('{"spec":{"x":1,"responseObject":{"y":2}}}')
  t.strictSame(parseAuditLine(nested), { value: JSON.parse(nested.toString()) }, 'no cut: parsed whole, body and all')
  t.equal(parseAuditLine(line('{"x":1}').subarray(0, 60)), undefined, 'not JSON')
})
