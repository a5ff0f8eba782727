// One copy of each string the caches hold many times. JSON.parse interns property names but not
// values, so every decoded object brings its own copy of label values, images, condition
// types and reasons, and timestamps of the same second, thousands of copies of each in a large
// cache (docs/benchmark.md, "Strings held many times"). Whole values repeated in many
// objects are shared the same way ("Values held once for many objects").

/**
 * Interned strings, at most `limit`: values that stop recurring (old timestamps) are let go. Also
 * shared JSON values (`share`), at most `limit / 20`: parts of objects that many cached objects
 * repeat whole, such as the pod template of Deployments made from one template.
 */
export class StringPool {
  private readonly pool = new Map<string, string>();
  private readonly values = new Map<string, unknown>();
  private readonly limit: number;

  constructor(limit = 20_000) {
    this.limit = limit;
  }

  /** The pool's copy of `value`, equal to it. */
  intern<S extends string>(value: S): S {
    const known = this.pool.get(value);
    if (known !== undefined) return known as S;
    // Starting over keeps the pool bounded; objects already interned keep their copies.
    if (this.pool.size >= this.limit) this.pool.clear();
    this.pool.set(value, value);
    return value;
  }

  /**
   * Replaces, in place, every string in `value` (a decoded JSON value) by the pool's copy; a
   * shared value (frozen) is the pool's already.
   */
  internAll<T>(value: T): T {
    if (Object.isFrozen(value)) return value;
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) value[i] = this.internValue(value[i]);
    } else if (value !== null && typeof value === 'object') {
      const record = value as Record<string, unknown>;
      for (const key of Object.keys(record)) record[key] = this.internValue(record[key]);
    }
    return value;
  }

  /**
   * The pool's copy of a JSON value equal to `value` (objects with their keys in the same order),
   * or `value` itself, now the pool's copy. Either way it is frozen: shared by many objects, it
   * must never change.
   */
  share<T extends object>(value: T): T {
    const key = JSON.stringify(value);
    const known = this.values.get(key);
    if (known !== undefined) return known as T;
    if (this.values.size >= this.limit / 20) this.values.clear();
    this.values.set(key, deepFreeze(value));
    return value;
  }

  get size(): number {
    return this.pool.size;
  }

  private internValue(value: unknown): unknown {
    return typeof value === 'string' ? this.intern(value) : this.internAll(value);
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
