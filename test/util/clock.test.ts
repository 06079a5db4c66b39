import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/util/clock.js';

test('manual clock fires timers in time order as it advances', () => {
  const clock = new ManualClock(0);
  const fired: Array<[string, number]> = [];
  clock.setTimeout(() => fired.push(['b', clock.now()]), 200);
  clock.setTimeout(() => fired.push(['a', clock.now()]), 100);
  const c = clock.setTimeout(() => fired.push(['c', clock.now()]), 150);
  c.cancel();
  clock.advance(250);
  assert.deepEqual(fired, [
    ['a', 100],
    ['b', 200],
  ]);
  assert.equal(clock.now(), 250);
});

test('timers scheduled by timers fire within the same advance', () => {
  const clock = new ManualClock(0);
  let ticks = 0;
  const tick = (): void => {
    ticks += 1;
    clock.setTimeout(tick, 1000);
  };
  clock.setTimeout(tick, 1000);
  clock.advance(3_600_000);
  assert.equal(ticks, 3600);
});

test('sleep rejects as soon as its signal aborts', async () => {
  const clock = new ManualClock(0);
  const controller = new AbortController();
  const slept = clock.sleep(60_000, controller.signal);
  controller.abort(new Error('stop'));
  await assert.rejects(slept, /stop/);
});
