/**
 * How long the AWS services take, as the model's virtual clock charges it. Each figure is a
 * median (the model is about p50s), with where it is published. Where AWS publishes a range or
 * only an order of magnitude, the comment says which value of it is taken.
 */

/**
 * S3 small-object requests: "for small requests (for example, less than 512 KB) median latencies
 * are often in the tens of milliseconds range" (Best practices design patterns: optimizing Amazon S3 performance, "Timeouts and retries for
 * latency-sensitive applications",
 * https://docs.aws.amazon.com/whitepapers/latest/s3-optimizing-performance-best-practices/timeouts-and-retries-for-latency-sensitive-applications.html). First byte of a GET or
 * a HEAD: 20 ms; a PUT, which returns once the object is durable in several zones: 30 ms.
 */
export const S3_GET_FIRST_BYTE_MS = 20;
export const S3_HEAD_MS = 20;
export const S3_PUT_MS = 30;
/** DELETE: as small a request as a HEAD (same page). */
export const S3_DELETE_MS = 20;
/**
 * LIST: one page of up to 1,000 keys per request (ListObjectsV2,
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html); the page is built from
 * the index, slower than a GET: 40 ms, still "tens of milliseconds" (page above).
 */
export const S3_LIST_PAGE_MS = 40;
export const S3_LIST_PAGE_KEYS = 1000;
/**
 * Transfer after the first byte: "85–90 MB/s" per request connection (Performance guidelines for
 * Amazon S3, "Horizontally scale storage connections",
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance-guidelines.html, read 2025-06).
 */
export const S3_BYTES_PER_MS = (85 * 1024 * 1024) / 1000;
/**
 * Request rates S3 sustains per partitioned prefix: "at least 3,500 PUT/COPY/POST/DELETE or 5,500
 * GET/HEAD requests per second per partitioned Amazon S3 prefix" (Best practices design patterns:
 * optimizing Amazon S3 performance, https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html, read 2025-06).
 */
export const S3_PUT_PER_SECOND_PER_PREFIX = 3500;
export const S3_GET_PER_SECOND_PER_PREFIX = 5500;
/**
 * S3 event notifications to Lambda: "Typically, event notifications are delivered in seconds but
 * can sometimes take a minute or longer" (Amazon S3 Event Notifications,
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/EventNotifications.html, read 2025-06).
 * AWS publishes no median; 1 s, the low end of "seconds", is taken. The model's least certain figure.
 */
export const S3_NOTIFICATION_MS = 1000;

/**
 * SQS API calls (SendMessageBatch, ReceiveMessage with messages waiting, DeleteMessage,
 * ChangeMessageVisibility): AWS publishes no median for standard queues; 20 ms taken, as for S3's
 * small requests. Long polling "returns messages as soon as they become available"
 * (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html).
 */
export const SQS_REQUEST_MS = 20;
/** Entries per SendMessageBatch / DeleteMessageBatch / ReceiveMessage (the SQS API's limit of 10). */
export const SQS_BATCH = 10;
/**
 * SQS to Lambda: the event source mapping's pollers long-poll the queue and invoke the function
 * synchronously. A message sent is received by a waiting long poll within an SQS request time, then
 * the invoke: 20 ms + 20 ms. (Using Lambda with Amazon SQS,
 * https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html, read 2025-06: "Lambda polls the
 * queue and invokes your Lambda function synchronously".) Idle, the mapping keeps 5 long polls of
 * 20 s open ("Lambda ... reads up to five batches concurrently" at start, same page;
 * WaitTimeSeconds at most 20 s), each a billed ReceiveMessage.
 */
export const SQS_TO_LAMBDA_MS = 40;
export const ESM_IDLE_POLLERS = 5;
export const SQS_LONG_POLL_MS = 20_000;
/**
 * Lambda start: a cold start of a Node.js function (download, runtime start, module load) "vary
 * from under 100 ms to over 1 second" (Operating Lambda: Performance optimization – Part 1,
 * https://aws.amazon.com/blogs/compute/operating-lambda-performance-optimization-part-1/, read
 * 2025-06): 300 ms taken for a bundled Node.js 22 handler on Arm. A warm invoke adds a few ms of
 * service overhead (same post: "subsequent invocations ... processed immediately"): 5 ms.
 */
export const LAMBDA_COLD_START_MS = 300;
export const LAMBDA_WARM_START_MS = 5;
/**
 * How long an idle execution environment is kept for reuse: not published ("Lambda ... retains
 * the execution environment for some time", https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html).
 * 5 minutes taken, the low end of independent measurements.
 */
export const LAMBDA_KEEP_WARM_MS = 5 * 60_000;
/**
 * An asynchronous invoke (the driver's hand-over, the watchdog's EventBridge target, S3's
 * notification) queues the event before a function runs it: 50 ms taken for the internal queue
 * (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async.html publishes no figure).
 */
export const LAMBDA_ASYNC_INVOKE_MS = 50;
/** Default account limit of concurrent executions per Region (https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html). */
export const LAMBDA_ACCOUNT_CONCURRENCY = 1000;
/**
 * CPU: Lambda allocates CPU in proportion to memory, one full vCPU at 1,769 MB
 * (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html). Busy time measured
 * on this machine's core is scaled by 1769 / memory MB for functions below that (taking a
 * Graviton2 vCPU as fast as this core: an assumption).
 */
export const LAMBDA_MB_PER_VCPU = 1769;
