/**
 * Control planes: what invokes the driver, when, and how long it lives. The current one is
 * functions/driver/handler.ts as deployed by infra/dstream-pipeline.ts: an always-on driver that
 * sleeps to each interval's end, polls completions by LIST every second (functions/config.ts),
 * hands over to a fresh invocation of itself ~90 s before its 15-minute timeout, and an
 * EventBridge rule that invokes it every minute as a watchdog (returning at once while a live
 * driver holds the lease).
 */
import { createDriverHandler } from '../../functions/driver/handler.ts';
import type { ControlPlane } from './deployment.ts';

const WATCHDOG_MS = 60_000;

export const currentControlPlane: ControlPlane = {
  name: 'current',
  // Waits in its invocation for every interval end and never goes dormant; no events queue, so stages poll by LIST.
  driverHandler: (pipeline, deps) => createDriverHandler(pipeline, { ...deps, stayAwakeMs: Infinity, dormantAfterIntervals: Infinity }),
  start(deployment) {
    const tick = (at: number) => {
      void deployment.invokeDriver(at, { source: 'aws.events', 'detail-type': 'Scheduled Event' });
      deployment.sim.at(at + WATCHDOG_MS, () => tick(at + WATCHDOG_MS));
    };
    tick(deployment.epoch);
  },
};
