import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'
import t from 'tap'
import { eventFields } from '../../collector/event-fields.ts'

const sample = gunzipSync(readFileSync(fileURLToPath(new URL('../fixtures/apiserver-v1.26/sample.jsonl.gz', import.meta.url)))).toString().split('\n').filter((l) => l.length > 0)

t.test('the fields of every real line are those of the line parsed whole; the response bodies are not parsed', async (t) => {
  const parse = JSON.parse
  let parsedWhole = 0
  const differ: string[] = []
  JSON.parse = ((text: string, reviver?: Parameters<typeof parse>[1]) => {
    if (typeof text === 'string' && text.includes(',"responseObject":')) parsedWhole++
    return parse(text, reviver)
  }) as typeof JSON.parse
  t.teardown(() => void (JSON.parse = parse))
  let withBody = 0
  for (const line of sample) {
    const e = parse(line)
    if (e.responseObject !== undefined) withBody++
    const f = eventFields(Buffer.from(line), 0)
    if (f?.auditId !== e.auditID || f?.verb !== e.verb || f?.user !== (e.user?.username ?? null) || f?.name !== (e.objectRef?.name ?? null) || f?.code !== (e.responseStatus?.code ?? null)) differ.push(e.auditID)
  }
  t.same(differ, [])
  t.ok(withBody > 100, `${withBody} lines with a body`)
  t.equal(parsedWhole, 0, 'no line was parsed with its body')
})

t.test('a body of any shape: a nested key of its name, bytes that are not JSON', async (t) => {
  const line = (body: string) =>
    `{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"alice"},"objectRef":{"resource":"widgets","name":"w"},"responseObject":${body},"requestReceivedTimestamp":"2026-12-07T06:00:00Z","stageTimestamp":"2026-12-07T06:00:01Z"}`
  t.match(eventFields(Buffer.from(line('{"spec":{"responseObject":{}}}')), 0), { auditId: 'a', user: 'alice', name: 'w' }, 'parsed whole')
  t.match(eventFields(Buffer.from(line('{"spec":}')), 0), { auditId: 'a', user: 'alice', name: 'w' }, 'indexed by what the agent inspected: the body is not read')
  t.equal(eventFields(Buffer.from(line('{}').slice(0, 50)), 0), undefined, 'a line that is not JSON')
})
