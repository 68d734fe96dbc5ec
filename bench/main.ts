/**
 * `npm run bench`: every figure from one run, side by side. Sizes: BENCH_MB (default 100) of
 * input for the throughput runs. Timing is measured, never asserted: the machine is shared.
 */
import { printTable } from './table.ts';
import { benchMemory, benchThroughput } from './throughput.ts';
import { benchRecovery, benchStragglers } from './fault-tolerance.ts';
import { benchRequests } from './requests.ts';
import { benchLiveRate } from './live-rate.ts';
import { benchCodec } from './codec.ts';
import { benchSealing } from './sealing.ts';
import { benchAws } from './aws/index.ts';
import { benchFixedCosts, type FixedCostCase } from './fixed-costs.ts';
import { cpus } from 'node:os';

const totalMb = Number(process.env.BENCH_MB ?? 100);
const only = process.env.BENCH_ONLY?.split(',');
const want = (name: string) => !only || only.includes(name);

console.log(`dstream bench: ${cpus().length} cores, Node ${process.version}, ${totalMb} MB of input for throughput`);
if (want('throughput')) {
  const { rows, breakdown } = await benchThroughput(totalMb);
  printTable(`Throughput: WordCount and Grep over ${totalMb} MB in 4 intervals, after a warm-up interval counted for neither (lineage, shuffle and partition files on)`, rows);
  printTable('Where the time went, same runs (4 measured intervals added up; start-up once)', breakdown);
}
if (want('fixed')) {
  const cases: FixedCostCase[] = [{ partitions: 4, stages: 2 }, { partitions: 16, stages: 2 }, { partitions: 32, stages: 2 }, { partitions: 32, stages: 4 }];
  printTable('Fixed costs: an interval of almost no data, seal to commit (WordCount in 2 stages, and a 4-stage variant; 2 workers)', await benchFixedCosts(cases));
}
if (want('memory')) printTable('Worker memory against the split it read (WordCount, 1 worker, 1 split)', await benchMemory());
if (want('live')) printTable('Live runtime, 1-second intervals: highest input rate that keeps up', await benchLiveRate());
if (want('recovery')) printTable('Recovery of a lost state chain of 8 intervals against serial replay', await benchRecovery(8, 4));
if (want('stragglers')) printTable('An interval with one task 10x slower', await benchStragglers(24, [2, 4]));
if (want('requests')) printTable('Object-store requests per interval (WordCount)', await benchRequests());
if (want('codec')) printTable('Record codec: encode and decode', await benchCodec());
if (want('sealing')) {
  printTable('One interval of many small uploads (replay, WordCount, 2 workers, 4 splits): admission, sealing, lineage size', await benchSealing([1_000, 10_000, 100_000]));
}
// Last: its summary is the bench's last line.
if (want('aws')) await benchAws();
