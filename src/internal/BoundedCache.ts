/**
 * A bounded map that forgets its least recently used entries: at most `capacity` entries and, when a size
 * function is given, at most `maxBytes` in total. A value larger than the whole budget is not cached. For
 * read-through caches of state this process alone writes (the state directory has a single owner), so entries
 * never go stale.
 *
 * Why not effect's `Cache`: it bounds entries only (no byte budget, which the history cache needs: one session's
 * history can be megabytes), it is a read-through cache keyed by a single lookup function, while the turn writes
 * through (set after each append) and reads synchronously on the hot path (`get` without an Effect or a fiber),
 * and every `Cache.get` is an Effect with a Deferred per miss — the cost issue 14 removed from the turn.
 */
import type { Bytes } from "../domain/Size.js"
import * as Size from "../domain/Size.js"

export interface ByteBound<V> {
  readonly maxBytes: Bytes
  /** The size of a value; called once per `set` that does not say the size. */
  readonly sizeOf: (value: V) => Bytes
}

/** A cached value and the size it was cached with. */
export interface Sized<V> {
  readonly value: V
  readonly size: Bytes
}

export class BoundedCache<K, V> {
  private readonly map = new Map<K, Sized<V>>()
  private total: Bytes = Size.bytes(0)
  constructor(private readonly capacity: number, private readonly bound?: ByteBound<V>) {}

  /** How many entries are cached. */
  get size(): number {
    return this.map.size
  }

  /** The summed size of the cached values (zero without a size function). */
  get bytes(): Bytes {
    return this.total
  }

  get(key: K): V | undefined {
    const entry = this.map.get(key)
    if (entry === undefined) return undefined
    this.map.delete(key)
    this.map.set(key, entry)
    return entry.value
  }

  /** The entry of `key` with its size, without making it the most recently used. */
  peek(key: K): Sized<V> | undefined {
    return this.map.get(key)
  }

  /**
   * Caches `value`. `size`, when the caller knows it (e.g. summed incrementally from the previous value's), is
   * used instead of calling `sizeOf`.
   */
  set(key: K, value: V, size?: Bytes): void {
    this.delete(key)
    if (this.bound === undefined) size = Size.bytes(0)
    else size ??= this.bound.sizeOf(value)
    if (this.bound !== undefined && size > this.bound.maxBytes) return
    this.map.set(key, { value, size })
    this.total = Size.add(this.total, size)
    while (this.map.size > this.capacity || (this.bound !== undefined && this.total > this.bound.maxBytes)) {
      const oldest = this.map.keys().next()
      if (oldest.done === true) break
      this.delete(oldest.value)
    }
  }

  delete(key: K): void {
    const entry = this.map.get(key)
    if (entry === undefined) return
    this.map.delete(key)
    this.total = Size.subtract(this.total, entry.size)
  }
}
