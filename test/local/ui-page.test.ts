/**
 * The streaming UI's page in a real browser: headless Chromium (Debian's `chromium`, or the one
 * CHROMIUM_PATH names) driven by playwright-core, over a replayed root. Skipped, saying why, where
 * no Chromium is installed. DSTREAM_UI_SCREENSHOTS=<dir> saves what it saw (README's docs/ui.png).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { replay } from 'dstream/testing';
import wordcount from '../../examples/wordcount.ts';
import { readLineageRecord } from '../../core/streaming/lineage.ts';
import { readIntervalDetail } from '../../core/streaming/inspect.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { startUi, type RunningUi } from '../../local/ui/server.ts';
import { removeDir, replayLosingPersisted, tempDir } from '../support/stream-harness.ts';

const executable = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p): p is string => !!p && existsSync(p));
if (!executable) console.log('test/local/ui-page.test.ts skipped: no Chromium installed (apt-get install chromium, or set CHROMIUM_PATH)');
const screenshots = process.env.DSTREAM_UI_SCREENSHOTS;

describe.skipIf(!executable)('dstream ui in a browser', () => {
  let base: string;
  let ui: RunningUi;
  let browser: Browser;
  let store: FsObjectStore;
  beforeAll(async () => {
    base = await tempDir();
    const root = path.join(base, 'root');
    await replay(wordcount, [['the cat sat on the mat', 'the dog'], ['a cat', 'the end'], ['cat and dog'], ['mat']], { root });
    store = new FsObjectStore(root);
    ui = await startUi({ store, where: root, runtime: 'local', port: 0 });
    // --no-sandbox: CI runs as root in a container, where Chromium's sandbox cannot start.
    browser = await chromium.launch({ executablePath: executable, args: ['--no-sandbox'] });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await ui?.close();
    await removeDir(base);
  });

  it("loads, shows the replayed intervals and their charts, and opens an interval's DAG and task timeline", async () => {
    const record = (await readLineageRecord(store, 2))!;
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));

    await page.goto(ui.url);
    await page.locator('#intervals tbody tr').first().waitFor();
    const rows = await page.locator('#intervals tbody tr').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-interval')));
    const dots = await page.locator('svg[data-chart="processingMs"] circle').count();
    if (screenshots) await page.screenshot({ path: path.join(screenshots, 'ui.png'), fullPage: true });

    await page.locator('#intervals a', { hasText: /^2$/ }).click();
    await page.locator('#dag .dag-node').first().waitFor();
    const rdds = await page.locator('#dag .dag-node').evaluateAll((gs) => gs.map((g) => g.getAttribute('data-rdd')));
    const stages = await page.locator('.legend [data-stage]').evaluateAll((ss) => ss.map((s) => s.getAttribute('data-stage')));
    const tasks = await page.locator('#timeline rect.task').count();
    const title = await page.locator('#interval-title').textContent();
    const preview = await page.locator('[data-output="counts"] pre').textContent();
    if (screenshots) await page.screenshot({ path: path.join(screenshots, 'ui-interval.png'), fullPage: true });

    expect(rows).toEqual(['3', '2', '1', '0']);
    expect(dots).toBe(4);
    expect(page.url()).toMatch(/#\/interval\/2$/);
    expect(title).toBe('Interval 2, committed');
    expect(rdds).toEqual(record.plan.map((n) => n.id));
    expect(stages).toEqual(record.stages.map((s) => s.id));
    expect(tasks).toBe(record.stages.reduce((n, s) => n + s.tasks, 0));
    expect(preview).toMatch(/\["(cat|and|dog)",1\]/);
    expect(errors).toEqual([]);
  }, 60_000);

  it("an interval's task timeline has a lane per stage, and a recovery stage's lane, labelled, right after the stage whose RDD it rebuilt", async () => {
    const root = path.join(base, 'recovered', 'root');
    await replayLosingPersisted(wordcount, root, [{ 'a.txt': 'the cat\n' }, { 'a.txt': 'a cat\n' }, { 'a.txt': 'cat\n' }], 1);
    const detail = (await readIntervalDetail(new FsObjectStore(root), 1))!;
    const recovered = await startUi({ store: new FsObjectStore(root), where: root, runtime: 'local', port: 0 });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    try {
      await page.goto(new URL('#/interval/1', recovered.url).href);
      await page.locator('#timeline text.lane').first().waitFor();
      const lanes = await page.locator('#timeline text.lane').evaluateAll((ts) => ts.map((t) => [t.getAttribute('data-lane'), t.firstChild?.textContent]));

      const { id, location, writer } = detail.recovery[0]!;
      expect(lanes.map(([lane]) => lane)).toEqual(detail.dag.stages.map((s) => s.id).flatMap((s) => (s === writer ? [s, id] : [s])));
      // Its text; its title (the tooltip) says what a recovery stage is.
      expect(lanes.find(([lane]) => lane === id)![1]).toBe(`${id}: rebuilt ${location} for a later interval`);
    } finally {
      await page.close();
      await recovered.close();
    }
  }, 60_000);
});
