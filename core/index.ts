/** dstream's public API: what a pipeline module imports. */
export { definePipeline, defineBatch, Pipeline, BatchJob, StreamingContext, BatchContext } from './graph/pipeline.ts';
export type { PipelineOptions, SourceOptions } from './graph/pipeline.ts';
export { DStream, MapWithStateStream } from './graph/dstream.ts';
export type { State } from './graph/state.ts';
export { Rdd } from './rdd/rdd.ts';
export type { StoreObject, InitialState } from './graph/state-stream.ts';
export type { IntervalReport } from './streaming/driver.ts';
export type { MapWithStateSpec } from './graph/map-with-state-stream.ts';
