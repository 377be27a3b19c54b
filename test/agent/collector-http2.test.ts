// collector.http2 against the real collector: under TLS, ALPN gives HTTP/2 unless the agent says never; in
// plaintext, HTTP/2 (h2c with prior knowledge) only with always. The collector's own count of requests by
// HTTP version says which was spoken; every event is stored once and the store verifies either way.
import { writeFileSync } from 'node:fs'
import t from 'tap'
import type { Http2Mode } from '../../agent/ship/sender.ts'
import { verifyStore } from '../../collector/verify.ts'
import { loadTrustedKeys } from '../../proto/keys.ts'
import { realAuditLines } from '../e2e/audit-source.ts'
import { agentRig, exportRecords, until } from './agent-rig.ts'
import { makeCa, makeLeaf } from './ship/tls-certificates.ts'

const LINES = realAuditLines(400)

/** The collector's acknowledged PushBatch requests, by HTTP version. */
async function pushesByVersion(metricsUrl: string): Promise<Record<'1.1' | '2', number>> {
  const text = await (await fetch(`${metricsUrl}/metrics`)).text()
  const count = (http: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`auditrail_collector_requests_total{procedure="PushBatch",protocol="connect",codec="proto",code="ok",http="${http}"} `))
    return line ? Number(line.split(' ')[1]) : 0
  }
  return { '1.1': count('1.1'), '2': count('2') }
}

const cases: Array<{ tls: boolean; http2: Http2Mode; spoken: '1.1' | '2' }> = [
  { tls: true, http2: 'auto', spoken: '2' },
  { tls: true, http2: 'never', spoken: '1.1' },
  { tls: false, http2: 'auto', spoken: '1.1' },
  { tls: false, http2: 'always', spoken: '2' },
]

for (const { tls, http2, spoken } of cases) {
  t.test(`${tls ? 'TLS' : 'plaintext'}, collector.http2: ${http2}: the collector sees HTTP/${spoken}; everything acknowledged and verified`, async (t) => {
    const pki = t.testdir()
    const ca = makeCa(pki, 'ca')
    const server = makeLeaf(pki, 'server', ca, 'serverAuth')
    const s = await agentRig(t, (c) => {
      c.collector.http2 = http2
      if (tls) c.collector.caFile = ca.certFile
    }, { metricsListen: '127.0.0.1:0', ...(tls ? { tls: { cert: server.cert, key: server.key } } : {}) })
    t.equal(s.collector.url.startsWith('https:'), tls)
    writeFileSync(s.logPath, LINES.map((l) => `${l}\n`).join(''))
    const agent = await s.start()
    await until('every line stored', async () => (await exportRecords(s.store)).filter((l) => !l.startsWith('#')).length === LINES.length)
    await agent.drained()
    const pushes = await pushesByVersion(s.collector.metricsUrl!)
    t.ok(pushes[spoken] > 0, `requests over HTTP/${spoken}: ${JSON.stringify(pushes)}`)
    t.equal(pushes[spoken === '2' ? '1.1' : '2'], 0, 'and none over the other')
    const verified = await verifyStore(s.store, loadTrustedKeys([s.keys.publicKeyFile]))
    t.equal(verified.ok, true, JSON.stringify(verified.problem))
  })
}
