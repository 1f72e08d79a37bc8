/**
 * The shard store's in-memory address → location map. The index on disk keeps its rows
 * in location order (appended, never inserted at random keys), so this map is how an
 * address is found; see docs/adr/0003-shard-store.md, "segment-ordered index".
 */
import { CairnError } from '../core/errors.js'

/** The map would outgrow the largest table it can allocate. */
export class AddressMapFullError extends CairnError {
  override readonly name = 'AddressMapFullError'
  readonly kind = 'resource-exhausted'
}

/** Slots are kept at most this full; probes stay short (about 2.5 on a miss, 1.5 on a hit). */
const MAX_LOAD = 0.7
const MIN_SLOTS = 1024
/** 2^28 slots are 3 GiB of arrays: far past any node this store is meant for. */
const MAX_SLOTS = 2 ** 28

/**
 * Address hash → location (a positive number: segment × 2^32 + offset), as an
 * open-addressing table in two typed arrays: 12 bytes a slot, about 17 bytes a stored
 * shard at the usual load, no object per entry for the collector to trace. Several
 * addresses may share a hash: every location under a hash is a candidate, and the
 * caller tells them apart by the address stored at the location. Hashes are 32-bit
 * integers (`addressHash`); any other number is taken modulo 2^32, as stored.
 */
export class AddressLocations {
  private hashes: Int32Array
  /** 0 marks an empty slot; a location is never 0 (segment ids start at 1). */
  private locs: Float64Array
  private mask: number
  private count = 0

  /** @param expectedEntries sized so this many fit without growing */
  constructor(expectedEntries = 0) {
    let slots = MIN_SLOTS
    while (slots * MAX_LOAD < expectedEntries && slots < MAX_SLOTS) slots *= 2
    this.hashes = new Int32Array(slots)
    this.locs = new Float64Array(slots)
    this.mask = slots - 1
  }

  get size(): number {
    return this.count
  }

  /** Memory the table takes. */
  get sizeBytes(): number {
    return this.hashes.byteLength + this.locs.byteLength
  }

  /** Whether any location is held under `hash`: false means the address is certainly absent. */
  has(hash: number): boolean {
    hash |= 0
    for (let slot = hash & this.mask; this.locs[slot] !== 0; slot = (slot + 1) & this.mask) {
      if (this.hashes[slot] === hash) return true
    }
    return false
  }

  /** Every location held under `hash` (usually none or one). */
  locations(hash: number): number[] {
    hash |= 0
    const out: number[] = []
    for (let slot = hash & this.mask; this.locs[slot] !== 0; slot = (slot + 1) & this.mask) {
      if (this.hashes[slot] === hash) out.push(this.locs[slot] as number)
    }
    return out
  }

  /** Adds (hash, loc); false if that pair is already held (adding is idempotent). */
  add(hash: number, loc: number): boolean {
    hash |= 0
    if (!(loc > 0) || !Number.isSafeInteger(loc)) throw new RangeError(`location ${loc} is not a positive safe integer`)
    let slot = hash & this.mask
    for (; this.locs[slot] !== 0; slot = (slot + 1) & this.mask) {
      if (this.hashes[slot] === hash && this.locs[slot] === loc) return false
    }
    if (this.count + 1 > this.locs.length * MAX_LOAD) {
      this.grow()
      return this.add(hash, loc)
    }
    this.hashes[slot] = hash
    this.locs[slot] = loc
    this.count += 1
    return true
  }

  /** Removes (hash, loc); false if it was not held. */
  delete(hash: number, loc: number): boolean {
    hash |= 0
    const slot = this.slotOf(hash, loc)
    if (slot < 0) return false
    this.removeSlot(slot)
    this.count -= 1
    return true
  }

  /** Points (hash, from) at `to` instead (a row moved); false if (hash, from) was not held. */
  move(hash: number, from: number, to: number): boolean {
    hash |= 0
    const slot = this.slotOf(hash, from)
    if (slot < 0) return false
    if (!(to > 0) || !Number.isSafeInteger(to)) throw new RangeError(`location ${to} is not a positive safe integer`)
    this.locs[slot] = to
    return true
  }

  private slotOf(hash: number, loc: number): number {
    for (let slot = hash & this.mask; this.locs[slot] !== 0; slot = (slot + 1) & this.mask) {
      if (this.hashes[slot] === hash && this.locs[slot] === loc) return slot
    }
    return -1
  }

  /**
   * Empties `hole` and shifts later entries of its probe run back into it, so no
   * tombstones are needed and every entry stays reachable from its home slot.
   */
  private removeSlot(hole: number): void {
    const { hashes, locs, mask } = this
    for (let slot = (hole + 1) & mask; locs[slot] !== 0; slot = (slot + 1) & mask) {
      const home = (hashes[slot] as number) & mask
      // The entry may fill the hole only if its home is not cyclically within (hole, slot].
      const homeAfterHole = hole <= slot ? home > hole && home <= slot : home > hole || home <= slot
      if (homeAfterHole) continue
      hashes[hole] = hashes[slot] as number
      locs[hole] = locs[slot] as number
      hole = slot
    }
    locs[hole] = 0
    hashes[hole] = 0
  }

  private grow(): void {
    const slots = this.locs.length * 2
    if (slots > MAX_SLOTS) throw new AddressMapFullError(`the shard address map is full at ${this.count} shards`)
    const { hashes, locs } = this
    this.hashes = new Int32Array(slots)
    this.locs = new Float64Array(slots)
    this.mask = slots - 1
    for (let i = 0; i < locs.length; i++) {
      const loc = locs[i] as number
      if (loc === 0) continue
      let slot = (hashes[i] as number) & this.mask
      while (this.locs[slot] !== 0) slot = (slot + 1) & this.mask
      this.hashes[slot] = hashes[i] as number
      this.locs[slot] = loc
    }
  }
}
