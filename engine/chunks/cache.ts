/**
 * A least-recently-used map bounded by bytes, not entries: chunks and manifest
 * pages vary in size, and what must stay bounded is memory.
 */
import { InvalidArgumentError } from '../../core/errors.js'

export interface ByteLruInit<V> {
  /** Most bytes held; 0 disables the cache. */
  maxBytes: number
  /** Bytes one value holds. */
  sizeOf(value: V): number
}

export class ByteLru<V> {
  // A Map iterates in insertion order: re-inserting on access makes the first key the least recently used.
  readonly #entries = new Map<string, { value: V; bytes: number }>()
  readonly #maxBytes: number
  readonly #sizeOf: (value: V) => number
  #bytes = 0

  constructor(init: ByteLruInit<V>) {
    if (!Number.isSafeInteger(init.maxBytes) || init.maxBytes < 0) {
      throw new InvalidArgumentError(`cache maxBytes must be a non-negative integer, got ${init.maxBytes}`)
    }
    this.#maxBytes = init.maxBytes
    this.#sizeOf = init.sizeOf
  }

  /** The value, marked most recently used; undefined when absent. */
  get(key: string): V | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    this.#entries.delete(key)
    this.#entries.set(key, entry)
    return entry.value
  }

  has(key: string): boolean {
    return this.#entries.has(key)
  }

  /** Stores the value, evicting the least recently used entries to stay within maxBytes. A value larger than the whole cache is not kept. */
  set(key: string, value: V): void {
    const bytes = this.#sizeOf(value)
    this.delete(key)
    if (bytes > this.#maxBytes) return
    this.#entries.set(key, { value, bytes })
    this.#bytes += bytes
    while (this.#bytes > this.#maxBytes) {
      const oldest = this.#entries.keys().next().value as string
      this.delete(oldest)
    }
  }

  delete(key: string): void {
    const entry = this.#entries.get(key)
    if (entry === undefined) return
    this.#entries.delete(key)
    this.#bytes -= entry.bytes
  }

  clear(): void {
    this.#entries.clear()
    this.#bytes = 0
  }

  get sizeBytes(): number {
    return this.#bytes
  }

  get size(): number {
    return this.#entries.size
  }
}
