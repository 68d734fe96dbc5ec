import { describe, expect, it } from 'vitest';
import { awsClientConfig } from '../../functions/aws/clients.ts';

describe('awsClientConfig', () => {
  it('without an environment: us-east-1, AWS endpoints, adaptive retries', () => {
    const { s3, sqs } = awsClientConfig({});
    for (const config of [s3, sqs]) {
      expect(config).toMatchObject({ region: 'us-east-1', maxAttempts: 5, retryMode: 'adaptive' });
      expect(config.endpoint).toBeUndefined();
    }
  });

  it('bounds how long a connection may take and a socket may idle, so a hung request fails and is retried', () => {
    const { s3, sqs } = awsClientConfig({});
    for (const config of [s3, sqs]) {
      const handler = config.requestHandler as { connectionTimeout?: number; socketTimeout?: number };
      expect(handler.connectionTimeout).toBeGreaterThan(0);
      expect(handler.socketTimeout).toBeGreaterThan(0);
    }
    // Above SQS's longest long poll, 20 s.
    expect((sqs.requestHandler as { socketTimeout: number }).socketTimeout).toBeGreaterThan(20_000);
  });

  it('takes the region from AWS_REGION before AWS_DEFAULT_REGION', () => {
    expect(awsClientConfig({ AWS_DEFAULT_REGION: 'eu-west-1' }).s3.region).toBe('eu-west-1');
    expect(awsClientConfig({ AWS_REGION: 'ap-south-1', AWS_DEFAULT_REGION: 'eu-west-1' }).sqs.region).toBe('ap-south-1');
  });

  it('AWS_ENDPOINT_URL points both clients at an emulator, S3 with path-style buckets', () => {
    const { s3, sqs } = awsClientConfig({ AWS_ENDPOINT_URL: 'http://localhost:4566' });
    expect(s3).toMatchObject({ endpoint: 'http://localhost:4566', forcePathStyle: true });
    expect(sqs.endpoint).toBe('http://localhost:4566');
    expect(sqs).not.toHaveProperty('forcePathStyle');
  });

  it('a service-specific endpoint wins over AWS_ENDPOINT_URL for its service only', () => {
    const { s3, sqs } = awsClientConfig({
      AWS_ENDPOINT_URL: 'http://localhost:4566',
      AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9000',
    });
    expect(s3).toMatchObject({ endpoint: 'http://127.0.0.1:9000', forcePathStyle: true });
    expect(sqs.endpoint).toBe('http://localhost:4566');
  });

  it('an S3 endpoint override alone leaves SQS on AWS', () => {
    const { s3, sqs } = awsClientConfig({ AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9000' });
    expect(s3.forcePathStyle).toBe(true);
    expect(sqs).not.toHaveProperty('endpoint');
  });

  it('takes the attempts from AWS_MAX_ATTEMPTS', () => {
    expect(awsClientConfig({ AWS_MAX_ATTEMPTS: '9' }).s3.maxAttempts).toBe(9);
  });

  it('refuses an endpoint that is not a URL, naming the variable', () => {
    expect(() => awsClientConfig({ AWS_ENDPOINT_URL_SQS: 'localhost 4566' })).toThrow(
      'AWS_ENDPOINT_URL_SQS is not a URL: "localhost 4566"',
    );
  });

  it('refuses attempts that are not a positive integer', () => {
    expect(() => awsClientConfig({ AWS_MAX_ATTEMPTS: '0' })).toThrow('AWS_MAX_ATTEMPTS must be an integer >= 1, got "0"');
  });
});
