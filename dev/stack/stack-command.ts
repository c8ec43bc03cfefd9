/** `banking-es stack up|down|status`: the embedded local stack, for development and the demo. */
import { stackDown, stackStatus, stackUp } from './stack';

export async function stackCommand(sub: string, dir: string, say: (line: string) => void): Promise<number> {
  if (sub === 'up') {
    const s = await stackUp(dir, say);
    say(`stack up; connection settings in ${s.dir}/config.json (banking-es commands pick them up)`);
    return 0;
  }
  if (sub === 'down') {
    await stackDown(dir, say);
    return 0;
  }
  if (sub === 'status') {
    const st = stackStatus(dir);
    if (!st.state) say('stack is not up');
    for (const p of st.processes) say(`${p.name.padEnd(10)} pid ${p.pid} ${p.alive ? 'running' : 'GONE'}`);
    if (st.state) say(`kafka ${st.state.kafka.brokers}\npostgres 127.0.0.1:${st.state.postgres.port}${st.state.redis ? `\nredis 127.0.0.1:${st.state.redis.port}` : ''}`);
    return st.up ? 0 : 1;
  }
  process.stderr.write(`unknown stack command "${sub}"; use up, down or status\n`);
  return 2;
}
