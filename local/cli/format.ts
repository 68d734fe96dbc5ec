import { intervalScope } from '../../core/layout.ts';
import type { IntervalReport } from '../../core/streaming/driver.ts';
import type { LineageRecord } from '../../core/streaming/lineage.ts';
import type { IntakeUpload } from '../../core/streaming/intake.ts';
import type { PlanNode } from '../../core/rdd/plan.ts';
import type { ChaosReport } from '../runtime/embedded-runtime.ts';
import type { IntervalProgress, StreamStatus } from '../../core/streaming/status.ts';

/** Colours for a terminal; `plain` where there is none. */
export interface Style {
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  yellow(s: string): string;
  green(s: string): string;
}

const same = (s: string) => s;
export const plain: Style = { bold: same, dim: same, red: same, yellow: same, green: same };

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

const num = (n: number) => n.toLocaleString('en-US');

/** One line per interval: what came in, what went out, how long it took. */
export function formatInterval(r: IntervalReport, style: Style = plain): string {
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
  const warned = r.refusedUploads > 0 || r.quarantined > 0;
  return (
    `${style.bold(`interval ${r.interval}`)}: ${r.uploads} uploads (${bytes(r.inputBytes)}), ${num(r.recordsIn)} records in` +
    (outs ? ` -> ${outs}` : '') +
    ` | processing ${num(r.processingMs)} ms, scheduling delay ${num(r.schedulingDelayMs)} ms, ${r.tasks} tasks` +
    (extras.length ? ` ${(warned ? style.yellow : style.dim)(`(${extras.join(', ')})`)}` : '')
  );
}

/** Intervals a replay found committed by an earlier run: said once, not reprinted as if run again. */
export function formatAlreadyCommitted(intervals: number[]): string {
  const [first, last] = [intervals[0]!, intervals[intervals.length - 1]!];
  return intervals.length === 1 ? `interval ${first} was already committed` : `intervals ${first} to ${last} were already committed`;
}

/** The live line while an interval runs: tasks done of each stage's tasks. */
export function formatProgress(p: IntervalProgress, style: Style = plain): string {
  const stages = p.stages.map((s) => {
    if (s.withoutTasks) return style.green(`${s.id} empty, no task`);
    const text = `${s.id} ${s.done}/${s.tasks}${s.failed ? ` (${s.failed} failed)` : ''}`;
    return s.failed ? style.red(text) : s.done === s.tasks ? style.green(text) : text;
  });
  return `${style.bold(`interval ${p.interval}`)} running: ${stages.join(', ')}`;
}

const ms = (n: number) => `${num(Math.round(n))} ms`;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** `dstream status` as text: position and clock, the last intervals, what failed. */
export function formatStatus(status: StreamStatus, where: string, style: Style = plain): string {
  const lines: string[] = [];
  const heading = (s: string) => lines.push('', style.bold(s));
  lines.push(`${style.bold('stream')}${status.pipeline ? ` of pipeline ${status.pipeline.name} (fingerprint ${status.pipeline.fingerprint})` : ''} in ${where}`);
  const { clock, position } = status;
  if (!clock || !position) {
    lines.push('no stream has started here yet: no driver has run (driver/progress.json is missing)');
  } else {
    lines.push(
      `clock: intervals of ${ms(clock.intervalMs)}; interval ${clock.base} started ${new Date(clock.epoch).toISOString()}`,
      `position: ${position.lastCommitted === null ? 'no interval committed yet' : `last committed interval ${position.lastCommitted}`}; next to run ${position.next}; the clock is in interval ${position.current}`,
    );
    if (status.replay) {
      const { intervals, first, last, at } = status.replay;
      lines.push(style.green(`finished replay: ${num(intervals)} staged interval${intervals === 1 ? '' : 's'} committed (${first === last ? `interval ${first}` : `${first} to ${last}`}), the last at ${new Date(at).toISOString()}; nothing waits to run`));
    }
    if (position.behind > 0) lines.push(style.yellow(`behind: ${num(position.behind)} intervals have ended and are not committed (is a driver running?)`));
    if (status.running) {
      const r = status.running;
      lines.push(`sealed, not committed: interval ${r.interval}, ${num(r.uploads)} uploads (${bytes(r.inputBytes)}), sealed ${new Date(r.sealedAt).toISOString()}`);
      lines.push(`  ${formatProgress(r, style)}`);
    }
    if (status.open.length) lines.push(`open: ${status.open.map((o) => `interval ${o.interval} (${num(o.uploads)} uploads so far)`).join(', ')}`);
  }
  if (status.recent.length) {
    const recent = status.recent;
    heading(`last ${recent.length} committed intervals`);
    const rows = [['interval', 'uploads', 'records', 'rate/s', 'processing', 'sched. delay', 'tasks', 'quarantined', 'refused']];
    for (const r of recent) {
      rows.push([
        String(r.interval),
        num(r.uploads),
        num(r.recordsIn),
        r.inputRate === undefined ? '-' : num(Math.round(r.inputRate)),
        ms(r.processingMs),
        ms(r.schedulingDelayMs),
        num(r.tasks),
        num(r.quarantined),
        num(r.refusedUploads),
      ]);
    }
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
    for (const row of rows) lines.push(`  ${row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')}`);
    const rates = recent.flatMap((r) => (r.inputRate === undefined ? [] : [r.inputRate]));
    lines.push(
      `  average: ${rates.length ? `input ${num(Math.round(mean(rates)))} records/s, ` : ''}processing ${ms(mean(recent.map((r) => r.processingMs)))}, scheduling delay ${ms(mean(recent.map((r) => r.schedulingDelayMs)))}`,
    );
  }
  heading('failures');
  if (status.failures.length === 0) lines.push(`  none${status.position ? ': nothing stops the stream' : ''}`);
  for (const f of status.failures) lines.push(style.red(`  interval ${f.interval} stage ${f.stage} partition ${f.partition}: ${f.error}`), style.dim(`    ${f.key}`));
  if (status.failures.length) lines.push('  the stream does not go on past these: see "When an interval fails" in the README');
  const errors = status.errors.intervals;
  const total = (f: (e: (typeof errors)[number]) => number) => errors.reduce((n, e) => n + f(e), 0);
  heading('kept under errors/');
  if (errors.length === 0 && status.errors.unreadableDeadLetters === 0) lines.push('  nothing');
  const sum = (what: string, f: (e: (typeof errors)[number]) => number) => {
    const at = errors.filter((e) => f(e) > 0);
    if (at.length) lines.push(`  ${what}: ${num(total(f))}, in interval${at.length === 1 ? '' : 's'} ${at.map((e) => e.interval).join(', ')}`);
  };
  sum('dead letters (this run\'s and earlier runs\')', (e) => e.deadLetters);
  sum('quarantined record files', (e) => e.quarantineFiles);
  sum('refused uploads', (e) => e.refusedUploads);
  if (status.errors.unreadableDeadLetters) lines.push(`  dead letters that are no task message: ${num(status.errors.unreadableDeadLetters)} (errors/unreadable-dead-letters/)`);
  return lines.join('\n');
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
      stage.kind === 'shuffle-map'
        ? 'writes shuffle blocks'
        : stage.sinks.map((sink) => (sink.kind === 'output' ? `writes output ${sink.output.name} (${sink.output.format})` : `persists to ${sink.location}`)).join(', ');
    lines.push(`  ${stage.id}: ${stage.tasks} tasks, ${what}${stage.parents.length ? `, after ${stage.parents.join(', ')}` : ''}`);
    if (stage.kind === 'shuffle-map') tree(nodes, (nodes.get(stage.rdd) as Extract<PlanNode, { kind: 'shuffle' }>).parent, '    ', lines);
    else for (const root of new Set(stage.sinks.map((sink) => sink.rdd))) tree(nodes, root, '    ', lines);
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
