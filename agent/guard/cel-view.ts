// Parsed JSON as CEL sees it, converted lazily and once.
//
// @bufbuild/cel turns a plain object into a map by copying all its entries,
// at every access: `event.user.username` copies the event's twenty-odd
// fields, then the user's, in every rule that reads it. A view is a Map
// that answers from the object itself and hands out views of its children,
// each made once per object (a WeakMap keeps them as long as the event
// lives), so a field costs the same whatever the size of its parents and
// however many rules read it.

const views = new WeakMap<object, unknown>()

/** The CEL input for a JSON value: scalars as they are, objects as ObjectViews, arrays of views. */
export function celView(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value
  let view = views.get(value)
  if (view === undefined) {
    view = Array.isArray(value) ? value.map(celView) : new ObjectView(value as Record<string, unknown>)
    views.set(value, view)
  }
  return view
}

/** Only own properties are fields: a key such as "constructor" or "__proto__" in event data is just a key. */
class ObjectView extends Map<string, unknown> {
  readonly #object: Record<string, unknown>

  constructor(object: Record<string, unknown>) {
    super()
    this.#object = object
  }

  override get(key: string): unknown {
    return typeof key === 'string' && Object.hasOwn(this.#object, key) ? celView(this.#object[key]) : undefined
  }

  override has(key: string): boolean {
    return typeof key === 'string' && Object.hasOwn(this.#object, key)
  }

  override get size(): number {
    return Object.keys(this.#object).length
  }

  override keys(): MapIterator<string> {
    return Object.keys(this.#object)[Symbol.iterator]()
  }

  override *values(): MapIterator<unknown> {
    for (const key of Object.keys(this.#object)) yield celView(this.#object[key])
  }

  override *entries(): MapIterator<[string, unknown]> {
    for (const key of Object.keys(this.#object)) yield [key, celView(this.#object[key])]
  }

  override [Symbol.iterator](): MapIterator<[string, unknown]> {
    return this.entries()
  }

  override forEach(callback: (value: unknown, key: string, map: Map<string, unknown>) => void, thisArg?: unknown): void {
    for (const key of Object.keys(this.#object)) callback.call(thisArg, celView(this.#object[key]), key, this)
  }
}
