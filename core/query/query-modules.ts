import type { ObjectStore } from '../ports/object-store.ts';
import { readJson } from '../ports/object-store.ts';
import type { BatchJob, Pipeline } from '../graph/pipeline.ts';
import type { TaskRecord } from '../exec/task.ts';
import type { ModuleSource, PipelineModule } from '../runtime/task-handler.ts';
import { InvalidTaskMessageError } from '../scheduler/task-message.ts';
import { intervalOf, keys } from '../layout.ts';
import { queryJob, type QuerySpec } from './query-job.ts';

/** Query jobs a worker keeps built, by fingerprint: a shell session asks a handful of queries, some again. */
const KEPT_JOBS = 16;

/**
 * What a shell session's workers run, started once for the session: each query's job, rebuilt
 * from the spec the shell leaves in the query's scratch (`keys.querySpec`, by the fingerprint the
 * task carries), and the stream's pipeline for the tasks that recompute lost stream data from an
 * interval's lineage, when the session was given one.
 */
export function queryModules(pipeline?: Pipeline): ModuleSource {
  const jobs = new Map<string, BatchJob>();
  return {
    kind: 'modules',
    async moduleFor(task: TaskRecord, store: ObjectStore): Promise<PipelineModule> {
      if (intervalOf(task.scope) !== undefined) {
        if (!pipeline) throw new InvalidTaskMessageError(`task of ${task.scope}: this query session has no pipeline to recompute the stream's data with`);
        return pipeline;
      }
      let job = jobs.get(task.fingerprint);
      if (!job) {
        const spec = await readJson<QuerySpec>(store, keys.querySpec(task.fingerprint));
        // A copy of a task of a query that ended (and whose scratch is gone) names no task any more.
        if (!spec) throw new InvalidTaskMessageError(`task of ${task.scope}: no query of this session has fingerprint ${task.fingerprint}`);
        job = queryJob(spec);
        jobs.set(task.fingerprint, job);
        if (jobs.size > KEPT_JOBS) jobs.delete(jobs.keys().next().value!);
      }
      return job;
    },
  };
}
