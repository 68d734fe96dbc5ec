import type { Rdd } from '../rdd/rdd.ts';
import { DStream } from './dstream.ts';

/**
 * A sliding window over a stream, as Spark's WindowedDStream:
 *
 *   source      s(k-length+1)  ...  s(k-1)   s(k)        (persisted: each computed once)
 *                    └──────────── union ─────────┘
 *   window(k)   exists when (k + 1) % slide == 0
 *
 * `source` is the parent, persisted, so that every window holding an interval reads it.
 */
export function windowedStream<T>(source: DStream<T>, length: number, slide: number): DStream<T> {
  const windowed = new DStream<T>(
    source.graph,
    'window',
    [source],
    [length, slide],
    (gen) => {
      const k = gen.interval;
      if ((k + 1) % slide !== 0) return undefined;
      const parts: Rdd<T>[] = [];
      for (let j = Math.max(0, k - length + 1); j <= k; j++) parts.push(gen.stored(source, j));
      const [first, ...rest] = parts;
      return first!.union(...rest);
    },
    { slide },
  );
  windowed.lookback = length - 1;
  source.buffer = true;
  windowed.stateParts = [[source as DStream<unknown>, '']];
  return windowed;
}

export function checkWindow(length: number, slide: number, parentSlide: number): void {
  if (!Number.isInteger(length) || length < 1) throw new RangeError(`window length must be a whole number of intervals >= 1, got ${length}`);
  if (!Number.isInteger(slide) || slide < 1) throw new RangeError(`window slide must be a whole number of intervals >= 1, got ${slide}`);
  if (length % parentSlide !== 0 || slide % parentSlide !== 0) {
    throw new RangeError(`window length ${length} and slide ${slide} must be multiples of the stream's slide (${parentSlide})`);
  }
}
