/**
 * Control planes: what invokes the driver, when, how long it lives, and how it learns that a
 * stage's tasks settled. Both are functions/driver/handler.ts as infra/dstream-pipeline.ts deploys
 * it, with an EventBridge rule invoking it every minute as a watchdog (returning at once while a
 * live driver holds the lease, or after one GET while the stream is dormant).
 */
import { queueChangeFeed } from '../../core/ports/change-feed.ts';
import { DEFAULT_EVENTS_FALLBACK_MS, DEFAULT_RUN_IN_DRIVER_BELOW_BYTES } from '../../functions/config.ts';
import type { ControlPlane, Deployment } from './deployment.ts';

const WATCHDOG_MS = 60_000;

/** The watchdog rule: rate(1 minute), from the stream's start. */
function startWatchdog(deployment: Deployment): void {
  const tick = (at: number) => {
    void deployment.invokeDriver(at, { source: 'aws.events', 'detail-type': 'Scheduled Event' });
    deployment.sim.at(at + WATCHDOG_MS, () => tick(at + WATCHDOG_MS));
  };
  tick(deployment.epoch);
}

/**
 * As deployed before the driver woke on events (stayAwake 'always', no completion notices): an
 * always-on driver that sleeps to each interval's end in its invocation, never goes dormant, polls
 * completions by LIST every second, and hands over to a fresh invocation (a wake message) ~90 s
 * before its 15-minute timeout.
 */
export const currentControlPlane: ControlPlane = {
  name: 'current',
  env: {},
  deps: (deployment) => ({
    driver: { wake: deployment.wake, stayAwakeMs: Infinity, dormantAfterIntervals: Infinity },
    task: {},
    ingest: { wake: deployment.wake },
  }),
  start: startWatchdog,
};

/**
 * The event-driven control plane, the construct's defaults: the driver waits in its invocation
 * only for an interval end within 2 s (stayAwakeMs), else sets a timer (a delayed wake message)
 * and returns; after about a minute of intervals without uploads it goes dormant, and ingest's
 * wake message for the next upload starts it again. While a stage runs it long-polls the events
 * queue, which the task function notifies as each task settles, reading the tasks each notice
 * names, and listing completions after 5 s without one (DSTREAM_EVENTS_FALLBACK_MS). A stage whose
 * tasks read under 8 MiB runs in the driver (DSTREAM_RUN_IN_DRIVER_BELOW_BYTES).
 */
export const eventDrivenControlPlane: ControlPlane = {
  name: 'new',
  // Only their presence matters to functionConfig (the scheduler polls at the fallback): the deps carry the queues.
  env: { DSTREAM_EVENTS_QUEUE_URL: 'modelled:events', DSTREAM_WAKE_QUEUE_URL: 'modelled:wake', DSTREAM_EVENTS_FALLBACK_MS: String(DEFAULT_EVENTS_FALLBACK_MS) },
  deps: (deployment) => ({
    driver: { wake: deployment.wake, changes: queueChangeFeed(deployment.eventsQueue), runInDriverBelowBytes: DEFAULT_RUN_IN_DRIVER_BELOW_BYTES },
    task: { notify: (notice) => deployment.eventsQueue.send([JSON.stringify(notice)]) },
    ingest: { wake: deployment.wake },
  }),
  start: startWatchdog,
};
