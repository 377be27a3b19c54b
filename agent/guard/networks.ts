// Address lists rules can ask about: the cluster's own networks (config
// `guard.clusterNetworks`) and known-bad addresses (the file of
// `guard.knownBadAddressesFile`). CEL reaches them through two functions
// (cel.ts): outsideClusterNetworks(ip) and knownBadAddress(ip).
//
// A lookup costs one Set probe per distinct prefix length in the list (at most
// 33 for IPv4, 129 for IPv6), whatever the number of entries, so a list of
// 100,000 addresses costs an event no more than a list of ten.
import { isIP } from 'node:net'

/** Enough for every node, pod, service and load-balancer range of a cluster. */
export const MAX_CLUSTER_NETWORKS = 1000
/** A threat feed of this size is a large one; past it the file is refused, not truncated. */
export const MAX_LIST_ENTRIES = 200_000
export const MAX_LIST_BYTES = 16 * 1024 * 1024

type Family = 4 | 6
const BITS: Record<Family, number> = { 4: 32, 6: 128 }

/** An address as a number and its family; IPv4-mapped IPv6 (::ffff:a.b.c.d, as dual-stack sockets report IPv4 peers) is IPv4. */
function parseAddress(text: string): { family: Family; value: bigint } | undefined {
  const family = isIP(text)
  if (family === 4) return { family, value: ipv4Value(text) }
  if (family !== 6) return undefined
  const value = ipv6Value(text)
  return value >> 32n === 0xffffn ? { family: 4, value: value & 0xffffffffn } : { family: 6, value }
}

function ipv4Value(text: string): bigint {
  return text.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n)
}

/** `text` is valid IPv6 (isIP said so): expand "::" and a dotted IPv4 tail into eight groups. */
function ipv6Value(text: string): bigint {
  const address = text.split('%')[0]!
  const [head, tail] = address.includes('::') ? address.split('::') as [string, string] : [address, undefined]
  const groups = (part: string): bigint[] => {
    if (part === '') return []
    return part.split(':').flatMap((g) => {
      if (!g.includes('.')) return [BigInt(parseInt(g, 16))]
      const v4 = ipv4Value(g)
      return [v4 >> 16n, v4 & 0xffffn]
    })
  }
  const left = groups(head)
  const right = tail === undefined ? [] : groups(tail)
  const all = [...left, ...Array<bigint>(8 - left.length - right.length).fill(0n), ...right]
  return all.reduce((acc, g) => (acc << 16n) | g, 0n)
}

/** A set of addresses and CIDR networks. */
export class NetworkSet {
  /** Per family, per prefix length: the network numbers (address bits past the prefix cleared). */
  readonly #networks: Record<Family, Map<number, Set<bigint>>> = { 4: new Map(), 6: new Map() }
  readonly size: number

  /** Throws NetworkSyntaxError on the first entry that is not an address or a CIDR. */
  constructor(entries: readonly string[]) {
    for (const [i, entry] of entries.entries()) {
      const network = parseNetwork(entry)
      if (typeof network === 'string') throw new NetworkSyntaxError(i, entry, network)
      const byLength = this.#networks[network.family]
      let set = byLength.get(network.prefix)
      if (!set) byLength.set(network.prefix, (set = new Set()))
      set.add(network.value)
    }
    this.size = entries.length
  }

  /** Whether `ip` lies in one of the networks; false for text that is not an address. */
  has(ip: string): boolean {
    const address = parseAddress(ip)
    if (!address) return false
    const bits = BITS[address.family]
    for (const [prefix, set] of this.#networks[address.family]) {
      if (set.has(mask(address.value, prefix, bits))) return true
    }
    return false
  }
}

export class NetworkSyntaxError extends Error {
  /** The entry's index in the list (0-based). */
  readonly index: number
  constructor(index: number, entry: string, reason: string) {
    super(`${JSON.stringify(entry.length > 64 ? `${entry.slice(0, 64)}...` : entry)} ${reason}`)
    this.name = 'NetworkSyntaxError'
    this.index = index
  }
}

function mask(value: bigint, prefix: number, bits: number): bigint {
  const host = BigInt(bits - prefix)
  return (value >> host) << host
}

/** "10.0.0.0/8", "fd00::/8" or one address (a /32 or /128); the reason it is neither otherwise. */
function parseNetwork(entry: string): { family: Family; prefix: number; value: bigint } | string {
  const [addressText = '', prefixText, ...rest] = entry.trim().split('/')
  if (rest.length > 0) return 'is not an address or a CIDR (one "/" at most)'
  const address = parseAddress(addressText)
  if (!address) return 'is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, 192.0.2.7, fd00::/8)'
  const bits = BITS[address.family]
  // An IPv4-mapped IPv6 network (::ffff:10.0.0.0/104) is the IPv4 network it maps.
  const mappedOffset = address.family === 4 && isIP(addressText) === 6 ? 96 : 0
  if (prefixText === undefined) return { family: address.family, prefix: bits, value: address.value }
  if (!/^\d{1,3}$/.test(prefixText)) return 'has a prefix length that is not a number'
  const prefix = Number(prefixText) - mappedOffset
  if (prefix < 0 || prefix > bits) return `has a prefix length out of range (0 to ${bits + mappedOffset})`
  // 10.0.0.1/8 is written for 10.0.0.0/8 often enough; the host bits are cleared, as ip(8) does.
  return { family: address.family, prefix, value: mask(address.value, prefix, bits) }
}

/**
 * A known-bad address file: one address or CIDR per line; blank lines and
 * text after "#" are ignored. Throws an Error naming the first bad line.
 */
export function parseAddressList(text: string, file: string): NetworkSet {
  if (text.length > MAX_LIST_BYTES) throw new Error(`${file}: ${text.length} bytes; the limit is ${MAX_LIST_BYTES}`)
  const entries: string[] = []
  const lines: number[] = []
  for (const [i, line] of text.split('\n').entries()) {
    const entry = line.replace(/#.*/, '').trim()
    if (entry === '') continue
    if (entries.length === MAX_LIST_ENTRIES) throw new Error(`${file}: more than ${MAX_LIST_ENTRIES} entries`)
    entries.push(entry)
    lines.push(i + 1)
  }
  try {
    return new NetworkSet(entries)
  } catch (err) {
    if (err instanceof NetworkSyntaxError) throw new Error(`${file}: line ${lines[err.index]}: ${err.message}`)
    throw err
  }
}

// What the CEL functions read. Process-wide, like the CEL environment they are
// registered in: the agent runs one guard. Empty until configured.
const EMPTY = new NetworkSet([])
// The node's own loopback: the apiserver's loopback client and host-network
// control-plane pods reach it there; it is inside the cluster whatever is configured.
const LOOPBACK = new NetworkSet(['127.0.0.0/8', '::1'])
let clusterNetworks = EMPTY
let knownBad = EMPTY

export function setClusterNetworks(networks: NetworkSet): void {
  clusterNetworks = networks
}

export function setKnownBadAddresses(addresses: NetworkSet): void {
  knownBad = addresses
}

/**
 * True only for an address outside every configured cluster network (and not
 * loopback). With no networks configured nothing is outside: a rule built on it
 * stays quiet rather than call every request foreign. Text that is not an
 * address is not outside either.
 */
export function outsideClusterNetworks(ip: string): boolean {
  if (clusterNetworks.size === 0 || parseAddress(ip) === undefined) return false
  return !clusterNetworks.has(ip) && !LOOPBACK.has(ip)
}

export function knownBadAddress(ip: string): boolean {
  return knownBad.size > 0 && knownBad.has(ip)
}

/** Whether a list is loaded: without one, its function is false for every address (cel.ts skips conditions that need it). */
export const hasClusterNetworks = (): boolean => clusterNetworks.size > 0
export const hasKnownBadAddresses = (): boolean => knownBad.size > 0
