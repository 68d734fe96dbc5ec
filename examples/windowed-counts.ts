import { definePipeline } from 'dstream';

/** Word counts over a sliding window of 3 intervals, sliding by 1, computed incrementally. */
export default definePipeline({ name: 'windowed-counts', partitions: 4 }, (ctx) => {
  ctx
    .textStream()
    .flatMap((line) => line.split(/\s+/).filter((w) => w.length > 0))
    .map((w) => [w, 1])
    .reduceByKeyAndWindow((a, b) => a + b, 3, 1, { inverse: (a, b) => a - b })
    .saveAsJsonFiles('windowed');
});
