/**
 * Finds LocalStack (at LOCALSTACK_ENDPOINT, else http://localhost:4566) for the tests that check
 * the adapters against it. When it is not there the caller skips those tests, and says so loudly:
 * a skipped check must never pass for a passed one.
 */
export const LOCALSTACK_ENDPOINT = process.env.LOCALSTACK_ENDPOINT ?? 'http://localhost:4566';

/** LocalStack accepts any credentials; these are explicit so that nothing reads ~/.aws. */
export const LOCALSTACK_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };

/** The endpoint when LocalStack answers and runs `service`; otherwise undefined, after a warning. */
export async function findLocalStack(service: 's3' | 'sqs', checked: string): Promise<string | undefined> {
  const problem = await probe(service);
  if (problem === undefined) return LOCALSTACK_ENDPOINT;
  console.warn(`SKIPPED: ${problem} — ${checked} not checked against LocalStack`);
  return undefined;
}

async function probe(service: string): Promise<string | undefined> {
  let health: { services?: Record<string, string> };
  try {
    const response = await fetch(`${LOCALSTACK_ENDPOINT}/_localstack/health`, { signal: AbortSignal.timeout(1_500) });
    if (!response.ok) return `LocalStack health check at ${LOCALSTACK_ENDPOINT} answered ${response.status}`;
    health = (await response.json()) as typeof health;
  } catch {
    return `LocalStack not reachable at ${LOCALSTACK_ENDPOINT}`;
  }
  const state = health.services?.[service];
  if (state !== 'available' && state !== 'running') {
    return `LocalStack at ${LOCALSTACK_ENDPOINT} does not run ${service} (state: ${state ?? 'absent'})`;
  }
  return undefined;
}
