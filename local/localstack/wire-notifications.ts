/**
 * After `npm run local:deploy`: makes sure the bucket tells the ingest function of uploads.
 * CDK sets a bucket's notifications through a custom resource (Custom::S3BucketNotifications),
 * which some LocalStack images do not run; the deployment then succeeds but no upload is ever
 * admitted. This sets the same notification directly when the bucket has none for `incoming/`.
 *
 *   tsx local/localstack/wire-notifications.ts [cdk.out/localstack-outputs.json]
 */
import { readFile } from 'node:fs/promises';
import { GetBucketNotificationConfigurationCommand, PutBucketNotificationConfigurationCommand } from '@aws-sdk/client-s3';
import { INCOMING } from '../../core/layout.ts';
import { makeS3Client } from '../../functions/aws/clients.ts';

const file = process.argv[2] ?? 'cdk.out/localstack-outputs.json';
const outputs = Object.values(JSON.parse(await readFile(file, 'utf8')) as Record<string, Record<string, string>>).flatMap((o) => Object.entries(o));
const output = (pattern: RegExp, what: string) => {
  const found = outputs.filter(([id]) => pattern.test(id)).map(([, v]) => v);
  if (found.length !== 1) throw new Error(`${file} names ${found.length} ${what}; expected one`);
  return found[0]!;
};
const bucket = output(/BucketName[0-9A-F]{8}$/, 'pipeline buckets');
const ingestArn = output(/IngestFunctionArn[0-9A-F]{8}$/, 'ingest functions');

const client = makeS3Client(process.env, { credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
const current = await client.send(new GetBucketNotificationConfigurationCommand({ Bucket: bucket }));
const wired = (current.LambdaFunctionConfigurations ?? []).some(
  (c) => c.LambdaFunctionArn === ingestArn && (c.Filter?.Key?.FilterRules ?? []).some((r) => r.Name?.toLowerCase() === 'prefix' && r.Value === INCOMING),
);
if (wired) {
  console.log(`s3://${bucket}/${INCOMING} already notifies ${ingestArn}`);
} else {
  await client.send(
    new PutBucketNotificationConfigurationCommand({
      Bucket: bucket,
      NotificationConfiguration: {
        ...current,
        LambdaFunctionConfigurations: [
          ...(current.LambdaFunctionConfigurations ?? []),
          { LambdaFunctionArn: ingestArn, Events: ['s3:ObjectCreated:*'], Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: INCOMING }] } } },
        ],
      },
    }),
  );
  console.log(`the deployment left s3://${bucket} without its notification; set it: ${INCOMING} -> ${ingestArn}`);
}
