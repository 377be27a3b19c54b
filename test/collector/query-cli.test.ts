// `auditrail query`, `auditrail verify --event`, `auditrail collector reindex` and
// `collector token` as a user runs them: the binary in a child process, on a
// directory store and on PostgreSQL alike.
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import t, { type Test } from 'tap'
import { parseReaders } from '../../collector/readers.ts'
import { startCollector } from '../../collector/server.ts'
import { readSegment } from '../../collector/store/file-store.ts'
import { verifyEvent } from '../../collector/verify.ts'
import { encodePushBatchRequest, PUSH_BATCH_PATH } from '../../proto/wire.ts'
import { MAIN } from '../e2e/processes.ts'
import { generatedBatches, post, testKey, trustOf } from './fixtures.ts'
import { freshStore, postgresServer, STORE_KINDS, type StoreKind } from './stores.ts'

const key = testKey()
const trusted = trustOf(key)
const data = generatedBatches({ events: 1200, perBatch: 100, key, streams: ['node-a', 'node-b'] })

function auditrail(args: string[], stdin = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d))
  child.stderr.on('data', (d: Buffer) => (stderr += d))
  child.stdin.end(stdin)
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })))
}

/** A store of this kind with both streams pushed through a collector (closed again unless `keepOpen`); `index: false` writes no index. */
async function store(t: Test, kind: StoreKind, keepOpen = false, index = true) {
  const dir = t.testdir()
  const pub = join(dir, 'node.pub.pem')
  writeFileSync(pub, key.publicKey.export({ type: 'spki', format: 'pem' }))
  const token = 'cli-test-token-5d0e'
  const readersFile = join(dir, 'readers')
  const { createHash } = await import('node:crypto')
  writeFileSync(readersFile, `auditor sha256:${createHash('sha256').update(token).digest('hex')} cli-tester\n`)
  writeFileSync(join(dir, 'token'), `${token}\n`)
  const storeDir = kind === 'file' ? join(dir, 'store') : await freshStore(t, kind)
  const c = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir, trustedKeys: trustOf(key), index, ...(index ? { readers: parseReaders(readFileSync(readersFile, 'utf8')) } : {}) })
  for (const chain of data.chains) await post(c.url, PUSH_BATCH_PATH, encodePushBatchRequest(chain.sealed))
  await c.indexer?.idle()
  if (keepOpen) t.teardown(() => c.close())
  else await c.close()
  return { dir, storeDir, pub, url: c.url, tokenFile: join(dir, 'token') }
}

for (const kind of STORE_KINDS) {
  t.test(`${kind} store: query the store or a collector: same answers, table or JSON lines, pages by cursor`, async (t) => {
    const s = await store(t, kind, true)
    const fromStore = await auditrail(['query', '--store', s.storeDir, '--user', 'alice@example.com', '--json', '--limit', '1000'])
    t.equal(fromStore.code, 0, fromStore.stderr)
    const rows = fromStore.stdout.trim().split('\n').map((l) => JSON.parse(l))
    t.ok(rows.length > 5)
    t.ok(rows.every((r) => r.event.user.username === 'alice@example.com'))
    const fromUrl = await auditrail(['query', '--url', s.url, '--token-file', s.tokenFile, '--user', 'alice@example.com', '--json', '--limit', '1000'])
    t.equal(fromUrl.code, 0, fromUrl.stderr)
    t.equal(fromUrl.stdout, fromStore.stdout, 'the collector and the store directory answer alike')

    const table = await auditrail(['query', '--store', s.storeDir, '--severity', 'high', '--limit', '3'])
    t.equal(table.code, 0, table.stderr)
    const lines = table.stdout.trim().split('\n')
    t.match(lines[0], /^TIME +EVENT \(STREAM:SEQ:INDEX\) +USER +VERB +RESOURCE +NAMESPACE\/NAME +CODE +FINDINGS$/)
    t.equal(lines.length, 4)
    t.match(lines[1], /^2026-11-25T10:\d\d:\d\d\.\d{3}Z +node-[ab]:\d+:\d+ +.*(secret-read-by-human|pod-exec|rbac-binding-change)\((high|critical)\)/)
    const cursor = /more results: repeat with --cursor (\S+)/.exec(table.stderr)?.[1]
    t.ok(cursor, 'the next page is announced on stderr')
    const next = await auditrail(['query', '--store', s.storeDir, '--severity', 'high', '--limit', '3', '--cursor', cursor!, '--json'])
    const all = await auditrail(['query', '--store', s.storeDir, '--severity', 'high', '--limit', '6', '--json'])
    t.same(next.stdout.trim().split('\n'), all.stdout.trim().split('\n').slice(3), 'the second page continues the first')

    const findings = await auditrail(['query', '--url', s.url, '--token-file', s.tokenFile, '--findings', '--each', '--finding', 'pod-exec', '--limit', '2'])
    t.equal(findings.code, 0, findings.stderr)
    t.match(findings.stdout, /^TIME +EVENT \(STREAM:SEQ:INDEX\) +SEVERITY +FINDING +USER/)
    t.match(findings.stdout, /high +pod-exec/)
    const groups = await auditrail(['query', '--url', s.url, '--token-file', s.tokenFile, '--findings', '--finding', 'pod-exec', '--limit', '2'])
    t.equal(groups.code, 0, groups.stderr)
    t.match(groups.stdout, /^FIRST SEEN +LAST SEEN +COUNT +SEVERITY +FINDING +GROUP +MESSAGE\n/, 'without --each, one row per finding group')
    t.match(groups.stdout, /\n2026-11-25T\S+ +2026-11-25T\S+ +1 +high +rule:pod-exec /, 'a finding its agent did not group is a group of its own')

    const bad = await auditrail(['query', '--store', s.storeDir, '--since', 'yesterday'])
    t.equal(bad.code, 2)
    t.match(bad.stderr, /--since: "yesterday" is neither RFC 3339/)
    const badRemote = await auditrail(['query', '--url', s.url, '--token-file', s.tokenFile, '--severity', 'urgent'])
    t.equal(badRemote.code, 1)
    t.match(badRemote.stderr, /the collector answered 400: bad parameter severity/)
    writeFileSync(join(s.dir, 'wrong'), 'nope\n')
    const denied = await auditrail(['query', '--url', s.url, '--token-file', join(s.dir, 'wrong')])
    t.equal(denied.code, 1)
    t.match(denied.stderr, /the collector answered 401: unknown bearer token/)
    const both = await auditrail(['query', '--url', s.url, '--store', s.storeDir])
    t.equal(both.code, 2)
    t.match(both.stderr, /either --url URL .* or --store DIR/)
  })

  t.test(`${kind} store: verify --event proves one event; a flipped byte in its batch, or in the batch before, fails`, async (t) => {
    const s = await store(t, kind)
    const query = await auditrail(['query', '--store', s.storeDir, '--stream', 'node-a', '--severity', 'low', '--limit', '1000', '--json'])
    // An event inside the chain: a batch before it and one after.
    const line = query.stdout.trim().split('\n').find((l) => JSON.parse(l).sequence > 1 && JSON.parse(l).sequence < 6)!
    const row = JSON.parse(line)
    t.ok(row.findings.length > 0, `event ${row.stream}:${row.sequence}:${row.recordIndex}`)
    const spec = `${row.stream}:${row.sequence}:${row.recordIndex}`
    const good = await auditrail(['verify', s.storeDir, '--trust', s.pub, '--event', spec])
    t.equal(good.code, 0, good.stdout + good.stderr)
    t.match(good.stdout, new RegExp(`^ok   event ${spec}\\n.*signature by key ${key.keyId} hold.*\\n.*record ${row.recordIndex}: an event line.*\\n.*link back: prev_digest equals the digest of sequence ${row.sequence - 1}.*\\n.*link forward: sequence ${row.sequence + 1}`))
    const piped = await auditrail(['verify', s.storeDir, '--trust', s.pub, '--event', '-'], query.stdout)
    t.match(piped.stdout, new RegExp(`ok   event ${spec}\n`))
    t.equal(piped.code, 0, piped.stdout)

    // The query's event altered on the way: the coordinates hold, the event does not.
    const forged = JSON.stringify({ ...row, event: { ...row.event, verb: 'get' } })
    const mismatch = await auditrail(['verify', s.storeDir, '--trust', s.pub, '--event', '-'], `${forged}\n`)
    t.equal(mismatch.code, 1)
    t.match(mismatch.stdout, /FAIL event .*: the event given is not the one stored/)
    // Flipped bytes in a database are the store tests' (the database refuses the UPDATE that would flip them).
    if (kind !== 'file') return

    const segmentFile = join(s.storeDir, 'streams', 'node-a', readdirSync(join(s.storeDir, 'streams', 'node-a'))[0]!)
    const entries: Array<{ offset: number; length: number }> = []
    for await (const item of readSegment(segmentFile)) if (item.kind === 'entry') entries.push({ offset: item.offset, length: item.bytes.length })
    const original = readFileSync(segmentFile)
    const flip = (sequence: number, fixCrc: boolean) => {
      const bytes = Buffer.from(original)
      const e = entries[sequence - 1]!
      bytes[e.offset + 8 + 200] = bytes[e.offset + 8 + 200]! ^ 0x01
      if (fixCrc) bytes.writeUInt32BE(crc32(bytes.subarray(e.offset + 8, e.offset + 8 + e.length)), e.offset + 4)
      writeFileSync(segmentFile, bytes)
    }
    flip(row.sequence, false)
    const altered = await auditrail(['verify', s.storeDir, '--trust', s.pub, '--event', spec])
    t.equal(altered.code, 1)
    t.match(altered.stdout, /FAIL event .* \(segment \d{20}\.seg, byte \d+\): altered or truncated entry .*crc32 mismatch/)
    // The rest in-process (same function the command runs; a process start costs a second).
    const at = { stream: row.stream, sequence: row.sequence, recordIndex: row.recordIndex }
    flip(row.sequence, true)
    t.match((await verifyEvent(s.storeDir, trusted, at)).problem?.reason, new RegExp(`^bad seal on sequence ${row.sequence}: signature does not verify`))
    flip(row.sequence - 1, true)
    t.match((await verifyEvent(s.storeDir, trusted, at)).problem?.reason, new RegExp(`^bad seal on sequence ${row.sequence - 1}: signature`))
    flip(row.sequence + 1, true)
    t.match((await verifyEvent(s.storeDir, trusted, at)).problem?.reason, new RegExp(`^bad seal on sequence ${row.sequence + 1}: signature`))
    writeFileSync(segmentFile, original)
    t.equal((await verifyEvent(s.storeDir, trusted, at)).ok, true, 'the original bytes pass again')
    t.match((await verifyEvent(s.storeDir, trusted, { ...at, sequence: 9999 })).problem?.reason, /sequence 9999 is not stored/)
    t.match((await verifyEvent(s.storeDir, trusted, { ...at, recordIndex: 5000 })).problem?.reason, /has 100 records; there is no record 5000/)
    const malformed = await auditrail(['verify', s.storeDir, '--trust', s.pub, '--event', 'node-a:0'])
    t.equal(malformed.code, 2)
    t.match(malformed.stderr, /is not STREAM:SEQUENCE:INDEX/)
  })
}

t.test('collector reindex rebuilds the index; collector token prints a token and its readers line', async (t) => {
  const s = await store(t, 'file')
  const before = await auditrail(['query', '--store', s.storeDir, '--resource', 'secrets', '--json', '--limit', '1000'])
  const reindex = await auditrail(['collector', 'reindex', '--store', s.storeDir])
  t.equal(reindex.code, 0, reindex.stderr)
  t.match(reindex.stdout, /reindexed .*: 2 streams, 12 batches, 1200 events in \d+ ms/)
  const after = await auditrail(['query', '--store', s.storeDir, '--resource', 'secrets', '--json', '--limit', '1000'])
  t.equal(after.stdout, before.stdout)
  t.ok(before.stdout.length > 0)

  const token = await auditrail(['collector', 'token', '--name', 'dana'])
  t.equal(token.code, 0, token.stderr)
  const [, secret, line] = /^token: +(\S+)\nreaders line: (.*)\n$/.exec(token.stdout) ?? []
  t.same(parseReaders(`${line}\n`).identify(secret!), { name: 'dana', role: 'auditor' })

  const noIndex = await auditrail(['query', '--store', t.testdir(), '--user', 'x'])
  t.equal(noIndex.code, 1)
  t.match(noIndex.stderr, /no index at .*; run 'auditrail collector reindex --store DIR'/)
})

t.test('collector reindex --store URL indexes the batches a database holds without index rows, once', async (t) => {
  const s = await store(t, 'postgres', false, false)
  const database = new URL(s.storeDir).pathname.slice(1)
  const count = async () => Number((await (await postgresServer()).admin<{ n: string }>(database, 'SELECT count(*) AS n FROM auditrail.events'))[0]!.n)
  t.equal(await count(), 0, 'a collector without the index wrote no index rows')
  const empty = await auditrail(['query', '--store', s.storeDir, '--resource', 'secrets', '--json', '--limit', '1000'])
  t.equal(empty.stdout, '', 'so a query finds nothing yet')
  const [first, second] = await Promise.all([1, 2].map(() => auditrail(['collector', 'reindex', '--store', s.storeDir])))
  t.equal(first!.code, 0, first!.stderr)
  t.equal(second!.code, 0, second!.stderr)
  const indexed = [first!, second!].map((r) => Number(/: (\d+) batches without index rows indexed, (\d+) events/.exec(r.stdout)?.[1]))
  t.equal(indexed[0]! + indexed[1]!, 12, `two at once: every batch indexed by one of them (${indexed.join(' + ')})`)
  t.equal(await count(), 1200, 'each event once')
  const again = await auditrail(['collector', 'reindex', '--store', s.storeDir])
  t.match(again.stdout, /: 0 batches without index rows indexed, 0 events/)
  const found = await auditrail(['query', '--store', s.storeDir, '--resource', 'secrets', '--json', '--limit', '1000'])
  t.equal(found.code, 0, found.stderr)
  const rows = found.stdout.trim().split('\n').map((l) => JSON.parse(l))
  t.ok(rows.length > 5 && rows.every((r) => r.event.objectRef.resource === 'secrets'), `${rows.length} events on secrets`)
})
