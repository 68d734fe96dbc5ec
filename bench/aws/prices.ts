/**
 * AWS list prices the cost model multiplies counts and durations by: us-east-1, on-demand, no
 * free tier (a pipeline shares the account's free tier with everything else in it). Each with the
 * page it is published on and when that page was read; re-read them before quoting a figure.
 */

/**
 * Lambda, Arm (Graviton2): $0.0000133334 per GB-second of billed duration, and $0.20 per million
 * requests. https://aws.amazon.com/lambda/pricing/ (read 2025-06). Billed duration includes the
 * INIT phase of a cold start for on-demand functions from 2025-08-01:
 * https://aws.amazon.com/blogs/compute/aws-lambda-standardizes-billing-for-init-phase/ (2025-04).
 */
export const LAMBDA_ARM_PER_GB_SECOND = 0.0000133334;
export const LAMBDA_PER_REQUEST = 0.2 / 1_000_000;

/**
 * S3 Standard requests: PUT, COPY, POST, LIST $0.005 per 1,000; GET, SELECT and all other
 * requests (HEAD among them) $0.0004 per 1,000; DELETE free.
 * https://aws.amazon.com/s3/pricing/ (Requests & data retrievals tab, read 2025-06).
 */
export const S3_PUT_LIST_PER_REQUEST = 0.005 / 1000;
export const S3_GET_PER_REQUEST = 0.0004 / 1000;
export const S3_DELETE_PER_REQUEST = 0;

/**
 * SQS standard queue: $0.40 per million requests (each 64 KB chunk of a payload is one request;
 * task messages are far smaller). https://aws.amazon.com/sqs/pricing/ (read 2025-06).
 */
export const SQS_PER_REQUEST = 0.4 / 1_000_000;

/**
 * EventBridge scheduled rules (the driver's watchdog, rate(1 minute)) are not charged: "there are
 * no charges for ... scheduled events" on the default bus. https://aws.amazon.com/eventbridge/pricing/ (read 2025-06).
 */
export const EVENTBRIDGE_SCHEDULED_EVENT = 0;

/** Managed Service for Apache Flink, the comparison the issue draws: $0.11 per KPU-hour, 2 KPU at least (1 + 1 for orchestration). https://aws.amazon.com/managed-service-apache-flink/pricing/ (read 2025-06). */
export const FLINK_SMALLEST_PER_DAY = 2 * 0.11 * 24;
