// The read path over real HTTP: who may read (401/403/200), what a bad filter gets
// (400 naming the parameter), that values never become SQL, that every query is
// logged with the reader's name and never the token, and that nothing writes;
// on a directory store and on PostgreSQL, with the same tests.
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { parseReaders, ReadersError, newToken } from '../../collector/readers.ts'
import { startCollector } from '../../collector/server.ts'
import { encodePushBatchRequest, PUSH_BATCH_PATH } from '../../proto/wire.ts'
import { runCli, waitFor } from '../e2e/processes.ts'
import { Chain, generatedBatches, post, testKey, trustOf } from './fixtures.ts'
import { freshStore, postgresServer, STORE_KINDS, type StoreKind } from './stores.ts'

const key = testKey()
const AUDITOR = 'auditor-token-3f9c1b7e'
const OTHER = 'metrics-token-a81d44c0'
const hash = (s: string) => createHash('sha256').update(s).digest('hex')
const readersText = `# role  sha256 of the token  name
auditor sha256:${hash(AUDITOR)} alice@example.com
metrics   sha256:${hash(OTHER)}   prometheus
`
const data = generatedBatches({ events: 600, perBatch: 200, key })

/** A collector on a fresh store of this kind holding `data`; `dir` is a directory for the test's own files. */
async function collector(t: Test, kind: StoreKind, withReaders = true) {
  const logs: string[] = []
  const logger = pino({ level: 'info' }, new Writable({ write(chunk, _e, cb) { logs.push(chunk.toString()); cb() } }))
  const store = await freshStore(t, kind)
  const c = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: store, trustedKeys: trustOf(key), logger, ...(withReaders ? { readers: parseReaders(readersText) } : {}) })
  t.teardown(() => c.close())
  await post(c.url, PUSH_BATCH_PATH, encodePushBatchRequest(data.chains[0]!.sealed))
  await c.indexer?.idle()
  return { ...c, store, dir: t.testdir(), logs }
}

/** What the index holds, to show that queries write nothing: the SQLite file's bytes, or the index tables' rows. */
async function indexContents(kind: StoreKind, store: string): Promise<unknown> {
  if (kind === 'file') return readFileSync(join(store, 'index.sqlite'))
  const tables = ['indexed_batches', 'events', 'event_groups', 'findings'].map((table) => `(SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM auditrail.${table} x) AS ${table}`)
  return (await postgresServer()).admin(new URL(store).pathname.slice(1), `SELECT ${tables.join(', ')}`)
}

async function get(url: string, path: string, token?: string, init: RequestInit = {}) {
  const res = await fetch(new URL(path, url), { ...init, headers: token ? { authorization: `Bearer ${token}` } : {} })
  return { status: res.status, headers: res.headers, text: await res.text() }
}

t.test('the readers file holds hashes, never tokens, and says what is wrong', async (t) => {
  t.throws(() => parseReaders('auditor s3cr3t-token alice\n', 'readers.txt'), new ReadersError("readers.txt line 1: expected 'ROLE sha256:HEX NAME' (the SHA-256 of the token, never the token itself; 'auditrail collector token --name NAME' prints a line)"))
  t.throws(() => parseReaders(`auditor sha256:${hash('a')} alice\nauditor sha256:${hash('b')} alice\n`), /line 2: reader alice appears twice/)
  t.throws(() => parseReaders(`auditor sha256:${hash('a')} alice\nauditor sha256:${hash('a')} bob\n`), /line 2: this token hash is already given/)
  t.throws(() => parseReaders('auditor sha256:abc alice\n'), /64 lowercase hex digits/)
  const { token, line } = newToken('auditor', 'carol')
  const readers = parseReaders(`${line}\n`)
  t.same(readers.identify(token), { name: 'carol', role: 'auditor' })
  t.notOk(line.includes(token))
  t.equal(readers.identify(`${token}x`), undefined)
})


for (const kind of STORE_KINDS) {
  t.test(`${kind} store: no readers file: the query API is off and says how to turn it on`, async (t) => {
    const c = await collector(t, kind, false)
    const res = await get(c.url, '/v1/events', AUDITOR)
    t.equal(res.status, 404)
    t.match(JSON.parse(res.text).error, /start the collector with --readers FILE/)
  })

  t.test(`${kind} store: 401 without a token or with an unknown one, 403 for a role that may not read, 200 for an auditor`, async (t) => {
    const c = await collector(t, kind)
    const none = await get(c.url, '/v1/events')
    t.equal(none.status, 401)
    t.match(none.headers.get('www-authenticate'), /^Bearer/)
    t.match(JSON.parse(none.text).error, /missing bearer token/)
    const basic = await fetch(new URL('/v1/events', c.url), { headers: { authorization: 'Basic YWxpY2U6c2VjcmV0' } })
    t.equal(basic.status, 401)
    const unknown = await get(c.url, '/v1/events', 'not-a-token-anyone-has')
    t.equal(unknown.status, 401)
    t.match(JSON.parse(unknown.text).error, /unknown bearer token/)
    const wrongRole = await get(c.url, '/v1/findings', OTHER)
    t.equal(wrongRole.status, 403)
    t.match(JSON.parse(wrongRole.text).error, /prometheus has role metrics, which may not read findings; the auditor role may/)
    const ok = await get(c.url, '/v1/events?limit=5', AUDITOR)
    t.equal(ok.status, 200)
    t.equal(ok.headers.get('content-type'), 'application/x-ndjson')
    t.equal(ok.text.trim().split('\n').length, 5)
    t.ok(ok.headers.get('auditrail-next-cursor'), 'more pages: a cursor')
    const findings = await get(c.url, '/v1/findings', AUDITOR)
    t.equal(findings.status, 200)

    // The query log: who, what, how many; never a token, not even a refused one.
    const logs = c.logs.join('')
    for (const token of [AUDITOR, OTHER, 'not-a-token-anyone-has', 'YWxpY2U6c2VjcmV0']) t.notOk(logs.includes(token), `token ${token.slice(0, 8)}… never logged`)
    const queries = c.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'query')
    t.match(queries[0], { reader: 'alice@example.com', role: 'auditor', kind: 'events', params: { limit: '5' }, results: 5, more: true, time: Number })
    t.match(queries[1], { reader: 'alice@example.com', kind: 'findings', results: Number })
    // Three 401s, throttled to one line (issue 20); the 403 names its reader.
    t.equal(c.logs.filter((l) => /query refused: not authenticated/.test(l)).length, 1)
    t.equal(c.logs.filter((l) => /query refused: role does not allow it/.test(l)).length, 1)
  })

  t.test(`${kind} store: a bad filter gets 400 naming the parameter`, async (t) => {
    const c = await collector(t, kind)
    const cases: Array<[string, RegExp]> = [
      ['frobnicate=1', /bad parameter frobnicate: unknown parameter; known: user, group/],
      ['code=abc', /bad parameter code: "abc" is not an HTTP status code/],
      ['since=yesterday', /bad parameter since: "yesterday" is neither RFC 3339/],
      ['until=2026-11-25', /bad parameter until: /],
      ['since=2026-02-30T00:00:00Z', /bad parameter since: "2026-02-30T00:00:00Z" is not a real date and time \(2026-02 has 28 days/],
      ['since=2028-02-30T00:00:00Z', /bad parameter since: .*2028-02 has 29 days/],
      ['until=2026-13-01T00:00:00Z', /bad parameter until: .*months run 01 to 12/],
      ['until=2026-04-31T10:00:00Z', /bad parameter until: .*2026-04 has 30 days/],
      ['since=2026-01-01T24:00:00Z', /bad parameter since: .*hours 00-23/],
      ['since=2026-01-01T10:00:00%2B24:00', /bad parameter since: .*not a real date/],
      ['since=2026-11-25T11:00:00Z&until=2026-11-25T10:00:00Z', /bad parameter until: must be after since/],
      ['limit=5000', /bad parameter limit: "5000" is not a whole number from 1 to 1000/],
      ['limit=0', /bad parameter limit/],
      ['severity=urgent', /bad parameter severity: "urgent" is not one of info, low, medium, high, critical/],
      ['cursor=bm9wZQ', /bad parameter cursor: not a cursor this collector gave out/],
      ['user=a&user=b', /bad parameter user: given more than once/],
      ['verb=', /bad parameter verb: empty value/],
      [`name=${'x'.repeat(2000)}`, /bad parameter name: value of 2000 characters/],
    ]
    for (const [qs, message] of cases) {
      const res = await get(c.url, `/v1/events?${qs}`, AUDITOR)
      t.equal(res.status, 400, qs.slice(0, 60))
      t.match(JSON.parse(res.text).error, message)
    }
  })

  t.test(`${kind} store: a flood of 401s and of pushes cut off mid-body writes one warning per kind, not one per request`, async (t) => {
    const c = await collector(t, kind)
    const before = c.logs.length
    for (let i = 0; i < 30; i++) t.equal((await get(c.url, '/v1/events', i % 2 ? 'wrong-token' : undefined)).status, 401)
    for (let i = 0; i < 20; i++) {
      const socket = connect(c.port, '127.0.0.1')
      await once(socket, 'connect')
      socket.write(`POST ${PUSH_BATCH_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(1000)}`)
      await new Promise((r) => setTimeout(r, 10))
      socket.destroy()
    }
    await waitFor('the collector to count the aborted pushes', () => (c.stats().rejected.canceled ?? 0) === 20, 5000, 20)
    const lines = c.logs.slice(before)
    t.equal(lines.filter((l) => /query refused: not authenticated/.test(l)).length, 1, 'one line for 30 refused queries')
    t.equal(lines.filter((l) => /client closed the connection/.test(l)).length, 1, 'one line for 20 aborted pushes')
    t.equal(lines.length, 2, lines.join(''))
  })

  t.test(`${kind} store: a parameter that may hold a secret is never echoed, neither in the answer nor in the log`, async (t) => {
    const c = await collector(t, kind)
    const secret = 'art_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
    const byValue = await get(c.url, `/v1/events?user=alice&access_token=${secret}`, AUDITOR)
    t.equal(byValue.status, 400)
    t.match(JSON.parse(byValue.text).error, /bad parameter access_token: unknown parameter/)
    const byName = await get(c.url, `/v1/events?${secret}`, AUDITOR)
    t.equal(byName.status, 400)
    t.match(JSON.parse(byName.text).error, /a parameter name of 47 characters, not repeated here/)
    for (const text of [byValue.text, byName.text, ...c.logs]) t.notOk(text.includes(secret.slice(4)), 'the secret is nowhere')
    const logged = c.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'query rejected: bad parameter')
    t.same(logged[0].params, { user: 'alice' }, 'known filters are logged with their values')
  })

  t.test(`${kind} store: values are parameters, never SQL; nothing reads outside the store; nothing writes`, async (t) => {
    const c = await collector(t, kind)
    const indexBefore = await indexContents(kind, c.store)
    for (const evil of ["' OR 1=1 --", 'x"; DROP TABLE events; --', "alice@example.com' UNION SELECT * FROM streams --"]) {
      const res = await get(c.url, `/v1/events?user=${encodeURIComponent(evil)}`, AUDITOR)
      t.equal(res.status, 200)
      t.equal(res.text, '', `no rows for ${evil}`)
    }
    const stream = await get(c.url, `/v1/events?stream=${encodeURIComponent('../../etc')}`, AUDITOR)
    t.equal(stream.status, 200)
    t.equal(stream.text, '', 'a stream filter is only compared, never a path')
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const res = await get(c.url, '/v1/events', AUDITOR, { method })
      t.equal(res.status, 405, `${method} refused`)
      t.equal(res.headers.get('allow'), 'GET')
    }
    const all = await get(c.url, '/v1/events?limit=1000', AUDITOR)
    t.equal(all.text.trim().split('\n').length, 600, 'everything is still there')
    t.same(await indexContents(kind, c.store), indexBefore, 'the index is unchanged by queries')
  })

  t.test(`${kind} store: defect 5: an event no Date can print and a line broken between JSON tokens leave every page whole`, async (t) => {
    const c = await collector(t, kind)
    // Signed by a trusted key, as the issue found: no timestamps in a batch created at -9e15 ms, and a raw newline (and CR) between tokens.
    const hostile = new Chain('node-z', key).next([
      '{"kind":"Event","auditID":"no-time","verb":"get"}',
      '{"kind":"Event",\n"auditID":"split",\r\n"verb":"get","stageTimestamp":"2026-11-25T10:00:00Z"}',
    ], { createdUnixMs: -9e15 })
    t.equal((await post(c.url, PUSH_BATCH_PATH, encodePushBatchRequest([hostile]))).status, 200)
    await c.indexer?.idle()
    for (const path of ['/v1/events?limit=1000', '/v1/events?stream=node-z', '/v1/events?verb=get&limit=3', '/v1/events?auditId=split']) {
      const res = await get(c.url, path, AUDITOR)
      t.equal(res.status, 200, `${path}: ${res.text.slice(0, 200)}`)
      const lines = res.text.split('\n').slice(0, -1)
      t.ok(lines.every((l) => JSON.parse(l)), `${path}: every line is one JSON result`)
    }
    const page = (await get(c.url, '/v1/events?stream=node-z', AUDITOR)).text.trim().split('\n').map((l) => JSON.parse(l))
    t.same(page.map((r) => [r.event.auditID, r.time]), [['no-time', '1970-01-01T00:00:00.000Z'], ['split', '2026-11-25T10:00:00.000Z']])

    // U+0000 in a value (PostgreSQL text cannot hold it) and a status code past 32 bits: stored, indexed and found,
    // never a batch that fails to store and comes back forever. The value is asked for as it is written.
    const odd = new Chain('node-y', key).next(['{"kind":"Event","auditID":"nul","verb":"get","user":{"username":"a\\u0000b"},"responseStatus":{"code":9007199254740991},"stageTimestamp":"2026-11-25T10:00:00Z"}'])
    t.equal((await post(c.url, PUSH_BATCH_PATH, encodePushBatchRequest([odd]))).status, 200)
    await c.indexer?.idle()
    const nul = (await get(c.url, `/v1/events?user=${encodeURIComponent('a\u0000b')}`, AUDITOR)).text.trim().split('\n').map((l) => JSON.parse(l))
    t.same(nul.map((r) => r.event.auditID), ['nul'], 'found by the user name with its U+0000')
    t.same((await get(c.url, '/v1/events?user=ab', AUDITOR)).text, '', 'and not by another name')

    // The CLI, over HTTP and from the store directory, reads the same pages.
    const tokenFile = join(c.dir, 'token')
    writeFileSync(tokenFile, AUDITOR)
    for (const source of [['--url', c.url, '--token-file', tokenFile], ['--store', c.store]]) {
      const json = await runCli(['query', ...source, '--stream', 'node-z', '--json'])
      t.equal(json.code, 0, json.stderr)
      t.same(json.stdout.toString().trim().split('\n').map((l) => JSON.parse(l).event.auditID), ['no-time', 'split'])
      const table = await runCli(['query', ...source, '--limit', '1000'])
      t.equal(table.code, 0, table.stderr)
    }
  })

  t.test(`${kind} store: finding groups: one line per incident with its extent; a group\'s events and findings on request; paging by group`, async (t) => {
    const groupKey = testKey()
    const c = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: await freshStore(t, kind), trustedKeys: trustOf(groupKey), readers: parseReaders(readersText) })
    t.teardown(() => c.close())
    const line = (i: number) => JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', auditID: `grp-${i}`, stage: 'ResponseComplete', verb: 'get', user: { username: 'carol' }, objectRef: { resource: 'secrets', namespace: 'ns', name: `s${i}` }, stageTimestamp: `2026-11-25T10:00:0${i}.000000Z` })
    const finding = (recordIndex: number, group: string | undefined, message: string, severity: 'medium' | 'high' = 'high') =>
      ({ recordIndex, source: 'detector' as const, id: 'secret-read-burst', severity, message, auditId: 'x', details: (group ? { group } : {}) as Record<string, string> })
    const chain = new Chain('node-g', groupKey)
    chain.next([line(0), line(1), line(2)], { findings: [finding(0, 'g1', '1 of the burst', 'medium'), finding(1, 'g1', '2 of the burst'), finding(2, undefined, 'ungrouped')] })
    chain.next([line(3), line(4)], { findings: [finding(0, 'g1', 'the burst reached 3'), finding(1, 'g2', 'another incident')] })
    await post(c.url, PUSH_BATCH_PATH, encodePushBatchRequest(chain.sealed))
    await c.indexer?.idle()

    const groups = (await get(c.url, '/v1/finding-groups', AUDITOR)).text.trim().split('\n').map((l) => JSON.parse(l))
    t.equal(groups.length, 3)
    t.match(groups[0], { group: 'g1', finding: 'secret-read-burst', source: 'detector', severity: 'high', count: 3, message: 'the burst reached 3', firstSeen: '2026-11-25T10:00:00.000Z', lastSeen: '2026-11-25T10:00:03.000Z' })
    t.same(groups[0].auditIds, ['grp-0', 'grp-1', 'grp-3'], 'the audit IDs of its events, in order')
    t.match(groups[1], { count: 1, message: 'ungrouped', auditIds: ['grp-2'] }, 'a finding that names no group is a group of its own')
    t.match(groups[2], { group: 'g2', count: 1 })

    const events = (await get(c.url, '/v1/events?findingGroup=g1', AUDITOR)).text.trim().split('\n').map((l) => JSON.parse(l))
    t.same(events.map((e) => e.event.auditID), ['grp-0', 'grp-1', 'grp-3'], 'a group\'s events, each with its proof coordinates')
    t.ok(events.every((e) => e.findings.some((f: { group?: string }) => f.group === 'g1')))
    const findings = (await get(c.url, '/v1/findings?findingGroup=g1&severity=high', AUDITOR)).text.trim().split('\n').map((l) => JSON.parse(l))
    t.same(findings.map((f) => f.finding.message), ['2 of the burst', 'the burst reached 3'], 'filters select the findings')

    const first = await get(c.url, '/v1/finding-groups?limit=1', AUDITOR)
    const cursor = first.headers.get('auditrail-next-cursor')
    t.ok(cursor)
    const second = await get(c.url, `/v1/finding-groups?limit=5&cursor=${cursor}`, AUDITOR)
    t.same(second.text.trim().split('\n').map((l) => JSON.parse(l).group), groups.slice(1).map((g) => g.group), 'the next page continues after the last group')
    t.equal((await get(c.url, '/v1/finding-groups', OTHER)).status, 403, 'a role that may not read findings may not read their groups')
  })
}
