import t from 'tap'
import { decodeAuditLine, type AuditEvent } from '../../../agent/audit/event.ts'
import { createRedactor, UnscannableLine } from '../../../agent/redact/redactor.ts'

const redact = createRedactor({ salt: Buffer.from('test-salt'), extraPaths: { configmaps: ['requestObject.data.password'] } })
const run = (obj: unknown) => {
  const text = JSON.stringify(obj).replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`)
  const line = Buffer.from(text)
  return { text, result: redact(line, JSON.parse(text) as AuditEvent) }
}
const MARKER = /^auditrail:redacted:sha256:[0-9a-f]{16}$/

t.test('a SecretList response: every data value replaced, keys and every other byte kept', async (t) => {
  const event = {
    kind: 'Event', apiVersion: 'audit.k8s.io/v1', auditID: 'a', stage: 'ResponseComplete', verb: 'list', requestURI: '/api/v1/secrets?x=<1>&y',
    objectRef: { resource: 'secrets', apiVersion: 'v1' },
    responseObject: { kind: 'SecretList', items: [
      { metadata: { name: 'db', annotations: { note: 'päss <é>' } }, type: 'Opaque', data: { password: 'aHVudGVyMg==', user: 'YWRtaW4=' } },
      { metadata: { name: 'token' }, type: 'bootstrap.kubernetes.io/token', data: { 'token-secret': 'c2VjcmV0', password: 'aHVudGVyMg==' }, stringData: { extra: 'x"y\\z' } },
    ] },
  }
  const { text, result } = run(event)
  t.ok(result)
  const out = JSON.parse(result!.line.toString())
  t.same(result!.paths, ['responseObject.items[0].data.password', 'responseObject.items[0].data.user', 'responseObject.items[1].data.token-secret', 'responseObject.items[1].data.password', 'responseObject.items[1].stringData.extra'])
  for (const item of out.responseObject.items) for (const v of Object.values({ ...item.data, ...item.stringData })) t.match(v, MARKER)
  t.equal(out.responseObject.items[0].data.password, out.responseObject.items[1].data.password, 'equal values, equal markers')
  t.not(out.responseObject.items[0].data.password, out.responseObject.items[0].data.user)
  t.notMatch(result!.line.toString(), /aHVudGVyMg|c2VjcmV0|YWRtaW4/, 'no secret value left')
  // Everything but the values is byte for byte the same: put the originals back and compare.
  let restored = result!.line.toString()
  for (const v of ['"aHVudGVyMg=="', '"YWRtaW4="', '"c2VjcmV0"', '"aHVudGVyMg=="', JSON.stringify('x"y\\z')]) restored = restored.replace(/"auditrail:redacted:sha256:[0-9a-f]{16}"/, v)
  t.equal(restored, text)
  t.match(result!.line.toString(), /\\u003c1\\u003e\\u0026y/, 'the apiserver\'s escapes are kept as written')
})

t.test('a TokenRequest response loses its token; a Secret create loses its stringData', async (t) => {
  const token = run({ kind: 'Event', objectRef: { resource: 'serviceaccounts', subresource: 'token' }, responseObject: { status: { token: 'eyJhbGciOi.x.y', expirationTimestamp: '2026-11-25T11:00:00Z' } } })
  t.same(token.result!.paths, ['responseObject.status.token'])
  t.equal(JSON.parse(token.result!.line.toString()).responseObject.status.expirationTimestamp, '2026-11-25T11:00:00Z')
  const create = run({ kind: 'Event', objectRef: { resource: 'secrets' }, requestObject: { stringData: { 'tls.key': '-----BEGIN PRIVATE KEY-----' } } })
  t.same(create.result!.paths, ['requestObject.stringData.tls.key'])
  t.notMatch(create.result!.line.toString(), /BEGIN/)
})

t.test('configured extra paths; other resources are not touched', async (t) => {
  t.same(run({ objectRef: { resource: 'configmaps' }, requestObject: { data: { password: 'p', host: 'h' } } }).result!.paths, ['requestObject.data.password'])
  t.equal(run({ objectRef: { resource: 'pods' }, requestObject: { data: { password: 'p' } } }).result, undefined)
  t.equal(run({ objectRef: { resource: 'secrets' }, verb: 'delete' }).result, undefined, 'a secret event without values ships untouched')
})

t.test('a line nested too deep to scan is refused, not shipped raw', async (t) => {
  const deep = `{"objectRef":{"resource":"secrets"},"requestObject":{"data":{"k":"dg=="},"x":${'['.repeat(500)}${']'.repeat(500)}}}`
  let thrown: unknown
  try {
    redact(Buffer.from(deep), JSON.parse(deep))
  } catch (err) {
    thrown = err
  }
  t.ok(thrown instanceof UnscannableLine, String(thrown))
})

t.test('a line about a secret whose response body is not JSON is refused, not shipped raw', async (t) => {
  // The decoder leaves the body for later (audit/event.ts): the redactor has it parsed before it scans the text.
  const line = Buffer.from('{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get","user":{},"objectRef":{"resource":"secrets","name":"db"},"responseObject":{"data":{"password":"c2VjcmV0"},"x":},"requestReceivedTimestamp":"2026-12-07T06:00:00Z","stageTimestamp":"2026-12-07T06:00:00Z"}')
  const decoded = decodeAuditLine(line)
  if (!('event' in decoded)) return t.fail(decoded.unparsed)
  t.throws(() => redact(line, decoded.event), new UnscannableLine('its response body is not JSON'))
  const good = Buffer.from(line.toString().replace(',"x":}', '}'))
  const ok = decodeAuditLine(good)
  if (!('event' in ok)) return t.fail(ok.unparsed)
  t.match(redact(good, ok.event)?.line.toString(), /"password":"auditrail:redacted:sha256:[0-9a-f]{16}"/, 'the same line with a sound body is redacted')
})

t.test('keys spelled with escapes, duplicate keys and values that look like keys are still found', async (t) => {
  const redactText = (text: string) => redact(Buffer.from(text), JSON.parse(text) as AuditEvent)
  const escaped = redactText('{"objectRef":{"resource":"secrets"},"requestObject":{"\\u0064ata":{"password":"aHVudGVyMg=="}}}')
  t.same(escaped?.paths, ['requestObject.data.password'], 'a key written as \\u0064ata')
  t.notMatch(escaped!.line.toString(), /aHVudGVyMg/)
  // JSON.parse keeps the last of duplicate keys; the shipped bytes hold both, so both are scanned.
  const duplicate = redactText('{"objectRef":{"resource":"secrets"},"requestObject":{"data":{"a":"c2VjcmV0"}},"requestObject":null}')
  t.same(duplicate?.paths, ['requestObject.data.a'])
  t.notMatch(duplicate!.line.toString(), /c2VjcmV0/)
  const nested = redactText('{"objectRef":{"resource":"secrets"},"responseObject":{"items":[{"metadata":{"name":"data"},"data":{"x":"eA==","y":[1,{"z":"data"}]}}]},"n":-1.5e3}')
  t.same(nested?.paths, ['responseObject.items[0].data.x', 'responseObject.items[0].data.y'])
  t.same(JSON.parse(nested!.line.toString()).n, -1500, 'numbers after the redacted values are kept')
  t.equal(redactText('{"objectRef":{"resource":"secrets","name":"data"},"verb":"get","annotations":{"a":"b"}}'), undefined, 'the word data as a value: scanned, nothing to redact')
})
