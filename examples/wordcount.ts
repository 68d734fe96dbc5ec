import { definePipeline } from 'dstream';

/**
 * WordCount: each interval's word counts to `counts`, and running totals since interval 0 to
 * `totals`, as JSON pairs [word, count].
 */
export default definePipeline({ name: 'wordcount', partitions: 4 }, (ctx) => {
  const words = ctx.textStream().flatMap((line) => line.split(/\s+/).filter((w) => w.length > 0));
  const counts = words.map((w) => [w, 1]).reduceByKey((a, b) => a + b);
  counts.saveAsJsonFiles('counts');
  counts
    .updateStateByKey((values, total: number | undefined) => (total ?? 0) + values.reduce((a, b) => a + b, 0))
    .saveAsJsonFiles('totals');
});
