// The address lists behind outsideClusterNetworks() and knownBadAddress(): parsing, matching, bounds.
import t from 'tap'
import { knownBadAddress, MAX_LIST_ENTRIES, NetworkSet, outsideClusterNetworks, parseAddressList, setClusterNetworks, setKnownBadAddresses } from '../../../agent/guard/networks.ts'

t.test('addresses and CIDRs of both families match what they cover, and nothing else', async (t) => {
  const set = new NetworkSet(['10.244.0.0/16', '192.168.10.7', 'fd00:10:244::/56', '172.16.0.0/12', '2001:db8::1'])
  for (const ip of ['10.244.0.1', '10.244.255.254', '192.168.10.7', '172.31.255.255', 'fd00:10:244:ff::1', '2001:db8::1', '2001:0db8:0:0:0:0:0:1', '::ffff:10.244.3.4']) t.ok(set.has(ip), ip)
  for (const ip of ['10.245.0.1', '192.168.10.8', '172.32.0.1', 'fd00:10:245::1', '2001:db8::2', 'not-an-ip', '', '10.244.0.1/16']) t.notOk(set.has(ip), ip)
})

t.test('host bits are cleared, IPv4-mapped networks are IPv4, and bad entries are refused with their index', async (t) => {
  t.ok(new NetworkSet(['10.1.2.3/8']).has('10.200.0.1'), '10.1.2.3/8 is 10.0.0.0/8')
  t.ok(new NetworkSet(['::ffff:10.0.0.0/104']).has('10.9.9.9'), '::ffff:10.0.0.0/104 is 10.0.0.0/8')
  t.ok(new NetworkSet(['::/0']).has('2001:db8::5'), 'all of IPv6')
  t.notOk(new NetworkSet(['::/0']).has('10.0.0.1'), '::/0 is IPv6 only')
  for (const [entry, reason] of [['10.0.0.0/33', /prefix length out of range \(0 to 32\)/], ['fd00::/129', /out of range \(0 to 128\)/], ['10.0.0.0/x', /not a number/], ['10.0.0.0/8/8', /one "\/" at most/], ['10.0.0.256', /not an IPv4 or IPv6/], ['example.com', /not an IPv4 or IPv6/]] as const) {
    t.throws(() => new NetworkSet(['10.0.0.0/8', entry]), { name: 'NetworkSyntaxError', index: 1, message: reason }, entry)
  }
})

t.test('a known-bad file: comments and blank lines ignored, the first bad line named, bounded', async (t) => {
  const list = parseAddressList('# feed of 2026-12-01\n198.51.100.0/24  # scanner\n\n203.0.113.66\n2001:db8:bad::/48\n', 'bad.txt')
  t.equal(list.size, 3)
  t.ok(list.has('198.51.100.200'))
  t.ok(list.has('2001:db8:bad:1::9'))
  t.notOk(list.has('203.0.113.67'))
  t.throws(() => parseAddressList('198.51.100.0/24\n# ok\n203.0.113.666\n', 'bad.txt'), /bad\.txt: line 3: "203\.0\.113\.666" is not an IPv4 or IPv6 address/)
  t.throws(() => parseAddressList('10.0.0.1\n'.repeat(MAX_LIST_ENTRIES + 1), 'big.txt'), /big\.txt: more than 200000 entries/)
})

t.test('a lookup costs one probe per prefix length: 100,000 entries answer as fast as ten', async (t) => {
  const big = new NetworkSet(Array.from({ length: 100_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`))
  const start = process.hrtime.bigint()
  for (let i = 0; i < 10_000; i++) big.has('192.0.2.1')
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  t.ok(ms < 1000, `10,000 lookups in ${ms.toFixed(1)} ms`)
})

t.test('outsideClusterNetworks: never true with no networks configured; loopback is inside', async (t) => {
  t.teardown(() => setClusterNetworks(new NetworkSet([])))
  setClusterNetworks(new NetworkSet([]))
  t.notOk(outsideClusterNetworks('203.0.113.50'), 'nothing configured: nothing is outside')
  setClusterNetworks(new NetworkSet(['192.168.10.0/24']))
  t.ok(outsideClusterNetworks('203.0.113.50'))
  t.notOk(outsideClusterNetworks('192.168.10.9'))
  t.notOk(outsideClusterNetworks('127.0.0.1'))
  t.notOk(outsideClusterNetworks('::1'))
  t.notOk(outsideClusterNetworks('garbage'), 'text that is not an address is not outside')
})

t.test('knownBadAddress reads the list in force', async (t) => {
  t.teardown(() => setKnownBadAddresses(new NetworkSet([])))
  t.notOk(knownBadAddress('198.51.100.9'))
  setKnownBadAddresses(new NetworkSet(['198.51.100.0/24']))
  t.ok(knownBadAddress('198.51.100.9'))
})
