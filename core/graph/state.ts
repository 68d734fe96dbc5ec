/** The state of one key as mapWithState's function sees it. Spark: `State` (without `getOption`). */
export interface State<S> {
  /** Whether the key has state. */
  exists(): boolean;
  /** The state; throws when there is none. */
  get(): S;
  /**
   * Sets the key's state, kept for the next value or interval; throws on `undefined` (use remove)
   * and on the call made because the key timed out, as Spark's does.
   */
  update(state: S): void;
  /** Removes the key's state: later calls see none, until one updates it again. */
  remove(): void;
  /** True on the call made because the key had no value for `timeout` intervals; it is then removed. */
  isTimingOut(): boolean;
}

export class KeyState<S> implements State<S> {
  private present: boolean;
  private value: S | undefined;
  touched = false;

  constructor(
    initial: { value: S } | undefined,
    private readonly timingOut = false,
  ) {
    this.present = initial !== undefined;
    this.value = initial?.value;
  }

  exists(): boolean {
    return this.present;
  }

  get(): S {
    if (!this.present) throw new Error('state.get() on a key with no state; check state.exists() first');
    return this.value as S;
  }

  update(state: S): void {
    if (this.timingOut) throw new Error('state.update() on a key that is timing out');
    if (state === undefined) throw new TypeError('state.update(undefined): use state.remove() to drop a key');
    this.present = true;
    this.value = state;
    this.touched = true;
  }

  remove(): void {
    this.present = false;
    this.value = undefined;
    this.touched = true;
  }

  isTimingOut(): boolean {
    return this.timingOut;
  }
}
