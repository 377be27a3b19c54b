import { appendFileSync, readdirSync, statSync, truncateSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import t, { type Test } from 'tap'
import { exportStream, RECORD_PREFIX } from '../../collector/export.ts'
import type { WireRecord } from '../../proto/wire.ts'
import { Chain, testKey } from './fixtures.ts'
import { storeHolding, STORE_KINDS, type StoreKind } from './stores.ts'

const key = testKey()

async function collect(dir: string, options: { stream?: string; records?: boolean } = {}): Promise<Buffer> {
  const out = new PassThrough()
  const chunks: Buffer[] = []
  out.on('data', (c: Buffer) => chunks.push(c))
  await exportStream(dir, { ...options, out })
  out.end()
  return Buffer.concat(chunks)
}

function storeWith(t: Test, kind: StoreKind, streams: Record<string, WireRecord[][]>): Promise<string> {
  return storeHolding(t, kind, Object.fromEntries(Object.entries(streams).map(([stream, batches]) => {
    const chain = new Chain(stream, key)
    return [stream, batches.map((records) => chain.next(records))]
  })), 4096)
}

// The same answers from both stores.
for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async (t) => {
    t.test('prints the stored lines byte for byte, in order, across segments', async (t) => {
      // lines as an apiserver may write them: UTF-8, not JSON, invalid UTF-8, long
      const lines = [
        Buffer.from('{"kind":"Event","auditID":"1","user":{"username":"zoë"}}'),
        Buffer.from('not json at all'),
        Buffer.from([0x7b, 0xff, 0xfe, 0x7d]),
        Buffer.from(`{"kind":"Event","big":"${'x'.repeat(10_000)}"}`),
      ]
      const batches: WireRecord[][] = []
      let offset = 0
      for (let b = 0; b < 20; b++) {
        batches.push(lines.map((line) => {
          const r: WireRecord = { offset, line }
          offset += line.length + 1
          return r
        }))
      }
      batches.splice(5, 0, []) // a heartbeat is not a line
      const dir = await storeWith(t, kind, { 'node-a': batches })
      const expected = Buffer.concat(Array.from({ length: 20 }, () => lines.flatMap((l) => [l, Buffer.from('\n')])).flat())
      t.same(await collect(dir), expected)
    })

    t.test('--records shows heartbeats and announces unparsed and redacted lines', async (t) => {
      const dir = await storeWith(t, kind, {
        'node-a': [
          [{ offset: 0, line: Buffer.from('{"a":1}') }],
          [],
          [
            { offset: 8, line: Buffer.from('#auditrail {"kind":"gap"}'), unparsedReason: 'not JSON' },
            { offset: 34, line: Buffer.from('{"b":2}'), redactedPaths: ['requestObject.data.token'] },
          ],
        ],
      })
      const plain = (await collect(dir)).toString()
      t.equal(plain, '{"a":1}\n#auditrail {"kind":"gap"}\n{"b":2}\n')
      const lines = (await collect(dir, { records: true })).toString().split('\n')
      t.equal(lines[0], '{"a":1}')
      t.same(JSON.parse(lines[1]!.slice(RECORD_PREFIX.length)), { kind: 'heartbeat', sequence: 2, createdUnixMs: 1_764_064_800_002 })
      t.same(JSON.parse(lines[2]!.slice(RECORD_PREFIX.length)), { kind: 'unparsed', sequence: 3, offset: 8, reason: 'not JSON' })
      t.equal(lines[3], '#auditrail {"kind":"gap"}', 'the unparsed line itself follows its announcement')
      t.same(JSON.parse(lines[4]!.slice(RECORD_PREFIX.length)), { kind: 'redacted', sequence: 3, offset: 34, paths: ['requestObject.data.token'] })
      t.equal(lines[5], '{"b":2}')
      t.equal(lines.length, 7)
    })

    // proto/wire.ts decodeRecord reads protobufjs's prototype default (line = []) for a record
    // whose oneof holds a gap or a quarantine, so those records come back as empty lines.
    t.test('gaps and quarantines are notes, not lines', async (t) => {
      const dir = await storeWith(t, kind, {
        'node-a': [[
          { offset: 8, gap: { path: '/var/log/audit.log', fromOffset: 8, toOffset: 100, reason: 'file shrank' } },
          { offset: 100, quarantine: { length: 5_000_000, sha256: Buffer.alloc(32, 0xab), reason: 'line over 4194304 bytes', storedAs: 'q/1' } },
        ]],
      })
      t.equal((await collect(dir)).toString(), '', 'no line')
      const lines = (await collect(dir, { records: true })).toString().split('\n')
      t.same(JSON.parse(lines[0]!.slice(RECORD_PREFIX.length)), { kind: 'gap', sequence: 1, offset: 8, path: '/var/log/audit.log', fromOffset: 8, toOffset: 100, reason: 'file shrank' })
      t.match(JSON.parse(lines[1]!.slice(RECORD_PREFIX.length)), { kind: 'quarantine', length: 5_000_000, sha256: 'ab'.repeat(32), storedAs: 'q/1' })
    })

    t.test('several streams: --stream is required and the error lists them', async (t) => {
      const dir = await storeWith(t, kind, { 'node-a': [[{ offset: 0, line: Buffer.from('a') }]], 'node-b': [[{ offset: 0, line: Buffer.from('b') }]] })
      await t.rejects(collect(dir), /holds 2 streams; choose one with --stream: node-a, node-b/)
      t.equal((await collect(dir, { stream: 'node-b' })).toString(), 'b\n')
      await t.rejects(collect(dir, { stream: 'node-c' }), /no stream "node-c"/)
    })
  })
}

t.test('a live store\'s last entry still being written ends the export there; the same cut inside an earlier segment is damage', async (t) => {
  const dir = await storeWith(t, 'file', { 'node-a': Array.from({ length: 12 }, (_, i) => [{ offset: i, line: Buffer.from(`{"n":${i},"pad":"${'p'.repeat(600)}"}`) }]) })
  const streamDir = join(dir, 'streams', 'node-a')
  const segments = readdirSync(streamDir).sort()
  t.ok(segments.length >= 2)
  const last = join(streamDir, segments.at(-1)!)
  // Half of an entry's header and bytes: what a reader sees between an append's writes.
  appendFileSync(last, Buffer.concat([Buffer.from([0, 0, 4, 0, 1, 2, 3, 4]), Buffer.alloc(100, 0x41)]))
  const lines = (await collect(dir)).toString().split('\n').filter(Boolean)
  t.equal(lines.length, 12, 'every complete entry, then the end')
  const first = join(streamDir, segments[0]!)
  truncateSync(first, statSync(first).size - 10)
  await t.rejects(collect(dir), /run 'auditrail verify'/)
})
