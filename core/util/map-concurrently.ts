/**
 * Store requests one fan-out keeps in flight: enough to hide an object store's latency, far below
 * any open-file limit, so a list of any length (uploads, entries, splits, tasks) maps in bounded
 * memory and descriptors.
 */
export const STORE_CONCURRENCY = 32;

/**
 * `items.map(fn)` with at most `limit` calls in flight: enough parallel requests to hide latency,
 * few enough not to trip the service's throttling. Results keep the order of `items`. On the first
 * failure no new call starts; the failure is rethrown once the calls in flight have settled.
 */
export async function mapConcurrently<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const index = next++;
      try {
        results[index] = await fn(items[index]!, index);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const workers = Array.from({ length: Math.min(limit, items.length) }, worker);
  const settled = await Promise.allSettled(workers);
  const rejection = settled.find((outcome) => outcome.status === 'rejected');
  if (rejection) throw (rejection as PromiseRejectedResult).reason;
  return results;
}
