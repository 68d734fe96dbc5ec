/** dstream/cdk: the construct that deploys a pipeline on AWS. */
export * from './dstream-pipeline.ts';
export type { PipelineMonitoring } from './pipeline-monitoring.ts';
