/**
 * librdkafka closes a client on a libuv pool thread, and process.exit() joins
 * every pool thread before the process ends (uv_library_shutdown). A close that
 * hangs therefore hangs the exit too, past any shutdown budget: a consumer's
 * close waits for every Kafka offset commit in flight, and one sent as the
 * coordinator died is retried until socket.timeout.ms (60 s). So closes are
 * bounded, and a client whose close overran is remembered: the daemon then
 * ends by its own signal instead of process.exit() (see cli.ts).
 */

const overran = new Set<string>();

/** Starts a native close; resolves true when it finished within `timeoutMs`, false (and remembers `name`) otherwise. */
export function closeWithin(name: string, timeoutMs: number, start: (done: () => void) => void): Promise<boolean> {
  return new Promise((resolve) => {
    let finished = false;
    const t = setTimeout(() => {
      if (!finished) overran.add(name);
      resolve(false);
    }, timeoutMs);
    start(() => {
      finished = true;
      overran.delete(name);
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** Clients whose native close is still running; process.exit() would wait for them. */
export function closesStillRunning(): string[] {
  return [...overran];
}
