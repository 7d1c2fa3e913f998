/**
 * A size-bounded map that forgets its least recently used entries. For read-through caches of state this
 * process alone writes (the state directory has a single owner), so entries never go stale.
 */
export class BoundedCache<K, V> {
  private readonly map = new Map<K, V>()
  constructor(private readonly capacity: number) {}

  get(key: K): V | undefined {
    const value = this.map.get(key)
    if (value !== undefined) {
      this.map.delete(key)
      this.map.set(key, value)
    }
    return value
  }

  set(key: K, value: V): void {
    this.map.delete(key)
    this.map.set(key, value)
    if (this.map.size > this.capacity) {
      const oldest = this.map.keys().next()
      if (oldest.done !== true) this.map.delete(oldest.value)
    }
  }

  delete(key: K): void {
    this.map.delete(key)
  }
}
