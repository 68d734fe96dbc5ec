import type { ObjectStore } from '../ports/object-store.ts';
import { listAll, readJson } from '../ports/object-store.ts';
import { intervalScope } from '../layout.ts';
import { shortHash } from '../util/hash.ts';
import { mapConcurrently, STORE_CONCURRENCY } from '../util/map-concurrently.ts';
import { byKeyAndVersion, type Upload } from './splits.ts';

/**
 * An upload as admitted: where its bytes are pinned (the key, and the version where the store
 * keeps versions), or why it cannot be read. A refused upload still belongs to exactly one
 * interval, which records it under errors/ and counts it, so that no upload goes unseen.
 */
export interface IntakeUpload extends Upload {
  /** Tells apart two arrivals at a key whose store keeps no version of them (S3's event sequencer). */
  sequencer?: string;
  /** Why the upload is not read: a name the store refuses, gone before it was pinned, and so on. */
  refused?: string;
}

const base = (k: number) => `intake/${intervalScope(k)}`;
const entryKey = (k: number, id: string) => `${base(k)}/entries/${id}.json`;
const sealingKey = (k: number) => `${base(k)}/_SEALING`;
const sealedKey = (k: number) => `${base(k)}/_SEALED`;

/** The markers a seal writes, first as it starts and then with its final list: their dates time the seal. */
export const sealMarkerKeys = (k: number) => ({ sealing: sealingKey(k), sealed: sealedKey(k) });
const claimKey = (id: string) => `intake/claims/${id}.json`;
const idOfEntry = (key: string) => key.slice(key.lastIndexOf('/') + 1, -'.json'.length);

export function uploadId(upload: IntakeUpload): string {
  return shortHash(`${upload.key}\n${upload.version ?? ''}\n${upload.sequencer ?? ''}`, 24);
}

/** Checks, at the seal, that an upload can still be read; answers why not, or undefined. */
export type UploadCheck = (upload: IntakeUpload) => Promise<string | undefined>;

/**
 * Assigns an upload to an interval, at or after `interval`: exactly one, never none, even when
 * the upload races the seal. The entry is written first; if the interval was not yet sealing
 * when we look afterwards, every seal's listing (which starts after it marks sealing) sees it.
 * If it was, we cannot know whether the listing saw it, so the upload is also entered in the
 * next interval, and the seals settle it: whichever interval's final list takes it first, owns it.
 * Idempotent: S3 may deliver a notification twice.
 */
export async function admitUpload(store: ObjectStore, upload: IntakeUpload, interval: number): Promise<number> {
  const id = uploadId(upload);
  const body = JSON.stringify(upload);
  for (let k = interval; ; k++) {
    await store.putIfAbsent(entryKey(k, id), body);
    if (!(await store.head(sealingKey(k)))) return k;
  }
}

/**
 * The seal's first step: marks interval k sealing and reads its final list, if one was written.
 * At once: marking an interval sealed already changes nothing for ingest, which admits to the next
 * either way. The mark is create-if-absent, so its date is the first seal's start, and a driver may
 * take this step before it knows whether k still needs sealing: an interval sealed or planned
 * is marked already, and one marked early only has more uploads entered in the next interval too.
 */
export async function markSealing(store: ObjectStore, k: number): Promise<IntakeUpload[] | undefined> {
  const [sealed] = await Promise.all([readJson<IntakeUpload[]>(store, sealedKey(k)), store.putIfAbsent(sealingKey(k), '')]);
  return sealed;
}

export interface SealOptions {
  /** Checks each upload can still be read; one found unreadable is sealed as refused, with the reason. */
  check?: UploadCheck;
  /**
   * Given the list this seal proposes, runs while the list is made final: work derived from it that
   * may be written early because it means nothing until a record names it (the lineage's
   * content-addressed upload list and splits). The list sealInterval returns is the proposed
   * array itself when this seal's list won, another array when a racing seal's did.
   */
  beside?: (proposed: IntakeUpload[]) => Promise<unknown>;
  /** The seal's first step (markSealing), when the caller took it already. */
  marked?: Promise<IntakeUpload[] | undefined>;
}

/**
 * Closes interval k to new uploads and returns its uploads, the same list to every caller: a
 * driver restarted mid-seal, or two racing, agree through create-if-absent of the sealed list.
 */
export async function sealInterval(store: ObjectStore, k: number, options: SealOptions = {}): Promise<IntakeUpload[]> {
  const { check, beside } = options;
  const sealed = await (options.marked ?? markSealing(store, k));
  if (sealed) return sealed;
  const entries = await listAll(store, `${base(k)}/entries/`);
  // Each upload is claimed for k as it is read, create-if-absent: created, no seal claimed it before,
  // which is all reading the claim would tell. Claiming before the checks below is what claiming
  // after them did: an upload no earlier list owns is taken, and a claim counts only if the final
  // list agrees (ownedElsewhere), so a claim of an upload this seal then leaves out misleads no one.
  const finalLists = new Map<number, Promise<Set<string> | undefined>>();
  const read = await mapConcurrently(entries, STORE_CONCURRENCY, async (e) => {
    const id = idOfEntry(e.key);
    const [upload, claimed] = await Promise.all([readJson<IntakeUpload>(store, e.key), store.putIfAbsent(claimKey(id), String(k))]);
    return upload && { upload, elsewhere: !claimed && (await ownedElsewhere(store, upload, k, finalLists, await store.get(claimKey(id)))) };
  });
  const candidates = read.filter((r): r is { upload: IntakeUpload; elsewhere: boolean } => !!r);
  const taken = await mapConcurrently(
    candidates.filter((c) => !c.elsewhere).map((c) => c.upload),
    STORE_CONCURRENCY,
    async (upload): Promise<IntakeUpload> => {
      const refused = upload.refused ?? (await check?.(upload));
      return refused === undefined ? upload : { ...upload, refused };
    },
  );
  taken.sort((a, b) => byKeyAndVersion(a, b) || uploadId(a).localeCompare(uploadId(b)));
  // Every claim is written by now, so a later seal, which starts once this list is final, finds them.
  const [won] = await Promise.all([store.putIfAbsent(sealedKey(k), JSON.stringify(taken)), beside?.(taken)]);
  if (won) return taken;
  return (await readJson<IntakeUpload[]>(store, sealedKey(k)))!;
}

/**
 * True when an earlier interval's final list already holds this upload. A final list never
 * changes once written, so each one found is kept in `finalLists` for the rest of the seal; a list
 * not written yet is looked for again, after the claim was read, as when checks ran one by one.
 */
async function ownedElsewhere(
  store: ObjectStore,
  upload: IntakeUpload,
  k: number,
  finalLists: Map<number, Promise<Set<string> | undefined>>,
  claim: Uint8Array | undefined,
): Promise<boolean> {
  const id = uploadId(upload);
  if (!claim) return false;
  const owner = Number(Buffer.from(claim).toString('utf8'));
  if (owner === k) return false;
  let ids = finalLists.get(owner);
  if (!ids) {
    // Shared by the checks in flight, so a large list is read once, not once per check.
    ids = readJson<IntakeUpload[]>(store, sealedKey(owner)).then((list) => (list ? new Set(list.map(uploadId)) : undefined));
    finalLists.set(owner, ids);
  }
  const found = await ids;
  if (found) return found.has(id);
  if (finalLists.get(owner) === ids) finalLists.delete(owner);
  // The shared read may have looked before this upload's claim was read: look again, after it.
  const list = await readJson<IntakeUpload[]>(store, sealedKey(owner));
  return !!list?.some((u) => uploadId(u) === id);
}

export async function isSealed(store: ObjectStore, k: number): Promise<boolean> {
  return !!(await store.head(sealedKey(k)));
}

/**
 * Whether any upload was admitted to an interval from `from` through `through`: what a driver
 * looks for after it marks the stream dormant, so that an upload that raced the mark is never
 * left waiting (one LIST per interval looked at, stopping at the first entry).
 */
export async function hasAdmittedUploads(store: ObjectStore, from: number, through: number): Promise<boolean> {
  for (let k = from; k <= through; k++) {
    for await (const _ of store.list(`${base(k)}/entries/`)) return true;
  }
  return false;
}
