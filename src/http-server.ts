/**
 * The SRE surface: /metrics (Prometheus text), /healthz (the process is
 * alive), /readyz (dependencies reachable, JSON detail per dependency).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Health } from './health';
import type { Logger } from './logger';

export interface HttpServer {
  port: number;
  close(): Promise<void>;
}

export async function startHttpServer(opts: { host: string; port: number; registry: Registry; health: Health; log: Logger }): Promise<HttpServer> {
  const { registry, health, log } = opts;
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const reply = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'text/plain', 'method not allowed\n');
    if (url === '/metrics') {
      registry.metrics().then(
        (text) => reply(200, registry.contentType, text),
        (e: unknown) => reply(500, 'text/plain', `metrics failed: ${String(e)}\n`),
      );
    } else if (url === '/healthz') {
      reply(200, 'application/json', JSON.stringify({ status: 'alive', uptimeSeconds: Math.round(process.uptime()) }) + '\n');
    } else if (url === '/readyz') {
      health.check().then(
        (r) => reply(r.ready ? 200 : 503, 'application/json', JSON.stringify({ status: r.ready ? 'ready' : 'not ready', checks: r.checks }) + '\n'),
        (e: unknown) => reply(500, 'text/plain', `readiness failed: ${String(e)}\n`),
      );
    } else {
      reply(404, 'text/plain', 'not found; try /metrics /healthz /readyz\n');
    }
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ host: opts.host, port }, 'metrics and health server listening');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
