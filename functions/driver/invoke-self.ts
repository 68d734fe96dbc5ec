import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { awsClientConfig } from '../aws/clients.ts';

/**
 * Starts a fresh invocation of the driver function, asynchronously, so that the stream continues
 * past the 15-minute limit of one. The endpoint, for emulators, comes from AWS_ENDPOINT_URL_LAMBDA
 * or AWS_ENDPOINT_URL, which the SDK reads itself.
 */
export function invokeSelf(functionName: string): () => Promise<void> {
  let client: LambdaClient | undefined;
  return async () => {
    if (!client) {
      const { region, maxAttempts, retryMode } = awsClientConfig().sqs;
      client = new LambdaClient({ region, maxAttempts, retryMode });
    }
    const response = await client.send(
      new InvokeCommand({
        FunctionName: functionName,
        InvocationType: 'Event',
        Payload: new TextEncoder().encode(JSON.stringify({ source: 'dstream.driver', reason: 'hand-over' })),
      }),
    );
    if (response.StatusCode !== 202) throw new Error(`invoking ${functionName} returned status ${response.StatusCode}, not 202 (accepted)`);
  };
}
