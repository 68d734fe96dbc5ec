/**
 * The functions' log records, one object each: `msg` says what happened in words, the other
 * fields say it for queries. The construct sets Lambda's JSON log format, under which the Node.js
 * runtime writes a console call with one argument as
 * `{"timestamp", "level", "requestId", "message": <that argument>}` (an Error inside it as
 * `{errorType, errorMessage, stackTrace}`), and drops calls below the function's application log
 * level. So a record is queried as `filter message.interval = 12`, and its level is the console
 * method's. Metrics are not logged here: they go straight to stdout (metrics.ts).
 */
export type LogFields = Record<string, unknown>;

export const log = {
  debug: (msg: string, fields: LogFields = {}): void => console.debug({ msg, ...fields }),
  info: (msg: string, fields: LogFields = {}): void => console.info({ msg, ...fields }),
  warn: (msg: string, fields: LogFields = {}): void => console.warn({ msg, ...fields }),
  error: (msg: string, fields: LogFields = {}): void => console.error({ msg, ...fields }),
};
