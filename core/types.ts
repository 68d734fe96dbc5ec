/**
 * Types that hold a pipeline's records to what the codec stores (see codec/storable.ts): strings,
 * numbers, booleans, null, arrays and plain objects. Checked where the types can say so; what they
 * cannot (a class with only data fields, an `any`) the codec refuses at the first such record.
 */

declare const unstorable: unique symbol;

/** What a value the codec cannot store is checked against; `Why` says what to store instead. */
export interface NotStorable<Why extends string> {
  readonly [unstorable]: Why;
}

/**
 * `T` itself when every part of it can be stored; otherwise `T` with each part that cannot
 * replaced by a NotStorable naming it, so that `value: T & Storable<T>` fails to compile there
 * with the reason. `unknown` and `any` pass: what they hold is checked when it is stored.
 */
export type Storable<T> = unknown extends T
  ? T
  : T extends string | number | boolean | null
    ? T
    : T extends undefined
      ? NotStorable<'undefined: use null, or leave the property out'>
      : T extends Function
        ? NotStorable<'a function'>
        : T extends Date
          ? NotStorable<'a Date: store date.getTime() or date.toISOString()'>
          : T extends ReadonlyMap<unknown, unknown>
            ? NotStorable<'a Map: store [...map] as [key, value] pairs, or a plain object'>
            : T extends ReadonlySet<unknown>
              ? NotStorable<'a Set: store [...set]'>
              : T extends bigint | symbol
                ? NotStorable<'a bigint or a symbol'>
                : T extends object
                  ? { [P in keyof T]: Storable<T[P]> }
                  : never;

/**
 * What a function returns where `undefined` means "nothing" (mapWithState emitting no record):
 * `R & StorableOrNothing<R>` checks the rest as Storable does, and infers R from every return.
 */
export type StorableOrNothing<R> = Storable<Exclude<R, undefined>> | undefined;

/**
 * The constraint of a type parameter a record is inferred into. It changes nothing that can be
 * stored, but an array type in it makes TypeScript infer an array literal as a tuple
 * (`(w) => [w, 1]` is `[string, number]`, a pair), and it holds no primitive type, which would
 * keep literal types (`1` rather than `number`).
 */
export type RecordShape = readonly [] | readonly unknown[] | {} | null;

/**
 * A value type with its literal types widened: `as const` pairs such as `[w, 1] as const` have
 * the value type `1`, which a reduce function summing them would not return.
 */
export type Widened<V> = V extends string ? string : V extends number ? number : V extends boolean ? boolean : V;
