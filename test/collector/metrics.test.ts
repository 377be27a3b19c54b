// The collector's /metrics, scraped over HTTP from its own address after real
// traffic: each family present with the values the traffic implies, every
// metric documented, and Prometheus' own linter (promtool) silent.
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { readdir, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { startCollector, type CollectorOptions } from '../../collector/server.ts'
import { encodePushBatchRequest, GET_STREAM_HEAD_PATH, PUSH_BATCH_PATH, type SealedBatch } from '../../proto/wire.ts'
import { streamDir } from '../../collector/store/file-store.ts'
import { Chain, headRequest, post, testKey, trustOf } from './fixtures.ts'

const key = testKey()
const stranger = testKey()

/** On a fresh t.testdir() unless `options.storeDir` names one (t.testdir() empties the test's directory). */
async function collector(t: Test, options: Partial<CollectorOptions> = {}) {
  const c = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: options.storeDir ?? t.testdir(), trustedKeys: trustOf(key), metricsListen: '127.0.0.1:0', ...options })
  t.teardown(() => c.close())
  return c
}

function push(url: string, batches: SealedBatch[], headers: Record<string, string> = {}) {
  return post(url, PUSH_BATCH_PATH, encodePushBatchRequest(batches), headers)
}

async function scrape(url: string | undefined): Promise<string> {
  const res = await fetch(`${url}/metrics`)
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`)
  return res.text()
}

/** The value of one sample, by its name and labels as exposed; undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

t.test('after real traffic, /metrics counts it; every metric is documented; promtool has nothing to say', async (t) => {
  const c = await collector(t)
  const chain = new Chain('node-a', key)
  t.equal((await push(c.url, chain.grow(3))).status, 200)
  t.equal((await push(c.url, chain.sealed.slice(1, 3))).status, 200, 'two duplicates')
  const fork = new Chain('node-a', key)
  t.equal((await push(c.url, [fork.next(['another line'])])).status, 409, 'a fork')
  const gapped = new Chain('node-b', key)
  gapped.grow(1)
  t.equal((await push(c.url, gapped.grow(1))).status, 400, 'a gap')
  t.equal((await push(c.url, new Chain('node-c', stranger).grow(1))).status, 401, 'an untrusted key')
  t.equal((await post(c.url, GET_STREAM_HEAD_PATH, headRequest('node-a', key))).status, 200)
  t.equal((await post(c.url, PUSH_BATCH_PATH, Buffer.from('{}'), { 'content-type': 'text/plain' })).status, 415)
  t.equal((await post(c.url, '/no/such/procedure', Buffer.alloc(0))).status, 404)
  await c.indexer!.idle()

  const text = await scrape(c.metricsUrl)
  t.equal(sample(text, 'auditrail_collector_requests_total{procedure="PushBatch",protocol="connect",codec="proto",code="ok",http="1.1"}'), 2)
  t.equal(sample(text, 'auditrail_collector_requests_total{procedure="PushBatch",protocol="connect",codec="proto",code="already_exists",http="1.1"}'), 1)
  t.equal(sample(text, 'auditrail_collector_requests_total{procedure="PushBatch",protocol="connect",codec="other",code="unimplemented",http="1.1"}'), 1, 'an unsupported content type is counted, not named')
  t.equal(sample(text, 'auditrail_collector_requests_total{procedure="GetStreamHead",protocol="connect",codec="proto",code="ok",http="1.1"}'), 1)
  t.equal(sample(text, 'auditrail_collector_requests_total{procedure="other",protocol="connect",codec="proto",code="unimplemented",http="1.1"}'), 1, 'an unknown path is counted as other')
  t.equal(sample(text, 'auditrail_collector_request_duration_seconds_count{procedure="PushBatch"}'), 6)
  t.equal(sample(text, 'auditrail_collector_batches_accepted_total'), 3)
  t.equal(sample(text, 'auditrail_collector_batches_duplicate_total'), 2)
  t.equal(sample(text, 'auditrail_collector_batches_refused_total{reason="fork"}'), 1)
  t.equal(sample(text, 'auditrail_collector_batches_refused_total{reason="gap"}'), 1)
  t.equal(sample(text, 'auditrail_collector_batches_refused_total{reason="untrusted_key"}'), 1)
  t.equal(sample(text, 'auditrail_collector_records_stored_total{kind="event"}'), 3 * 3, 'Chain batches hold 3 event lines each')
  t.equal(sample(text, 'auditrail_collector_store_append_duration_seconds_count'), 3)
  t.ok(sample(text, 'auditrail_collector_stored_bytes_total')! > 0)
  t.ok(sample(text, 'auditrail_collector_received_bytes_total')! > sample(text, 'auditrail_collector_stored_bytes_total')!, 'every body is counted, refused ones too')
  t.equal(sample(text, 'auditrail_collector_streams'), 1)
  t.ok(sample(text, 'auditrail_collector_open_connections')! >= 0)
  t.equal(sample(text, 'auditrail_collector_index_lag_batches'), 0)
  t.equal(sample(text, 'auditrail_collector_index_lag_seconds'), 0)
  t.equal(sample(text, 'auditrail_collector_verify_duration_seconds_count{check="seal"}'), 3 + 2 + 1 + 1 + 1, 'every batch whose seal was checked')
  t.equal(sample(text, 'auditrail_collector_verify_duration_seconds_count{check="chain"}'), 3 + 2 + 1 + 1, 'every batch that reached the chain check (the untrusted one did not)')
  t.equal(sample(text, 'auditrail_collector_index_duration_seconds_count{source="live"}'), 3)
  t.equal(sample(text, 'auditrail_collector_streams_silent{minutes="5"}'), 0, 'node-a has just pushed')
  t.equal(sample(text, 'auditrail_collector_store_ready'), 1)
  t.ok(sample(text, 'auditrail_collector_store_free_bytes')! > 0)
  t.equal((await fetch(`${c.metricsUrl}/readyz`)).status, 200)

  const families = [...text.matchAll(/^# TYPE (auditrail_collector_[a-z_]+) /gm)].map((m) => m[1])
  const operations = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8')
  const documented = [...operations.matchAll(/^\| `(auditrail_collector_[a-z_]+)/gm)].map((m) => m[1])
  t.same(families.sort(), documented.sort(), 'docs/operations.md lists exactly the collector\'s metrics')

  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
  if (promtool.error) return t.fail(`promtool is missing: install Debian's prometheus package, which ships it (apt-get install -y prometheus): ${promtool.error.message}`)
  t.equal(promtool.status, 0, `promtool check metrics exits 0 ${promtool.stdout}${promtool.stderr}`.trim())
  t.equal(`${promtool.stdout}${promtool.stderr}`.trim(), '', 'promtool has nothing to say: no lint warning')

  t.equal((await fetch(`${c.url}/metrics`)).status, 404, 'not on the collector\'s own address')
})

t.test('the index lag shows batches and seconds while the index worker is down, and 0 once caught up', async (t) => {
  const c = await collector(t)
  const chain = new Chain('node-a', key)
  await push(c.url, chain.grow(2))
  await c.indexer!.idle()
  await c.indexer!.terminateWorker()
  await push(c.url, chain.grow(3))
  const behind = await scrape(c.metricsUrl)
  t.equal(sample(behind, 'auditrail_collector_index_lag_batches'), 3, 'the batches stored since the worker stopped')
  t.ok(sample(behind, 'auditrail_collector_index_lag_seconds')! > 0, 'and for how long')
  // The indexer restarts its worker, which catches up from the segments.
  const deadline = Date.now() + 10_000
  let caughtUp = behind
  while (Date.now() < deadline && sample(caughtUp, 'auditrail_collector_index_lag_batches') !== 0) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    caughtUp = await scrape(c.metricsUrl)
  }
  t.equal(sample(caughtUp, 'auditrail_collector_index_lag_batches'), 0)
  await c.indexer!.idle()
  t.equal(sample(await scrape(c.metricsUrl), 'auditrail_collector_index_lag_seconds'), 0)
})

t.test('without an index the lag gauges are absent; without --metrics-listen nothing is served', async (t) => {
  const c = await collector(t, { index: false })
  const text = await scrape(c.metricsUrl)
  t.notMatch(text, /auditrail_collector_index_lag/)
  t.match(text, /^auditrail_collector_streams 0$/m)
  const quiet = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: join(t.testdir(), 'quiet'), trustedKeys: trustOf(key), index: false })
  t.teardown(() => quiet.close())
  t.equal(quiet.metricsUrl, undefined)
})

t.test('streams_silent counts streams by the age of their last batch, across a restart; /readyz and store_ready follow the store', async (t) => {
  const dir = t.testdir()
  const first = await collector(t, { storeDir: dir })
  const nodeB = new Chain('node-b', key)
  t.equal((await push(first.url, new Chain('node-a', key).grow(1))).status, 200)
  t.equal((await push(first.url, nodeB.grow(1))).status, 200)
  await first.close()
  // Recovered from the segments' modification times: node-a's is 10 minutes old, node-b's 2 hours.
  for (const [node, minutes] of [['node-a', 10], ['node-b', 120]] as const) {
    const when = new Date(Date.now() - minutes * 60_000)
    for (const f of await readdir(streamDir(dir, node))) await utimes(join(streamDir(dir, node), f), when, when)
  }
  const c = await collector(t, { storeDir: dir })
  const text = await scrape(c.metricsUrl)
  t.equal(sample(text, 'auditrail_collector_streams_silent{minutes="5"}'), 2)
  t.equal(sample(text, 'auditrail_collector_streams_silent{minutes="15"}'), 1)
  t.equal(sample(text, 'auditrail_collector_streams_silent{minutes="60"}'), 1)
  t.equal(sample(text, 'auditrail_collector_streams_silent{minutes="1440"}'), 0)
  t.equal((await push(c.url, nodeB.grow(1))).status, 200)
  t.equal(sample(await scrape(c.metricsUrl), 'auditrail_collector_streams_silent{minutes="60"}'), 0, 'a new batch resets the stream\'s age')

  c.store.unready = async () => 'cannot commit'
  const notReady = await fetch(`${c.metricsUrl}/readyz`)
  t.equal(notReady.status, 503)
  t.match(await notReady.text(), /not ready: cannot commit/)
  t.equal(sample(await scrape(c.metricsUrl), 'auditrail_collector_store_ready'), 0)
})
