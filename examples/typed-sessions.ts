import { definePipeline, type State } from 'dstream';

/**
 * Shop activity from lines `user action cents` (`ann buy 250`, `bob view 0`), typed throughout
 * with no type arguments: pairs are array literals or `as const` tuples, and state types come from
 * a parameter's type or from `initial`.
 *   spending: each user's total spent since interval 0, with the last 3 intervals' actions beside it;
 *   sessions: a user's actions and spending until 2 silent intervals end the session;
 *   open-sessions: the sessions still open, at every interval.
 */
export default definePipeline({ name: 'typed-sessions', partitions: 4 }, (ctx) => {
  const events = ctx
    .textStream()
    .map((line) => line.trim().split(/\s+/))
    .filter((words) => words.length === 3)
    .map(([user, action, cents]) => [user!, { action: action!, cents: Number(cents) }] as const);

  const spent = events
    .filter(([, event]) => event.action === 'buy')
    .mapValues((event) => event.cents)
    .updateStateByKey((cents, total: number | undefined) => (total ?? 0) + cents.reduce((a, b) => a + b, 0));

  const recentActions = events
    .map(([user]) => [user, 1] as const)
    .reduceByKeyAndWindow((a, b) => a + b, 3, 1, { inverse: (a, b) => a - b });

  recentActions
    .join(spent)
    .map(([user, [actions, total]]) => ({ user, actionsInLast3: actions, totalSpent: total }))
    .saveAsJsonFiles('spending');

  const sessions = events.mapWithState({
    timeout: 2,
    update: (user, event, state: State<{ actions: number; cents: number }>) => {
      if (state.isTimingOut()) return [user, state.get()];
      const before = state.exists() ? state.get() : { actions: 0, cents: 0 };
      state.update({ actions: before.actions + 1, cents: before.cents + (event?.cents ?? 0) });
      return undefined;
    },
  });
  sessions.saveAsJsonFiles('sessions');
  sessions.stateSnapshots().saveAsJsonFiles('open-sessions');
});
