/**
 * The object store port on S3. Keys of the port map to `prefix + key` inside one bucket.
 * Requests are retried by the SDK, as its client is configured (functions/aws/clients.ts): this
 * adapter adds only what the SDK cannot do, resuming a body that breaks mid-way, and resending a
 * conditional write that S3 answered with 409 (another one to the key was in flight).
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { ObjectNotFoundError, validateKey, type ObjectInfo, type ObjectStore, type ReadOptions } from '../../core/ports/object-store.ts';
import { mapConcurrently } from '../../core/util/map-concurrently.ts';
import { attemptsOf, httpStatusOf, isBrokenConnection } from './clients.ts';

const MiB = 1024 * 1024;

export interface S3ObjectStoreOptions {
  client: S3Client;
  bucket: string;
  /** A folder inside the bucket that holds every key of this store, e.g. `pipelines/wordcount`. */
  prefix?: string;
  /** Bodies larger than this are uploaded in parts. Default 16 MiB. */
  multipartThresholdBytes?: number;
  /** Size of every part but the last. S3 rejects parts under 5 MiB; tests against emulators use less. Default 8 MiB. */
  partSizeBytes?: number;
  /** Parts uploaded at the same time. Default 4. */
  partConcurrency?: number;
}

export class S3ObjectStore implements ObjectStore {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly multipartThresholdBytes: number;
  private readonly partSizeBytes: number;
  private readonly partConcurrency: number;

  constructor(options: S3ObjectStoreOptions) {
    if (!options.bucket) throw new Error('S3ObjectStore needs a bucket name');
    this.client = options.client;
    this.bucket = options.bucket;
    this.prefix = options.prefix ? `${validateKey(options.prefix.replace(/\/$/, ''))}/` : '';
    this.multipartThresholdBytes = positive('multipartThresholdBytes', options.multipartThresholdBytes ?? 16 * MiB);
    this.partSizeBytes = positive('partSizeBytes', options.partSizeBytes ?? 8 * MiB);
    this.partConcurrency = positive('partConcurrency', options.partConcurrency ?? 4);
  }

  async get(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    const chunks: Uint8Array[] = [];
    try {
      for await (const chunk of this.stream(key, this.s3Key(key), 0, undefined, options)) chunks.push(chunk);
    } catch (error) {
      if (error instanceof ObjectNotFoundError) return undefined;
      throw error;
    }
    return Buffer.concat(chunks);
  }

  getRange(key: string, start: number, end?: number, options?: ReadOptions): AsyncIterable<Uint8Array> {
    const Key = this.s3Key(key);
    if (!Number.isSafeInteger(start) || start < 0) throw new RangeError(`range start must be an integer >= 0, got ${start}`);
    if (end !== undefined && (!Number.isSafeInteger(end) || end < start)) {
      throw new RangeError(`range end must be an integer >= the start (${start}), got ${end}`);
    }
    return this.stream(key, Key, start, end, options?.version === undefined ? undefined : { version: options.version });
  }

  async head(key: string, options?: ReadOptions): Promise<ObjectInfo | undefined> {
    const Key = this.s3Key(key);
    const VersionId = options?.version;
    try {
      const response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key, VersionId }));
      return {
        key,
        size: response.ContentLength ?? 0,
        lastModified: response.LastModified?.getTime() ?? 0,
        ...(response.VersionId && response.VersionId !== 'null' ? { version: response.VersionId } : {}),
      };
    } catch (error) {
      if (await this.isMissing(Key, error, options)) return undefined;
      throw error;
    }
  }

  async put(key: string, body: Uint8Array | string): Promise<void> {
    const Key = this.s3Key(key);
    const bytes = toBytes(body);
    await this.write(Key, bytes, false);
  }

  async putIfAbsent(key: string, body: Uint8Array | string): Promise<boolean> {
    const Key = this.s3Key(key);
    const bytes = toBytes(body);
    // A request the SDK sent more than once may have been applied by an attempt whose response
    // was lost: the 412 that follows could then be our own object.
    let ourWriteMayHaveLanded = false;
    const attempts = await attemptsOf(this.client);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.write(Key, bytes, true);
        return true;
      } catch (error) {
        if (sdkAttemptsOf(error) > 1) ourWriteMayHaveLanded = true;
        // 409 ConditionalRequestConflict: another conditional write to this key is in flight. S3's
        // advice is to retry, which the SDK does not; the retry then meets the winner's object
        // (412) or, if that write failed, creates ours.
        if (isConditionalConflict(error) && attempt < attempts) continue;
        if (!isPreconditionFailed(error)) throw error;
        if (!ourWriteMayHaveLanded) return false;
        // Identical bytes are indistinguishable from our own earlier attempt, and for deterministic
        // writers are the same outcome.
        const existing = await this.get(key);
        return existing !== undefined && Buffer.from(existing).equals(bytes);
      }
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    if (typeof prefix !== 'string') throw new TypeError(`list prefix must be a string, got ${typeof prefix}`);
    let ContinuationToken: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken }));
      for (const object of page.Contents ?? []) {
        yield {
          key: object.Key!.slice(this.prefix.length),
          size: object.Size ?? 0,
          lastModified: object.LastModified?.getTime() ?? 0,
        };
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async delete(key: string): Promise<void> {
    const Key = this.s3Key(key);
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
  }

  /**
   * Whether a read failed because the object does not exist. S3 says 404 only to a caller allowed
   * to list the bucket without a prefix, which the pipeline's roles are not (infra/bucket-access.ts):
   * to them a missing key is a 403, like a refused read. Listing the key itself tells the two
   * apart; if that listing fails too, the 403 stands.
   */
  private async isMissing(Key: string, error: unknown, options?: ReadOptions): Promise<boolean> {
    if (isNotFound(error)) return true;
    if (httpStatusOf(error) !== 403) return false;
    if (options?.absentIfRefused) return true;
    const listed = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: Key, MaxKeys: 1 })).catch(() => undefined);
    // The key itself sorts first among the keys it prefixes.
    return listed !== undefined && listed.Contents?.[0]?.Key !== Key;
  }

  private s3Key(key: string): string {
    return this.prefix + validateKey(key);
  }

  /**
   * Streams [start, end) of the current object or of one version; missing, it throws
   * ObjectNotFoundError. A body that breaks mid-way (which the SDK, having had its response, does
   * not retry) is resumed from the first byte not yet yielded, pinned to the version, or else to
   * the ETag first read, so that a concurrent overwrite cannot splice two versions together; as
   * many times as the client makes attempts.
   */
  private async *stream(key: string, Key: string, start: number, end: number | undefined, options?: ReadOptions): AsyncGenerator<Uint8Array> {
    const VersionId = options?.version;
    if (end === start) {
      // No Range header can ask for zero bytes; only whether the object exists is left to find out.
      if (!(await this.head(key, options))) throw new ObjectNotFoundError(key);
      return;
    }
    const attempts = await attemptsOf(this.client);
    let position = start;
    let etag: string | undefined;
    for (let breaks = 0; ; ) {
      let body: AsyncIterable<Uint8Array> & { destroy?: () => void };
      try {
        const response = await this.client.send(
          new GetObjectCommand({
            Bucket: this.bucket,
            Key,
            VersionId,
            // A whole object is asked for without a Range: S3 refuses `bytes=0-` of an empty one.
            Range: position === 0 && end === undefined ? undefined : `bytes=${position}-${end === undefined ? '' : end - 1}`,
            IfMatch: VersionId === undefined ? etag : undefined,
          }),
        );
        etag ??= response.ETag;
        body = response.Body as typeof body;
      } catch (error) {
        if (await this.isMissing(Key, error, options)) throw new ObjectNotFoundError(key);
        // 416: the range starts at or past the end of the object, so it holds no bytes.
        if (httpStatusOf(error) === 416) return;
        if (isPreconditionFailed(error)) {
          throw new Error(`object ${key} was overwritten while being read (at byte ${position}); read it again`);
        }
        throw error;
      }
      try {
        for await (const chunk of body) {
          position += chunk.byteLength;
          yield chunk;
        }
        return;
      } catch (error) {
        if (!isBrokenConnection(error) || ++breaks >= attempts) throw error;
      } finally {
        body.destroy?.();
      }
    }
  }

  private async write(Key: string, bytes: Uint8Array, ifAbsent: boolean): Promise<void> {
    const IfNoneMatch = ifAbsent ? '*' : undefined;
    if (bytes.byteLength <= this.multipartThresholdBytes) {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: bytes, IfNoneMatch }));
      return;
    }
    // CRC32 declared up front, because S3 refuses to complete an upload whose parts carry
    // checksums the upload was not created with (and the SDK adds them by default).
    const { UploadId } = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key, ChecksumAlgorithm: 'CRC32' }),
    );
    try {
      const partCount = Math.ceil(bytes.byteLength / this.partSizeBytes);
      const parts = await mapConcurrently(
        Array.from({ length: partCount }, (_, index) => index + 1),
        this.partConcurrency,
        async (PartNumber): Promise<CompletedPart> => {
          const Body = bytes.subarray((PartNumber - 1) * this.partSizeBytes, PartNumber * this.partSizeBytes);
          const part = await this.client.send(
            new UploadPartCommand({ Bucket: this.bucket, Key, UploadId, PartNumber, Body, ChecksumAlgorithm: 'CRC32' }),
          );
          return { PartNumber, ETag: part.ETag, ChecksumCRC32: part.ChecksumCRC32 };
        },
      );
      await this.client.send(
        new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId, MultipartUpload: { Parts: parts }, IfNoneMatch }),
      );
    } catch (error) {
      // Best effort: the original failure is what the caller needs to see, and the bucket's
      // lifecycle rule for incomplete uploads collects whatever an abort misses.
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId })).catch(() => undefined);
      throw error;
    }
  }
}

function toBytes(body: Uint8Array | string): Uint8Array {
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  if (body instanceof Uint8Array) return body;
  throw new TypeError(`object body must be a Uint8Array or a string, got ${typeof body}`);
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be an integer >= 1, got ${value}`);
  return value;
}

function errorName(error: unknown): string | undefined {
  return (error as { name?: string } | undefined)?.name;
}

/** GetObject says NoSuchKey; HeadObject, having no body to say it in, says NotFound. A missing bucket is not a missing object. */
function isNotFound(error: unknown): boolean {
  const name = errorName(error);
  if (name === 'NoSuchBucket') return false;
  return name === 'NoSuchKey' || name === 'NotFound' || httpStatusOf(error) === 404;
}

function isPreconditionFailed(error: unknown): boolean {
  return errorName(error) === 'PreconditionFailed' || httpStatusOf(error) === 412;
}

function isConditionalConflict(error: unknown): boolean {
  return errorName(error) === 'ConditionalRequestConflict' || httpStatusOf(error) === 409;
}

/** How many times the SDK sent the request that ended in `error`. */
function sdkAttemptsOf(error: unknown): number {
  return (error as { $metadata?: { attempts?: number } } | undefined)?.$metadata?.attempts ?? 1;
}
