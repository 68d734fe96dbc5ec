import type { ObjectStore } from '../../core/ports/object-store.ts';

/** `store`, writing each request made through it to `requests` as `<method> <key or prefix>`: a recorder around the real store, not a stand-in. */
export function recordedStore(store: ObjectStore, requests: string[]): ObjectStore {
  return new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        requests.push(`${String(name)} ${String(args[0])}`);
        return value.apply(target, args);
      };
    },
  });
}
