import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { loadAgentConfig } from '../../agent/config.ts'

const env = {}
const base = { 'node': 'cp-1', 'collector.url': 'https://collector.example:8443' }

t.test('defaults suit a kubeadm control-plane node; flags fill the rest', async (t) => {
  const c = loadAgentConfig({ overrides: base, env })
  t.equal(c.tail.path, '/var/log/kubernetes/audit/audit.log')
  t.equal(c.tail.maxLineBytes, 4 * 1024 * 1024)
  t.equal(c.streamId, 'cp-1', 'the stream is named after the node')
  t.equal(c.quarantine.dir, '/var/lib/auditrail/quarantine')
  t.equal(c.observe.listen, '0.0.0.0:9787')
})

t.test('the node name comes from NODE_NAME when not set otherwise', async (t) => {
  const c = loadAgentConfig({ overrides: { 'collector.url': 'https://c:1' }, env: { NODE_NAME: 'cp-2' } })
  t.equal(c.node, 'cp-2')
})

t.test('the file is read, units parsed, and flags override it', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'agent.yaml')
  writeFileSync(file, 'node: from-file\ncollector:\n  url: https://c:1\n  timeout: 2s\n  retry:\n    maxDelay: 1m\nbatch:\n  maxBytes: 1MiB\n')
  const c = loadAgentConfig({ file, overrides: { node: 'from-flag' }, env })
  t.equal(c.node, 'from-flag')
  t.equal(c.collector.timeoutMs, 2000)
  t.equal(c.collector.retryMaxDelayMs, 60_000)
  t.equal(c.batch.maxBytes, 1024 * 1024)
})

t.test('mistakes name the key and the fix', async (t) => {
  const dir = t.testdir()
  const cases: Array<[string, RegExp]> = [
    ['tail:\n  paht: /x\n', /unknown key tail\.paht \(known keys here: path,/],
    ['tail:\n  maxLineBytes: huge\n', /tail\.maxLineBytes: expected a size like "4MiB"/],
    ['batch:\n  maxWait: 10\n', /batch\.maxWait: expected a duration like "250ms"/],
    ['tail:\n  maxOpenFiles: 0\n', /tail\.maxOpenFiles: 0 is out of range/],
    ['tail: [1\n', /not valid YAML at line/],
    ['collector:\n  url: http://10.0.0.5:8080\n', /plain http to 10\.0\.0\.5.*allowInsecureHttp/],
    ['collector:\n  url: not a url\n', /collector\.url "not a url" is not a URL/],
    ['collector:\n  certFile: /c.pem\n', /certFile and collector\.keyFile go together/],
  ]
  for (const [yaml, error] of cases) {
    const file = join(dir, 'c.yaml')
    writeFileSync(file, yaml)
    const overrides: Record<string, string> = yaml.includes('url:') ? { node: 'n' } : base
    t.throws(() => loadAgentConfig({ file, overrides, env }), error, yaml)
  }
  t.throws(() => loadAgentConfig({ overrides: { 'collector.url': 'https://c:1' }, env }), /node is not set.*NODE_NAME/)
  t.throws(() => loadAgentConfig({ file: join(dir, 'missing.yaml'), env }), /cannot read the file \(ENOENT\)/)
})

t.test('plain http to loopback is fine (the demo and tests)', async (t) => {
  t.equal(loadAgentConfig({ overrides: { node: 'n', 'collector.url': 'http://127.0.0.1:7070' }, env }).collector.url, 'http://127.0.0.1:7070')
})
