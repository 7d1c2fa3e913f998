/**
 * A set of objects kept in array slots: adding takes a free slot (and says which), removing clears it at once.
 * For short-lived members of a long-lived set on a hot path: measured on the turn path, a `Set` there kept each
 * turn's objects (through the fiber it held) alive past the next scavenges, so they were promoted and left to the
 * major GC; slots cleared on removal do not (docs/PERFORMANCE.md, "The GC share of a JSON turn").
 */
export class SlotSet<A extends object> {
  private readonly slots: Array<A | undefined> = []
  // Free slot numbers: plain integers, no references.
  private readonly free: Array<number> = []
  private count = 0

  /** Adds `value`; the slot to remove it by. */
  add(value: A): number {
    this.count++
    const slot = this.free.pop()
    if (slot === undefined) return this.slots.push(value) - 1
    this.slots[slot] = value
    return slot
  }

  /** Removes `value` from `slot` (nothing when the slot holds something else, or nothing). */
  remove(slot: number, value: A): void {
    if (this.slots[slot] !== value) return
    this.slots[slot] = undefined
    this.free.push(slot)
    this.count--
  }

  get size(): number {
    return this.count
  }

  /** The members, in no particular order. */
  values(): Array<A> {
    const out: Array<A> = []
    for (const value of this.slots) if (value !== undefined) out.push(value)
    return out
  }
}
