/**
 * In-memory reference for reduceByKeyAndWindow(sum, length, slide, { inverse: minus, filter }),
 * computed the way Spark's ReducedWindowedDStream computes it: from the previous window's
 * (filtered, so pruned) result, plus the intervals that entered, minus those that left. It keeps
 * only sums per key and interval, never the engine's bookkeeping, so it checks that bookkeeping.
 */
type Pair = [string, number];

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - Math.max(0, from) + 1) }, (_, i) => Math.max(0, from) + i);

/**
 * Per interval, the window's pairs, or undefined between slides. Per key, as in Spark:
 *   in the previous window's result: previous + entered - left;
 *   not in it (new, or pruned by `keep`): the sum of what entered and is still in the window;
 * then a key with no value left in the window is dropped (dstream's addition: Spark keeps it),
 * and one `keep` refuses is pruned: absent here and from the next window's previous result.
 * With `keep` always true this is the plain window's sum per key.
 */
export function reducedWindowSums(batches: Pair[][], length: number, slide: number, keep: (pair: Pair) => boolean = () => true): (Pair[] | undefined)[] {
  const sums = batches.map((batch) => {
    const m = new Map<string, number>();
    for (const [k, v] of batch) m.set(k, (m.get(k) ?? 0) + v);
    return m;
  });
  let previous = new Map<string, number>();
  return batches.map((_, k) => {
    if ((k + 1) % slide !== 0) return undefined;
    const entering = range(k - slide + 1, k);
    const leaving = range(k - length - slide + 1, k - length);
    const window = range(k - length + 1, k);
    const total = (key: string, intervals: number[]) => intervals.reduce((t, j) => t + (sums[j]!.get(key) ?? 0), 0);
    const next = new Map<string, number>();
    for (const key of new Set([...previous.keys(), ...entering.flatMap((j) => [...sums[j]!.keys()])])) {
      if (!window.some((j) => sums[j]!.has(key))) continue;
      const value = previous.has(key)
        ? previous.get(key)! + total(key, entering) - total(key, leaving)
        : total(key, entering.filter((j) => window.includes(j)));
      if (keep([key, value])) next.set(key, value);
    }
    previous = next;
    return [...next];
  });
}
