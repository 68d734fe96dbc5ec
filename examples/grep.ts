import { definePipeline } from 'dstream';

/** Lines containing a pattern (DSTREAM_GREP_PATTERN, default "error"), and how many per interval. */
const pattern = process.env.DSTREAM_GREP_PATTERN ?? 'error';

export default definePipeline({ name: 'grep', partitions: 2 }, (ctx) => {
  // Two outputs read the matches: cached, the input is scanned once, not twice.
  const matches = ctx.textStream().filter((line) => line.includes(pattern)).cache();
  matches.saveAsTextFiles('matches');
  matches.count().saveAsJsonFiles('match-count');
});
