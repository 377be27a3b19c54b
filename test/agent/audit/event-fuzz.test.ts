// Hostile input: mutated real audit lines, random bytes, deep nesting and
// prototype keys go through the decoder and the redactor. Neither may throw
// (the redactor only with UnscannableLine), and a redacted line stays JSON.
// Seeded, so a failure replays.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'
import t from 'tap'
import { decodeAuditLine } from '../../../agent/audit/event.ts'
import { createRedactor, UnscannableLine } from '../../../agent/redact/redactor.ts'

const SEED = 20261125
let state = SEED
const rand = () => {
  state = (state + 0x6d2b79f5) >>> 0
  let x = state
  x = Math.imul(x ^ (x >>> 15), x | 1)
  x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
  return ((x ^ (x >>> 14)) >>> 0) / 4294967296
}
const int = (n: number) => Math.floor(rand() * n)

const real = gunzipSync(readFileSync(fileURLToPath(new URL('../../fixtures/apiserver-v1.26/sample.jsonl.gz', import.meta.url)))).toString().split('\n').filter((l) => l.length > 0 && l.length < 20_000)
const redact = createRedactor({ salt: Buffer.from('fuzz') })

function mutate(line: Buffer): Buffer {
  const out = Buffer.from(line)
  switch (int(5)) {
    case 0: // flip bytes
      for (let k = 0; k < 1 + int(4); k++) out[int(out.length)] = int(256)
      return out
    case 1: // cut short
      return out.subarray(0, int(out.length))
    case 2: // splice in a hostile fragment
      {
        const frags = ['{"__proto__":{"polluted":1}}', '"\\ud800"', '1e999999', '-0', '[[[[[[[[[[', '"\\u0000"', '{"objectRef":{"resource":"secrets"}}', 'null', '\xff\xfe']
        const at = int(out.length)
        return Buffer.concat([out.subarray(0, at), Buffer.from(frags[int(frags.length)]!, 'latin1'), out.subarray(at)])
      }
    case 3: // random bytes
      return Buffer.from(Array.from({ length: int(300) }, () => int(256)))
    default: // a secret event with a hostile body
      return Buffer.from(`{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get","user":{},"objectRef":{"resource":"secrets"${int(2) ? ',"subresource":"token"' : ''}},"responseObject":${'['.repeat(int(300))}{"data":{"k":"v${int(9)}"}}${']'.repeat(int(300))}}`)
  }
}

t.test(`30,000 hostile lines (seed ${SEED}): the decoder and the redactor never throw; redacted lines stay JSON`, async (t) => {
  let events = 0
  let unparsed = 0
  let redacted = 0
  let refused = 0
  for (let n = 0; n < 30_000; n++) {
    const line = mutate(Buffer.from(real[int(real.length)]!))
    let result
    try {
      result = decodeAuditLine(line)
    } catch (err) {
      t.fail(`decoder threw on case ${n}: ${(err as Error).message}`)
      continue
    }
    if ('unparsed' in result) {
      unparsed++
      if (typeof result.unparsed !== 'string' || result.unparsed.length === 0) t.fail(`case ${n}: empty reason`)
      continue
    }
    events++
    try {
      const r = redact(line, result.event)
      if (r) {
        redacted++
        JSON.parse(r.line.toString())
      }
    } catch (err) {
      if (err instanceof UnscannableLine) refused++
      else t.fail(`case ${n}: redactor threw ${(err as Error).name}: ${(err as Error).message}`)
    }
  }
  t.ok(events > 1000 && unparsed > 1000, `${events} events, ${unparsed} unparsed`)
  t.ok(redacted > 0 && refused > 0, `${redacted} redacted, ${refused} refused as unscannable`)
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution')
})
