import { intervalScope } from '../../core/layout.ts';
import type { IntervalReport } from '../../core/streaming/driver.ts';
import type { LineageRecord } from '../../core/streaming/lineage.ts';
import type { IntakeUpload } from '../../core/streaming/intake.ts';
import type { PlanNode } from '../../core/rdd/plan.ts';
import type { ChaosReport } from '../runtime/embedded-runtime.ts';

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

const num = (n: number) => n.toLocaleString('en-US');

/** One line per interval: what came in, what went out, how long it took. */
export function formatInterval(r: IntervalReport): string {
  const outs = Object.entries(r.outputs)
    .filter(([name]) => !name.startsWith('sink-') && !name.startsWith('print-'))
    .map(([name, n]) => `${name} ${num(n)}`)
    .join(', ');
  const extras = [
    r.refusedUploads ? `${num(r.refusedUploads)} uploads refused, see errors/${intervalScope(r.interval)}/uploads/` : '',
    r.quarantined ? `${num(r.quarantined)} bad records quarantined under errors/` : '',
    r.tasksSkipped ? `${r.tasksSkipped} already done` : '',
    r.speculative ? `${r.speculative} speculative` : '',
    r.fetchFailures ? `${r.fetchFailures} lost inputs` : '',
    r.recomputed ? `${r.recomputed} recomputed` : '',
    r.recoveredIntervals.length ? `rebuilt intervals ${r.recoveredIntervals.join(',')}` : '',
  ].filter(Boolean);
  return (
    `interval ${r.interval}: ${r.uploads} uploads (${bytes(r.inputBytes)}), ${num(r.recordsIn)} records in` +
    (outs ? ` -> ${outs}` : '') +
    ` | processing ${num(r.processingMs)} ms, scheduling delay ${num(r.schedulingDelayMs)} ms, ${r.tasks} tasks` +
    (extras.length ? ` (${extras.join(', ')})` : '')
  );
}

export function formatChaos(report: ChaosReport): string {
  const i = report.injected;
  const r = report.recovered;
  return [
    'faults injected:',
    `  task errors     ${i['task-error']}  -> retried through redelivery (${r.retried} failed attempts retried)`,
    `  worker crashes  ${i['task-crash']}  -> worker replaced, message redelivered (${r.workersReplaced} workers replaced)`,
    `  duplicates      ${i.duplicate}  -> ran again harmlessly; completion is create-if-absent (${r.duplicatesIgnored} found already done)`,
    `  stragglers      ${i.straggler}  -> ${r.speculative} speculative copies launched; first to commit wins (${r.losersStopped} losing copies, speculative or duplicate, stopped)`,
    `  lost cache      ${i['lose-cache']}  -> ${r.fetchFailures} tasks found inputs gone; ${r.recomputed} partitions recomputed from lineage`,
    `  driver crashes  ${i['driver-crash']}  -> a new driver resumed from the lineage record ${r.driverRestarts} times`,
  ].join('\n');
}

/** The lineage record as a readable graph: uploads (listed when given), then each stage's RDDs back to its inputs. */
export function formatLineage(record: LineageRecord, uploads?: IntakeUpload[]): string {
  const nodes = new Map(record.plan.map((n) => [n.id, n]));
  const lines: string[] = [];
  lines.push(`${record.scope} of pipeline ${record.pipeline} (fingerprint ${record.fingerprint}, plan ${record.planHash})`);
  lines.push(`sealed ${new Date(record.sealedAt).toISOString()}`);
  const { count } = record.uploads;
  lines.push(`uploads: ${num(count)} (${bytes(record.uploads.bytes)})${count === 0 ? ', an empty interval' : uploads ? '' : '; --uploads lists them'}`);
  for (const u of uploads ?? []) lines.push(`  ${u.key} (${bytes(u.size)})`);
  const persisted = Object.entries(record.inputs.persisted);
  if (persisted.length) lines.push(`reads persisted RDDs of earlier intervals: ${persisted.map(([k, n]) => `${k} (${n} partitions)`).join(', ')}`);
  lines.push('stages (each runs after the stages it reads):');
  for (const stage of record.stages) {
    const what =
      stage.kind === 'output' ? `writes output ${stage.output!.name} (${stage.output!.format})` : stage.kind === 'persist' ? `persists to ${stage.location}` : 'writes shuffle blocks';
    lines.push(`  ${stage.id}: ${stage.tasks} tasks, ${what}${stage.parents.length ? `, after ${stage.parents.join(', ')}` : ''}`);
    const root = stage.kind === 'shuffle-map' ? (nodes.get(stage.rdd) as Extract<PlanNode, { kind: 'shuffle' }>).parent : stage.rdd;
    tree(nodes, root, '    ', lines);
  }
  return lines.join('\n');
}

function tree(nodes: Map<string, PlanNode>, id: string, indent: string, lines: string[]): void {
  const node = nodes.get(id)!;
  let detail = '';
  switch (node.kind) {
    case 'source':
      detail = `${node.splits.length} splits of ${num(node.splits.reduce((n, s) => n + s.ranges, 0))} byte ranges (${bytes(node.splits.reduce((n, s) => n + s.bytes, 0))})`;
      break;
    case 'shuffle':
      detail = `reads shuffle ${node.id} (${node.mode}${node.combine ? ', combined on the map side' : ''})`;
      break;
    case 'stored':
      detail = `reads ${node.location} (${node.tier})`;
      break;
  }
  lines.push(`${indent}${node.id} ${node.label} [${node.partitions} partitions]${detail ? ` ${detail}` : ''}`);
  const children =
    node.kind === 'narrow' ? [node.parent, ...(node.side ? [node.side] : [])]
    : node.kind === 'coalesce' ? [node.parent]
    : node.kind === 'union' || node.kind === 'cogroup' || node.kind === 'cartesian' ? node.parents
    : [];
  for (const child of children) tree(nodes, child, `${indent}  `, lines);
}
