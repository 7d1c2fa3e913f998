import { assert, describe, it } from "@effect/vitest"
import { SlotSet } from "../src/internal/SlotSet.js"

describe("SlotSet", () => {
  it("adds and removes by slot, reuses freed slots, and ignores a removal of what a slot no longer holds", () => {
    const set = new SlotSet<{ readonly n: number }>()
    const a = { n: 1 }
    const b = { n: 2 }
    const c = { n: 3 }
    const slotA = set.add(a)
    const slotB = set.add(b)
    assert.strictEqual(set.size, 2)
    assert.sameMembers(set.values(), [a, b])
    set.remove(slotA, a)
    assert.strictEqual(set.size, 1)
    assert.deepStrictEqual(set.values(), [b])
    // The freed slot is taken again; removing `a` from it now does nothing.
    const slotC = set.add(c)
    assert.strictEqual(slotC, slotA)
    set.remove(slotA, a)
    assert.sameMembers(set.values(), [b, c])
    // The same object twice: two slots, each removed on its own.
    const again = set.add(b)
    assert.strictEqual(set.size, 3)
    set.remove(slotB, b)
    assert.sameMembers(set.values(), [b, c])
    set.remove(again, b)
    set.remove(slotC, c)
    assert.strictEqual(set.size, 0)
    assert.deepStrictEqual(set.values(), [])
  })
})
