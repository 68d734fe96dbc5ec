/** dstream/testing: run a pipeline over given intervals in process, from any test runner. */
export { replay } from './replay.ts';
export type { IntervalInput, ReplayOptions, ReplayResult, ReplayedInterval } from './replay.ts';
