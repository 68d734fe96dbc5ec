import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { QueueMessage, TaskQueue } from '../../core/ports/task-queue.ts';

/**
 * What every TaskQueue must do: SQS's at-least-once semantics. Time is real (SQS's cannot be faked),
 * visibility timeouts are whole seconds (SQS's granularity), and the suite takes about 15 s.
 */
export function taskQueueContract(
  name: string,
  makeQueue: (opts: { maxReceives: number }) => Promise<{ queue: TaskQueue; cleanup?: () => Promise<void> }>,
): void {
  describe(`TaskQueue contract: ${name}`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    const open = async (maxReceives = 3): Promise<TaskQueue> => {
      const { queue, cleanup } = await makeQueue({ maxReceives });
      if (cleanup) cleanups.push(cleanup);
      return queue;
    };
    afterEach(async () => {
      for (const cleanup of cleanups.splice(0)) await cleanup();
    });

    it('delivers a sent message with receiveCount 1; once deleted it is not delivered again', async () => {
      const queue = await open();
      await queue.send(['hello']);
      const [message] = await receiveUntil(queue, 1, 1000);
      expect(message).toMatchObject({ body: 'hello', receiveCount: 1 });
      expect(message!.id).toEqual(expect.any(String));
      await queue.delete(message!.receipt);
      // Longer than the visibility timeout: an undeleted message would be back by then.
      expect(await queue.receive(10, 1000, 2000)).toEqual([]);
    });

    it('carries bodies exactly: unicode, JSON, whitespace, and 200 KB', async () => {
      const queue = await open();
      const bodies = [
        'héllo wörld ✓ 日本語 🎉 \u{10FFFF}',
        JSON.stringify({ task: 'map', partition: 3, path: 'a\\b "quoted"' }),
        ' leading and trailing spaces, a tab\t, a newline\n, a CR\r ',
        'é🎉'.repeat(Math.floor(200_000 / 6)) + 'x'.repeat(200_000 % 6),
      ];
      await queue.send(bodies);
      const received = await receiveUntil(queue, bodies.length, 5000);
      expect(received.map((m) => m.body).sort()).toEqual([...bodies].sort());
    });

    it('sends 25 bodies in one call (more than one SQS batch) and delivers each exactly once', async () => {
      const queue = await open();
      const bodies = Array.from({ length: 25 }, (_, i) => `task ${i}`);
      await queue.send(bodies);
      const received = await receiveUntil(queue, 25, 10_000);
      expect(received.map((m) => m.body).sort()).toEqual([...bodies].sort());
      expect(new Set(received.map((m) => m.id)).size).toBe(25);
      expect(await queue.receive(10, 1000, 1000)).toEqual([]);
    });

    it('receive hands out at most max messages', async () => {
      const queue = await open();
      await queue.send(['1', '2', '3', '4', '5']);
      expect((await queue.receive(2, 5000, 1000)).length).toBeLessThanOrEqual(2);
      expect((await queue.receive(1, 5000, 1000)).length).toBeLessThanOrEqual(1);
    });

    it('rejects a body SQS cannot carry: empty, a control character, over 256 KiB', async () => {
      const queue = await open();
      await expect(queue.send([''])).rejects.toThrow();
      await expect(queue.send(['nul \u0000'])).rejects.toThrow();
      await expect(queue.send(['x'.repeat(256 * 1024 + 1)])).rejects.toThrow();
    });

    it('hides an undeleted message for its visibility timeout, then redelivers it with receiveCount 2 and a new receipt', async () => {
      const queue = await open();
      await queue.send(['retry me']);
      const [first] = await receiveUntil(queue, 1, 1000);
      const receivedAt = Date.now();
      expect(await queue.receive(10, 1000, 0)).toEqual([]);
      const [second] = await receiveUntil(queue, 1, 5000);
      expect(Date.now() - receivedAt).toBeGreaterThanOrEqual(900);
      expect(second).toMatchObject({ id: first!.id, body: 'retry me', receiveCount: 2 });
      expect(second!.receipt).not.toBe(first!.receipt);
    });

    it('changeVisibility extends a delivery’s hiding, and 0 makes it visible at once', async () => {
      const queue = await open();
      await queue.send(['slow task']);
      const [first] = await receiveUntil(queue, 1, 1000);
      await queue.changeVisibility(first!.receipt, 4000);
      await sleep(1200);
      expect(await queue.receive(10, 1000, 1000)).toEqual([]);
      await queue.changeVisibility(first!.receipt, 0);
      const [second] = await receiveUntil(queue, 1, 5000, 2000);
      expect(second).toMatchObject({ id: first!.id, receiveCount: 2 });
    });

    it('a delete with the receipt of an earlier delivery does not delete the message', async () => {
      const queue = await open();
      await queue.send(['redelivered']);
      const [first] = await receiveUntil(queue, 1, 1000);
      const [second] = await receiveUntil(queue, 1, 5000);
      expect(second!.receiveCount).toBe(2);
      await expect(queue.delete(first!.receipt)).resolves.toBeUndefined();
      await queue.changeVisibility(second!.receipt, 0);
      const [third] = await receiveUntil(queue, 1, 5000);
      expect(third).toMatchObject({ id: first!.id, receiveCount: 3 });
      await queue.delete(third!.receipt);
      expect(await queue.receive(10, 1000, 1000)).toEqual([]);
    });

    it('after maxReceives deliveries a message is dead-lettered, not delivered; drainDeadLetters returns it once', async () => {
      const queue = await open(2);
      await queue.send(['poison']);
      const [first] = await receiveUntil(queue, 1, 1000);
      const [second] = await receiveUntil(queue, 1, 1000);
      expect([first!.receiveCount, second!.receiveCount]).toEqual([1, 2]);
      // Past its second timeout the message is due again, and goes to the dead letters instead.
      expect(await queue.receive(10, 1000, 2500)).toEqual([]);
      const dead = await drainUntil(queue, 1);
      expect(dead).toEqual([{ id: first!.id, body: 'poison', receiveCount: 2 }]);
      expect(await queue.drainDeadLetters(10)).toEqual([]);
    });

    it('deadLetter moves a delivery to the dead letters now, with its receive count and reason; the delivery is then deleted', async () => {
      const queue = await open(5);
      await queue.send(['hopeless']);
      const [delivery] = await receiveUntil(queue, 1, 1000);
      await queue.deadLetter(delivery!, 'InvalidTaskMessageError: no such stage');
      await queue.delete(delivery!.receipt);
      const dead = await drainUntil(queue, 1);
      // The id may differ: on SQS the letter is a new message in the dead-letter queue.
      expect(dead).toEqual([{ id: expect.any(String), body: 'hopeless', receiveCount: 1, reason: 'InvalidTaskMessageError: no such stage' }]);
      expect(await queue.receive(10, 1000, 1500)).toEqual([]);
    });

    it('a long poll waits for a message and returns as soon as one is sent', async () => {
      const queue = await open();
      const started = Date.now();
      const polling = queue.receive(10, 1000, 10_000);
      await sleep(300);
      await queue.send(['late']);
      const received = await polling;
      expect(received.map((m) => m.body)).toEqual(['late']);
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      expect(Date.now() - started).toBeLessThan(5000);
    });

    it('a long poll on an empty queue waits about waitMs and returns nothing', async () => {
      const queue = await open();
      const started = Date.now();
      expect(await queue.receive(10, 1000, 1000)).toEqual([]);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    });
  });
}

/** Receives until `count` messages have arrived (a real queue may hand out fewer than asked per call). */
async function receiveUntil(queue: TaskQueue, count: number, visibilityTimeoutMs: number, timeoutMs = 5000): Promise<QueueMessage[]> {
  const received: QueueMessage[] = [];
  const deadline = Date.now() + timeoutMs;
  while (received.length < count) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`received ${received.length} of ${count} messages within ${timeoutMs} ms`);
    received.push(...(await queue.receive(Math.min(10, count - received.length), visibilityTimeoutMs, Math.min(1000, left))));
  }
  return received;
}

async function drainUntil(queue: TaskQueue, count: number, timeoutMs = 5000): Promise<{ id: string; body: string; receiveCount: number }[]> {
  const drained: { id: string; body: string; receiveCount: number }[] = [];
  const deadline = Date.now() + timeoutMs;
  while (drained.length < count && Date.now() < deadline) {
    drained.push(...(await queue.drainDeadLetters(10)));
    if (drained.length < count) await sleep(200);
  }
  return drained;
}
