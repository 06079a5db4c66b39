/**
 * Prometheus metrics on a registry of our own (the process-wide default registry stays
 * untouched, so several gateways can live in one test process). Served without auth on
 * GET /metrics: operators firewall it (docs/gateway.md, "Metrics").
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { SessionManager } from './sessions.js';
import type { TokenRejectReason } from './types.js';

export interface GatewayMetrics {
  registry: Registry;
  tokenRejected(reason: TokenRejectReason): void;
  /** Prometheus text exposition. */
  render(): Promise<string>;
  contentType: string;
}

export function createMetrics(sessions: SessionManager, targets: string[]): GatewayMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  new Gauge({
    name: 'logproxy_sessions_active',
    help: 'Sessions currently active, per target.',
    labelNames: ['target'],
    registers: [registry],
    collect() {
      const active = sessions.activeByTarget();
      this.reset();
      for (const t of new Set([...targets, ...active.keys()])) {
        this.set({ target: t }, active.get(t) ?? 0);
      }
    },
  });
  const ended = new Counter({
    name: 'logproxy_sessions_ended_total',
    help: 'Sessions ended, per target and reason.',
    labelNames: ['target', 'reason'],
    registers: [registry],
  });
  const heartbeats = new Counter({
    name: 'logproxy_heartbeats_total',
    help: 'Heartbeats received on active sessions, per target.',
    labelNames: ['target'],
    registers: [registry],
  });
  const rejections = new Counter({
    name: 'logproxy_token_rejections_total',
    help: 'Requests refused for a missing or invalid access token, per reason.',
    labelNames: ['reason'],
    registers: [registry],
  });
  const created = new Counter({
    name: 'logproxy_sessions_created_total',
    help: 'Sessions created, per target.',
    labelNames: ['target'],
    registers: [registry],
  });

  sessions.on('created', (e) => created.inc({ target: e.session.target }));
  sessions.on('heartbeat', (e) => heartbeats.inc({ target: e.session.target }));
  sessions.on('expired', (e) => ended.inc({ target: e.session.target, reason: e.reason }));
  sessions.on('revoked', (e) => ended.inc({ target: e.session.target, reason: 'revoked' }));
  sessions.on('ended', (e) => ended.inc({ target: e.session.target, reason: e.reason }));

  return {
    registry,
    tokenRejected: (reason) => rejections.inc({ reason }),
    render: () => registry.metrics(),
    contentType: registry.contentType,
  };
}
