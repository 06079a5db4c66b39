/**
 * Session policy: the gateway-wide defaults tightened by a target. A target may shorten
 * timeouts and heartbeat intervals, never lengthen them; `silent_resume` and the warning
 * thresholds are the target's own choice (they grant no extra access time).
 */
import type { SessionPolicy } from '../protocol/api.js';
import type { SessionPolicyConfig, TargetConfig } from './types.js';

/** The policy a session of `target` runs under. */
export function effectivePolicy(
  defaults: SessionPolicyConfig,
  target: Pick<TargetConfig, 'session'>,
): SessionPolicyConfig {
  const t = target.session;
  const idleTimeoutMs = Math.min(defaults.idleTimeoutMs, t.idleTimeoutMs ?? Infinity);
  const maxLifetimeMs = Math.min(defaults.maxLifetimeMs, t.maxLifetimeMs ?? Infinity);
  const warn = t.warnBeforeMs ?? defaults.warnBeforeMs;
  return {
    idleTimeoutMs,
    maxLifetimeMs,
    heartbeatIntervalMs: Math.min(defaults.heartbeatIntervalMs, t.heartbeatIntervalMs ?? Infinity),
    heartbeatMissesAllowed: Math.min(
      defaults.heartbeatMissesAllowed,
      t.heartbeatMissesAllowed ?? Infinity,
    ),
    // A warning before an end that comes sooner than the warning is useless noise.
    warnBeforeMs: warn.filter((ms) => ms < Math.max(idleTimeoutMs, maxLifetimeMs)),
    silentResume: t.silentResume ?? defaults.silentResume,
  };
}

/** Fields of a target's session block that would loosen the defaults (config errors). */
export function loosenedFields(
  defaults: SessionPolicyConfig,
  target: Partial<SessionPolicyConfig>,
): Array<keyof SessionPolicyConfig> {
  const out: Array<keyof SessionPolicyConfig> = [];
  const longer = ['idleTimeoutMs', 'maxLifetimeMs', 'heartbeatIntervalMs'] as const;
  for (const key of longer) {
    const v = target[key];
    if (v !== undefined && v > defaults[key]) out.push(key);
  }
  const misses = target.heartbeatMissesAllowed;
  if (misses !== undefined && misses > defaults.heartbeatMissesAllowed) {
    out.push('heartbeatMissesAllowed');
  }
  return out;
}

/** The wire form of a policy (seconds). */
export function toWirePolicy(p: SessionPolicyConfig): SessionPolicy {
  return {
    idle_timeout_s: p.idleTimeoutMs / 1000,
    max_lifetime_s: p.maxLifetimeMs / 1000,
    heartbeat_interval_s: p.heartbeatIntervalMs / 1000,
    warn_before_s: p.warnBeforeMs.map((ms) => ms / 1000),
    silent_resume: p.silentResume,
  };
}

/** Whether `subject` may open sessions on `target`. */
export function isAllowed(target: Pick<TargetConfig, 'allow'>, subject: string): boolean {
  return target.allow.includes('*') || target.allow.includes(subject);
}
