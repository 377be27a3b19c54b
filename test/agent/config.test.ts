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
  t.equal(c.tail.pollIntervalMs, 1000, 'rotated and new files are looked for every second')
  t.equal(c.tail.appendCheckIntervalMs, 50, 'an idle reader looks for new lines every 50 ms')
  t.equal(c.streamId, 'cp-1', 'the stream is named after the node')
  t.equal(c.quarantine.dir, '/var/lib/auditrail/quarantine')
  t.equal(c.observe.listen, '0.0.0.0:9787')
})

t.test('tail.startAt: oldest by default; live and end on request; beginning is the old name of live', async (t) => {
  t.equal(loadAgentConfig({ overrides: base, env }).tail.startAt, 'oldest', 'a first start backfills the retained backups')
  for (const [given, effective] of [['live', 'live'], ['end', 'end'], ['beginning', 'live']] as const) {
    t.equal(loadAgentConfig({ overrides: { ...base, 'tail.startAt': given }, env }).tail.startAt, effective, given)
  }
  const dir = t.testdir({ 'a.yaml': 'tail:\n  startAt: beginning\n', 'b.yaml': 'tail:\n  startAt: first\n' })
  t.equal(loadAgentConfig({ file: join(dir, 'a.yaml'), overrides: base, env }).tail.startAt, 'live', 'an old ConfigMap keeps working')
  t.throws(() => loadAgentConfig({ file: join(dir, 'b.yaml'), overrides: base, env }), /tail\.startAt: expected one of oldest, live, end, got "first"/)
  t.throws(() => loadAgentConfig({ overrides: { ...base, 'tail.startAt': 'toString' }, env }), /tail\.startAt: expected one of/, 'only the listed alias is one')
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

t.test('guard: the cluster\'s networks and the known-bad address file, none by default', async (t) => {
  t.same(loadAgentConfig({ overrides: base, env }).guard, { clusterNetworks: [], knownBadAddressesFile: '' })
  const dir = t.testdir({ 'c.yaml': 'guard:\n  clusterNetworks: ["192.168.10.0/24", "10.244.0.0/16", "fd00:10:244::/56", "203.0.113.10"]\n  knownBadAddressesFile: /etc/auditrail/bad.txt\n' })
  t.same(loadAgentConfig({ file: join(dir, 'c.yaml'), overrides: base, env }).guard, { clusterNetworks: ['192.168.10.0/24', '10.244.0.0/16', 'fd00:10:244::/56', '203.0.113.10'], knownBadAddressesFile: '/etc/auditrail/bad.txt' })
})

t.test('mistakes name the key and the fix', async (t) => {
  const dir = t.testdir()
  const cases: Array<[string, RegExp]> = [
    ['tail:\n  paht: /x\n', /unknown key tail\.paht \(known keys here: path,/],
    ['tail:\n  maxLineBytes: huge\n', /tail\.maxLineBytes: expected a size like "4MiB"/],
    ['batch:\n  maxWait: 10\n', /batch\.maxWait: expected a duration like "250ms"/],
    ['tail:\n  maxOpenFiles: 0\n', /tail\.maxOpenFiles: 0 is out of range/],
    ['tail:\n  appendCheckInterval: 0ms\n', /tail\.appendCheckInterval: .*out of range/],
    ['tail: [1\n', /not valid YAML at line/],
    ['collector:\n  url: http://10.0.0.5:8080\n', /plain http to 10\.0\.0\.5.*allowInsecureHttp/],
    ['collector:\n  url: not a url\n', /collector\.url "not a url" is not a URL/],
    ['collector:\n  certFile: /c.pem\n', /certFile and collector\.keyFile go together/],
    ['redact:\n  extraPaths: ["configmaps:data.x"]\n', /redact\.extraPaths: "configmaps:data\.x" is not RESOURCE=PATH; write e\.g\. "configmaps=requestObject\.data\.\*"/],
    ['redact:\n  extraPaths: ["configmaps=metadata.name"]\n', /PATH starts with requestObject or responseObject/],
    ['guard:\n  clusterNetworks: ["10.244.0.0/16", "10.96.0.0/33"]\n', /guard\.clusterNetworks\[1\]: "10\.96\.0\.0\/33" has a prefix length out of range \(0 to 32\)/],
    ['guard:\n  clusterNetworks: ["nodes"]\n', /guard\.clusterNetworks\[0\]: "nodes" is not an IPv4 or IPv6 address or CIDR/],
    ['guard:\n  clusterNetworks: 10.0.0.0/8\n', /guard\.clusterNetworks: expected a list of strings/],
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

t.test('redact.extraPaths: RESOURCE=PATH entries, grouped by resource', async (t) => {
  const dir = t.testdir({ 'c.yaml': 'redact:\n  extraPaths: ["configmaps=requestObject.data.*", "example.com/widgets=responseObject.spec.token", "configmaps=responseObject.data.*"]\n' })
  t.same(loadAgentConfig({ file: join(dir, 'c.yaml'), overrides: base, env }).redact, {
    enabled: true,
    extraPaths: { configmaps: ['requestObject.data.*', 'responseObject.data.*'], 'example.com/widgets': ['responseObject.spec.token'] },
  })
})

t.test('plain http to loopback is fine (the demo and tests)', async (t) => {
  t.same(loadAgentConfig({ overrides: { node: 'n', 'collector.url': 'http://127.0.0.1:7070' }, env }).collector.urls, ['http://127.0.0.1:7070'])
})

t.test('collectors: url is a list of one, urls several (preferred first); the flag and the environment are comma-separated lists', async (t) => {
  const dir = t.testdir({
    'one.yaml': 'collector:\n  url: https://a.example:8443/\n',
    'several.yaml': 'collector:\n  urls: [https://a.example:8443, "https://b.example:8443"]\n  failbackInterval: 1m\n  http2: never\n',
  })
  const one = loadAgentConfig({ file: join(dir, 'one.yaml'), overrides: { node: 'n' }, env })
  t.same(one.collector.urls, ['https://a.example:8443'], 'collector.url keeps working, as a list of one')
  t.equal(one.collector.failbackIntervalMs, 30_000)
  t.equal(one.collector.http2, 'auto', 'HTTP/2 when the collector offers it')
  const several = loadAgentConfig({ file: join(dir, 'several.yaml'), overrides: { node: 'n' }, env })
  t.same(several.collector.urls, ['https://a.example:8443', 'https://b.example:8443'])
  t.equal(several.collector.failbackIntervalMs, 60_000)
  t.equal(several.collector.http2, 'never')
  const flagged = loadAgentConfig({ file: join(dir, 'several.yaml'), overrides: { node: 'n', 'collector.urls': 'https://c.example:8443, https://d.example:8443' }, env })
  t.same(flagged.collector.urls, ['https://c.example:8443', 'https://d.example:8443'], '--collector replaces the file\'s list')
  t.same(loadAgentConfig({ file: join(dir, 'one.yaml'), overrides: { node: 'n', 'collector.urls': 'https://c.example:8443' }, env }).collector.urls, ['https://c.example:8443'], 'and the file\'s single url')
  t.same(loadAgentConfig({ overrides: { node: 'n' }, env: { AUDITRAIL_COLLECTOR_URL: 'https://e.example:8443,https://f.example:8443' } }).collector.urls, ['https://e.example:8443', 'https://f.example:8443'], 'the environment, for a file that names none')
  t.same(loadAgentConfig({ file: join(dir, 'one.yaml'), overrides: { node: 'n' }, env: { AUDITRAIL_COLLECTOR_URL: 'https://e.example:8443' } }).collector.urls, ['https://a.example:8443'], 'the file wins over the environment')
})

t.test('collectors: both forms at once, a bad entry, a repeat or too many are refused, naming the field and the entry', async (t) => {
  const dir = t.testdir()
  const cases: Array<[string, RegExp]> = [
    ['collector:\n  url: https://a:1\n  urls: [https://b:1]\n', /collector\.url and collector\.urls are both set: keep one/],
    ['collector:\n  urls: [https://a:1, "not a url"]\n', /collector\.urls\[1\] "not a url" is not a URL/],
    ['collector:\n  urls: [https://a:1, http://10.0.0.5:8080]\n', /collector\.urls\[1\] uses plain http to 10\.0\.0\.5.*allowInsecureHttp/],
    ['collector:\n  urls: [ftp://a:1]\n', /collector\.urls\[0\] must use https/],
    ['collector:\n  urls: [https://a:1, "https://u:secret@b:1"]\n', /collector\.urls\[1\] must not carry credentials/],
    ['collector:\n  urls: [https://a:1, https://a:1/]\n', /collector\.urls\[1\] "https:\/\/a:1\/" is listed twice/],
    [`collector:\n  urls: [${Array.from({ length: 9 }, (_, i) => `https://c${i}:1`).join(', ')}]\n`, /collector\.urls: 9 entries; the limit is 8/],
    ['collector:\n  urls: https://a:1\n', /collector\.urls: expected a list of strings/],
    ['collector:\n  urls: []\n', /collector\.url is not set: set collector\.url \(or collector\.urls for several\)/],
    ['collector:\n  urls: [https://a:1]\n  http2: h2c\n', /collector\.http2: expected one of auto, always, never/],
    ['collector:\n  urls: [https://a:1]\n  failbackInterval: 10ms\n', /collector\.failbackInterval: "10ms" is out of range/],
  ]
  for (const [yaml, error] of cases) {
    const file = join(dir, 'c.yaml')
    writeFileSync(file, yaml)
    t.throws(() => loadAgentConfig({ file, overrides: { node: 'n' }, env }), error, yaml)
  }
  t.throws(() => loadAgentConfig({ overrides: { node: 'n', 'collector.urls': 'https://a:1,not-a-url' }, env }), /collector\.urls\[1\] "not-a-url" is not a URL/, 'a flag\'s entry is named by its place too')
})

t.test('alert: off without a sink; the file configures sinks, units and limits; mistakes name the key', async (t) => {
  const off = loadAgentConfig({ overrides: base, env }).alert
  t.match(off, { enabled: false, minSeverity: 'high', queueSize: 1000, coolDownMs: 300_000, retry: { maxAttempts: 10, maxAgeMs: 300_000 }, alertmanager: { url: '', resolveTimeoutMs: 300_000 }, webhook: { url: '', format: 'object' } })
  const dir = t.testdir()
  const file = join(dir, 'agent.yaml')
  writeFileSync(file, [
    'alert:',
    '  minSeverity: medium',
    '  queueSize: 50',
    '  coolDown: 1m',
    '  alertmanager:',
    '    url: https://alertmanager.monitoring.svc:9093/am/',
    '    timeout: 2s',
    '    resolveTimeout: 10m',
    '    bearerTokenFile: /etc/auditrail/alert/token',
    '  webhook:',
    '    url: http://127.0.0.1:8080/hook/',
    '    format: array',
    '    hmacSecretFile: /etc/auditrail/alert/hmac',
    '',
  ].join('\n'))
  const c = loadAgentConfig({ file, overrides: base, env }).alert
  t.equal(c.enabled, true)
  t.equal(c.minSeverity, 'medium')
  t.equal(c.coolDownMs, 60_000)
  t.equal(c.alertmanager.url, 'https://alertmanager.monitoring.svc:9093/am', 'a base URL: its path prefix kept, no trailing slash')
  t.equal(c.alertmanager.timeoutMs, 2000)
  t.equal(c.alertmanager.resolveTimeoutMs, 600_000)
  t.equal(c.webhook.url, 'http://127.0.0.1:8080/hook/', 'the webhook URL exactly as written')
  t.equal(c.webhook.format, 'array')

  const cases: Array<[string, RegExp]> = [
    ['alert:\n  minSeverity: urgent\n', /alert\.minSeverity: expected one of info, low, medium, high, critical/],
    ['alert:\n  queueSize: 0\n', /alert\.queueSize: 0 is out of range/],
    ['alert:\n  alertmanager:\n    urls: http://x\n', /unknown key alert\.alertmanager\.urls/],
    ['alert:\n  alertmanager:\n    url: alertmanager:9093\n', /alert\.alertmanager\.url must use http or https/],
    ['alert:\n  webhook:\n    url: https://user:pw@hooks.example/x\n', /alert\.webhook\.url must not carry credentials; put them in a file \(alert\.webhook\.bearerTokenFile\)/],
    ['alert:\n  webhook:\n    url: http://hooks.example/x\n    bearerTokenFile: /t\n', /alert\.webhook\.url uses plain http to hooks\.example.*allowInsecureHttp/],
    ['alert:\n  alertmanager:\n    url: https://am\n    bearerTokenFile: /t\n    basicAuth:\n      username: a\n      passwordFile: /p\n', /set basicAuth or bearerTokenFile, not both/],
    ['alert:\n  alertmanager:\n    url: https://am\n    basicAuth:\n      username: a\n', /basicAuth\.username and alert\.alertmanager\.basicAuth\.passwordFile go together/],
    ['alert:\n  webhook:\n    hmacSecretFile: /s\n', /alert\.webhook has settings but no url: set alert\.webhook\.url/],
    ['alert:\n  retry:\n    initialDelay: 2s\n    maxDelay: 1s\n', /alert\.retry\.maxDelay must not be below alert\.retry\.initialDelay/],
  ]
  for (const [yaml, error] of cases) {
    writeFileSync(file, yaml)
    t.throws(() => loadAgentConfig({ file, overrides: base, env }), error, yaml)
  }
  writeFileSync(file, 'alert:\n  webhook:\n    url: http://hooks.example/x\n    hmacSecretFile: /s\n')
  t.equal(loadAgentConfig({ file, overrides: base, env }).alert.webhook.url, 'http://hooks.example/x', 'an HMAC signature over plain http sends no secret: allowed')
})

t.test('respond: off, dry run, kube-system left alone by default; the API server from the pod\'s environment', async (t) => {
  const d = loadAgentConfig({ overrides: base, env }).respond
  t.same([d.enabled, d.dryRun, d.policies, d.excludeNamespaces, d.includeSystemIdentities], [false, true, [], ['kube-system'], false])
  t.same(d.apiServer, { url: '', caFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt', tokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token', timeoutMs: 5000 })
  const dir = t.testdir({
    'r.yaml': 'respond:\n  enabled: true\n  actions:\n    - {rules: [privileged-container, host-pid], action: delete-pod}\n    - {minSeverity: critical, action: quarantine}\n  rateLimit: {perMinute: 30, burst: 2}\n  maxEventAge: 1m\n',
  })
  const c = loadAgentConfig({ file: join(dir, 'r.yaml'), overrides: base, env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' } }).respond
  t.same(c.policies, [{ action: 'delete-pod', rules: ['privileged-container', 'host-pid'] }, { action: 'quarantine', minSeverity: 'critical' }])
  t.equal(c.apiServer.url, 'https://10.96.0.1', 'in a pod: the kubernetes Service (443, https\'s own port, is implied)')
  t.same([c.dryRun, c.rateLimit, c.maxEventAgeMs], [true, { perMinute: 30, burst: 2 }, 60_000], 'enabling is not leaving dry run')
  const v6 = loadAgentConfig({ file: join(dir, 'r.yaml'), overrides: base, env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' } }).respond
  t.equal(v6.apiServer.url, 'https://[fd00::1]:6443')
})

t.test('respond: mistakes name the field and the fix', async (t) => {
  const dir = t.testdir()
  const on = (rest: string) => `respond:\n  enabled: true\n  apiServer: {url: "https://127.0.0.1:6443"}\n${rest}`
  const cases: Array<[string, RegExp]> = [
    ['respond:\n  enabled: true\n', /respond\.enabled is true but respond\.actions is empty/],
    [on('  actions:\n    - {rules: [privileged-container], action: kill}\n'), /respond\.actions\[0\]\.action: expected one of delete-pod, delete-binding, scale-to-zero, quarantine, got "kill"/],
    [on('  actions:\n    - {action: delete-pod}\n'), /respond\.actions\[0\]: set rules .* or minSeverity, exactly one/],
    [on('  actions:\n    - {action: delete-pod, rules: [a], minSeverity: high}\n'), /respond\.actions\[0\]: set rules .* exactly one/],
    [on('  actions:\n    - {action: delete-pod, rules: [a]}\n    - {action: quarantine, minSeverity: urgent}\n'), /respond\.actions\[1\]\.minSeverity: expected one of info, low, medium, high, critical, got "urgent"/],
    [on('  actions:\n    - {action: delete-pod, rules: []}\n'), /respond\.actions\[0\]\.rules: expected a non-empty list/],
    [on('  actions:\n    - {action: delete-pod, rule: [a]}\n'), /respond\.actions\[0\]: unknown key rule \(known keys here: rules, minSeverity, action\)/],
    [on('  actions: {rules: [a]}\n'), /respond\.actions: expected a list/],
    ['respond:\n  enabled: true\n  actions:\n    - {action: delete-pod, rules: [a]}\n', /respond\.apiServer\.url is not set and KUBERNETES_SERVICE_HOST is not in the environment/],
    ['respond:\n  enabled: true\n  apiServer: {url: "http://10.0.0.1:6443"}\n  actions:\n    - {action: delete-pod, rules: [a]}\n', /respond\.apiServer\.url must use https/],
    ['respond:\n  enabled: true\n  apiServer: {url: "https://u:p@10.0.0.1:6443"}\n  actions:\n    - {action: delete-pod, rules: [a]}\n', /respond\.apiServer\.url must be https:\/\/HOST:PORT, without credentials/],
    ['respond:\n  rateLimit: {perMinute: 0}\n', /respond\.rateLimit\.perMinute: 0 is out of range/],
    ['respond:\n  queueSize: 1000000\n', /respond\.queueSize: 1000000 is out of range/],
    ['respond:\n  dryrun: false\n', /unknown key respond\.dryrun \(known keys here: enabled, dryRun,/],
  ]
  for (const [i, [yaml, expected]] of cases.entries()) {
    const file = join(dir, `r${i}.yaml`)
    writeFileSync(file, yaml)
    t.throws(() => loadAgentConfig({ file, overrides: base, env }), expected, yaml.split('\n').slice(-2).join(' '))
  }
})
