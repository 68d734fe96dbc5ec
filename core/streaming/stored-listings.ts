import { listAll, type ObjectStore } from '../ports/object-store.ts';
import { parsePersisted, scopeOfKey, type Scope } from '../layout.ts';
import type { LineageRecord } from './lineage.ts';

/** The parts present at a persisted RDD's location, by key, with their sizes. */
export type StoredParts = (location: string) => Promise<ReadonlyMap<string, number>>;

/** One LIST of a location: what each caller did on its own before an interval shared its listings. */
export async function listStoredParts(store: ObjectStore, location: string): Promise<ReadonlyMap<string, number>> {
  return new Map((await listAll(store, `${location}/`)).map((o) => [o.key, o.size]));
}

/**
 * The persisted RDDs an interval reads from earlier intervals (state, windows), each listed once
 * for the interval: a listing names the parts present and carries their sizes, which is all that
 * the empty-stage check (stagesWithoutTasks), the scheduler's look for lost parts and the
 * in-driver bound ask of them. Nothing is listed before `ready` settles (the earlier intervals'
 * stages are done, so what they persist is complete): no caller finds missing a part that is only
 * not written yet. A listing is a snapshot, as each caller's own LIST was: a part lost after it
 * is found by the task that reads it (a fetch failure) and recomputed, as before. What the interval
 * persists itself is being written while it runs: a location of its own scope is listed afresh
 * each time it is asked for, at once, as before.
 */
export class StoredListings {
  private readonly listings = new Map<string, Promise<ReadonlyMap<string, number>>>();

  constructor(
    private readonly store: ObjectStore,
    private readonly scope: Scope,
    private readonly ready: Promise<void>,
  ) {}

  /** The parts present at `location`: of an earlier interval, listed once (after `ready`). */
  readonly parts: StoredParts = (location) => {
    if (scopeOfKey(`${location}/`) === this.scope) return listStoredParts(this.store, location);
    let listing = this.listings.get(location);
    if (!listing) {
      listing = this.ready.then(() => listStoredParts(this.store, location));
      // A listing started ahead may never be asked for (the interval stopped): no unhandled rejection.
      listing.catch(() => undefined);
      this.listings.set(location, listing);
    }
    return listing;
  };

  /** Starts listing each location `record`'s plan reads from earlier intervals. */
  prefetch(record: Pick<LineageRecord, 'plan'>): void {
    for (const node of record.plan) {
      if (node.kind === 'stored' && scopeOfKey(`${node.location}/`) !== this.scope) void this.parts(node.location);
    }
  }

  /**
   * A persisted part's size from the listing of its location, when that was listed here (0 for
   * a part the listing did not find); undefined when its location was not.
   */
  sizeOf(key: string): Promise<number> | undefined {
    const location = parsePersisted(key)?.location;
    const listing = location === undefined ? undefined : this.listings.get(location);
    return listing?.then((parts) => parts.get(key) ?? 0);
  }
}
