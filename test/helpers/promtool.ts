/** `promtool check metrics` over a Prometheus text: its exit code (0 clean, 3 lint problems, 1 unparsable) and output. */
import { spawn } from 'node:child_process';

export function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`promtool did not finish within 30 s:\n${output}`)); }, 30000);
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    child.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ENOENT') reject(new Error('promtool is not on PATH: install it (Debian/Ubuntu: apt-get install prometheus) to lint /metrics'));
      else reject(e);
    });
    child.once('close', (code) => { clearTimeout(timer); resolve({ code, output }); });
    child.stdin.on('error', () => undefined); // a promtool that died early must not crash us with EPIPE
    child.stdin.end(text);
  });
}
