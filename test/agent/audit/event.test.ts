import t from 'tap'
import { decodeAuditLine } from '../../../agent/audit/event.ts'

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
