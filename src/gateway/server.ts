/**
 * The gateway's HTTP server (plain node:http / node:https, no framework): discovery, the
 * sessions API, the data plane routes, metrics, health, and the embedded provider under its
 * mount path. Routes and answers are documented for third parties in docs/api.md.
 *
 * Request path: token (tokens.ts: who) -> policy (may they) -> sessions (state, timers,
 * audit) -> data plane (bytes). Every refusal is a problem+json answer with a stable type.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { API_VERSION, DISCOVERY_PATH } from '../protocol/api.js';
import type { DiscoveryDocument, Problem, TargetInfo } from '../protocol/api.js';
import { systemClock } from '../util/clock.js';
import type { Clock } from '../util/clock.js';
import { ErrorCodes, LogproxyError, isLogproxyError } from '../util/errors.js';
import { AuditLog, auditSessions, readReauthMarks } from './audit.js';
import { createDataPlane } from './data-plane.js';
import { createDevProvider } from './dev-provider.js';
import { createLogger } from './logger.js';
import type { Logger } from './logger.js';
import { createMetrics } from './metrics.js';
import type { GatewayMetrics } from './metrics.js';
import { isAllowed, toWirePolicy } from './policy.js';
import { bearerChallenge, problem, rejectUpgrade, sendJson, sendProblem } from './problems.js';
import { SessionManager } from './sessions.js';
import { createTokenVerifier } from './tokens.js';
import { TokenRejectedError } from './types.js';
import type {
  DataPlane,
  DevProvider,
  GatewayConfig,
  LiveSession,
  Principal,
  TargetConfig,
  TokenRejectReason,
  TokenVerifier,
} from './types.js';

/** JSON request bodies are tiny ({"target": "..."}); anything bigger is a mistake or abuse. */
export const MAX_JSON_BODY_BYTES = 16 * 1024;
/** Time to send a whole request (headers and body); streaming responses are not limited. */
const REQUEST_TIMEOUT_MS = 30_000;
const HEADERS_TIMEOUT_MS = 10_000;
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** On close, connections still busy after this are cut. */
const SHUTDOWN_GRACE_MS = 3_000;
/** Scopes clients ask for: offline_access so the embedded provider issues refresh tokens. */
const CLIENT_SCOPES = ['openid', 'offline_access'];

export interface GatewayDeps {
  clock?: Clock;
  /** Serves /logs and /forward/; without one those routes answer 501 not-supported. */
  dataPlane?: DataPlane;
  logger?: Logger;
}

export interface Gateway {
  /** Base URL clients use (public_url, or the address actually bound). */
  url: string;
  issuer: string;
  server: Server;
  sessions: SessionManager;
  metrics: GatewayMetrics;
  audit: AuditLog;
  devProvider?: DevProvider;
  /** Stops accepting, ends sessions (gateway_shutdown), flushes the audit file. */
  close(): Promise<void>;
}

/** The data plane: log streams and forwarding (data-plane.ts). */
function defaultDataPlane(
  config: GatewayConfig,
  deps: { clock: Clock; logger: Logger },
): DataPlane | undefined {
  return createDataPlane(config, deps);
}

/** Starts a gateway on `config.listen` (port 0 allowed) and resolves once it serves. */
export async function createGateway(
  config: GatewayConfig,
  deps: GatewayDeps = {},
): Promise<Gateway> {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? createLogger(config.log.level);
  const tls = readTlsFiles(config);
  const marks = readReauthMarks(config.audit.file);
  const audit = new AuditLog(config.audit.file, clock, (err) =>
    logger.error({ err: String(err), file: config.audit.file }, 'audit write failed'),
  );
  const sessions = new SessionManager({
    clock,
    defaults: config.session,
    targets: config.targets,
  });
  // Sign-in-again marks survive a restart of the gateway, through the audit trail.
  sessions.restoreReauthMarks(marks);
  auditSessions(sessions, audit);
  logSessions(sessions, logger);
  const metrics = createMetrics(sessions, Object.keys(config.targets));

  const serverOptions = {
    requestTimeout: REQUEST_TIMEOUT_MS,
    headersTimeout: HEADERS_TIMEOUT_MS,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
  };
  const server = tls
    ? createHttpsServer({ ...serverOptions, ...tls })
    : createHttpServer(serverOptions);
  const app = new App(config, { clock, logger, audit, sessions, metrics });
  server.on('request', (req, res) => app.handle(req, res));
  server.on('upgrade', (req, socket, head) => app.handleUpgrade(req, socket, head));
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  });

  await listen(server, config.listen.host, config.listen.port);
  const localOrigin = localUrl(server, Boolean(tls), config.listen.host);
  const url = config.publicUrl ?? localOrigin;
  try {
    await app.start(
      url,
      localOrigin,
      deps.dataPlane ?? defaultDataPlane(config, { clock, logger }),
    );
  } catch (err) {
    server.close();
    audit.close();
    throw err;
  }
  logger.info({ url, issuer: app.issuer, targets: Object.keys(config.targets) }, 'listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    issuer: app.issuer,
    server,
    sessions,
    metrics,
    audit,
    ...(app.devProvider ? { devProvider: app.devProvider } : {}),
    close: () => (closing ??= shutdown(server, app, sessions, audit, logger)),
  };
}

/** The PEM files of `tls`, read; LogproxyError(CONFIG_INVALID) naming the key when unreadable. */
export function readTlsFiles(config: GatewayConfig): { cert: Buffer; key: Buffer } | undefined {
  if (!config.tls) return undefined;
  const read = (file: string, key: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new LogproxyError(ErrorCodes.CONFIG_INVALID, `${key}: cannot read ${file} (${code})`, {
        cause: err,
      });
    }
  };
  return { cert: read(config.tls.certFile, 'tls.cert'), key: read(config.tls.keyFile, 'tls.key') };
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'EADDRINUSE' ? 'the address is in use' : err.code;
      reject(
        new LogproxyError(
          ErrorCodes.CONFIG_INVALID,
          `cannot listen on ${host}:${port}: ${why}; stop the other process or change listen`,
          { cause: err },
        ),
      );
    });
    server.listen(port, host, () => resolve());
  });
}

function localUrl(server: Server, https: boolean, host: string): string {
  const { port } = server.address() as AddressInfo;
  // A wildcard bind has no address a client can use; loopback works on this machine, and
  // public_url is the fix for others (docs/gateway.md).
  const shown = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `${https ? 'https' : 'http'}://${shown.includes(':') ? `[${shown}]` : shown}:${port}`;
}

async function shutdown(
  server: Server,
  app: App,
  sessions: SessionManager,
  audit: AuditLog,
  logger: Logger,
): Promise<void> {
  logger.info({}, 'shutting down');
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // Sessions live in memory: a restart loses them and clients open new ones. Ending them
  // here cuts open streams with a reason and leaves a complete audit trail.
  sessions.shutdown();
  server.closeIdleConnections();
  const grace = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
  // Bounded: a part that hangs while closing must not keep the audit file open forever.
  await settleWithin(
    [app.dataPlane?.close(), app.devProvider?.close(), closed],
    SHUTDOWN_GRACE_MS + 1_000,
  );
  clearTimeout(grace);
  audit.close();
  logger.info({}, 'stopped');
}

async function settleWithin(work: Array<Promise<unknown> | undefined>, ms: number) {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  await Promise.race([Promise.allSettled(work), limit]);
  clearTimeout(timer);
}

function logSessions(sessions: SessionManager, logger: Logger): void {
  const fields = (s: { id: string; subject: string; target: string }) => ({
    session_id: s.id,
    subject: s.subject,
    target: s.target,
  });
  sessions.on('created', (e) => logger.info(fields(e.session), 'session created'));
  sessions.on('expired', (e) =>
    logger.info({ ...fields(e.session), reason: e.reason }, 'session expired'),
  );
  sessions.on('revoked', (e) =>
    logger.info({ ...fields(e.session), reason: 'revoked', by: e.by }, 'session revoked'),
  );
  sessions.on('ended', (e) =>
    logger.info({ ...fields(e.session), reason: e.reason }, 'session ended'),
  );
}

// ---------- routing ----------

interface AppDeps {
  clock: Clock;
  logger: Logger;
  audit: AuditLog;
  sessions: SessionManager;
  metrics: GatewayMetrics;
}

interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  principal: Principal;
  params: string[];
}

type Handler = (call: Call) => Promise<void> | void;

interface Route {
  method: string;
  pattern: RegExp;
  handler: Handler;
}

const ID = '([^/]+)';

const STARTING = problem('upstreamUnavailable', 503, 'the gateway is starting; try again shortly');

class App {
  issuer = '';
  devProvider?: DevProvider;
  dataPlane?: DataPlane;
  private verifier?: TokenVerifier;
  private baseUrl = '';
  private readonly routes: Route[];

  constructor(
    private readonly config: GatewayConfig,
    private readonly deps: AppDeps,
  ) {
    const r = (method: string, path: string, handler: Handler): Route => ({
      method,
      pattern: new RegExp(`^${path}$`),
      handler: handler.bind(this),
    });
    this.routes = [
      r('GET', '/v1/targets', this.listTargets),
      r('POST', '/v1/sessions', this.createSession),
      r('GET', '/v1/sessions', this.listSessions),
      r('GET', `/v1/sessions/${ID}`, this.readSession),
      r('DELETE', `/v1/sessions/${ID}`, this.endSession),
      r('POST', `/v1/sessions/${ID}/heartbeat`, this.heartbeat),
      r('POST', `/v1/sessions/${ID}/revoke`, this.revoke),
      r('GET', `/v1/sessions/${ID}/logs`, this.logs),
      r('*', `/v1/sessions/${ID}/forward(/.*)?`, this.forward),
    ];
  }

  /** Runs once the port is bound, when the base URL (and so the dev issuer) is known. */
  async start(url: string, localOrigin: string, dataPlane: DataPlane | undefined) {
    this.baseUrl = url;
    const { auth } = this.config;
    if (auth.dev) {
      this.devProvider = await createDevProvider({
        issuer: `${url}/oidc`,
        audience: auth.audience,
        clientId: auth.clientId,
        config: auth.dev,
        logger: this.deps.logger,
      });
      this.issuer = this.devProvider.issuer;
    } else {
      this.issuer = auth.issuer!;
    }
    this.verifier = createTokenVerifier({
      issuer: this.issuer,
      audience: auth.audience,
      algorithms: auth.algorithms,
      clockToleranceS: auth.clockToleranceS,
      clientId: auth.clientId,
      ...(auth.introspection ? { introspection: auth.introspection } : {}),
      ...(auth.dev ? { fetch: await fetchOwnIssuer(this.issuer, localOrigin) } : {}),
    });
    if (dataPlane) this.dataPlane = dataPlane;
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    this.route(req, res).catch((err: unknown) => {
      this.deps.logger.error(
        { err: err instanceof Error ? err.message : String(err), path: pathOf(req) },
        'request failed',
      );
      if (!res.headersSent) sendProblem(res, problem('internal', 500));
      else res.destroy();
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway.invalid');
    const path = url.pathname;
    // The port is bound before the embedded issuer exists (its URL needs the port): a request
    // in between gets "try again" rather than a discovery document with no issuer.
    if (!this.verifier) {
      return sendProblem(res, STARTING, { 'retry-after': '1' });
    }
    if (this.devProvider && isUnder(path, this.devProvider.mountPath)) {
      return this.devProvider.handle(req, res);
    }
    if (req.method === 'GET' && path === DISCOVERY_PATH) return this.discovery(res);
    if (req.method === 'GET' && path === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (req.method === 'GET' && path === '/metrics') return this.renderMetrics(res);

    const match = this.match(req.method ?? 'GET', path);
    if (match === 'method') {
      return sendProblem(res, problem('notSupported', 405, `${req.method} is not allowed here`));
    }
    if (!match) return sendProblem(res, problem('notFound', 404, `no route ${path}`));

    const principal = await this.authenticate(req, res);
    if (!principal) return;
    await match.route.handler({ req, res, url, principal, params: match.params });
  }

  private match(method: string, path: string) {
    let pathMatched = false;
    for (const route of this.routes) {
      const m = route.pattern.exec(path);
      if (!m) continue;
      pathMatched = true;
      if (route.method === '*' || route.method === method) {
        return { route, params: m.slice(1).map((p) => p ?? '') };
      }
    }
    return pathMatched ? ('method' as const) : undefined;
  }

  // ---------- authentication ----------

  /** The caller, or undefined after answering 401 (audited, counted). */
  private async authenticate(req: IncomingMessage, res: ServerResponse) {
    const result = await this.verify(req);
    if ('principal' in result) return result.principal;
    sendProblem(res, result.problem, result.headers);
    return undefined;
  }

  private async verify(
    req: IncomingMessage,
  ): Promise<{ principal: Principal } | { problem: Problem; headers: Record<string, string> }> {
    const header = req.headers.authorization;
    const m = header ? /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header) : null;
    if (!m) {
      const reason: TokenRejectReason = header ? 'malformed' : 'missing';
      return this.refuseToken(req, reason, Boolean(header));
    }
    try {
      return { principal: await this.verifier!.verify(m[1]!) };
    } catch (err) {
      if (err instanceof TokenRejectedError) return this.refuseToken(req, err.reason, true);
      this.deps.logger.error({ err: String(err) }, 'token verification failed');
      return {
        problem: problem('upstreamUnavailable', 503, 'tokens cannot be verified right now'),
        headers: { 'retry-after': '5' },
      };
    }
  }

  private refuseToken(req: IncomingMessage, reason: TokenRejectReason, present: boolean) {
    this.deps.metrics.tokenRejected(reason);
    this.deps.audit.write({
      event: 'token.rejected',
      reason,
      method: req.method ?? '',
      path: pathOf(req),
      remote: req.socket.remoteAddress ?? '',
    });
    this.deps.logger.info({ reason, path: pathOf(req) }, 'token rejected');
    return {
      problem: problem(
        'invalidToken',
        401,
        'The access token is missing, expired or invalid; sign in again (logproxy login).',
      ),
      headers: { 'www-authenticate': bearerChallenge(present) },
    };
  }

  // ---------- public routes ----------

  private discovery(res: ServerResponse): void {
    const doc: DiscoveryDocument = {
      api_version: API_VERSION,
      gateway: this.baseUrl,
      issuer: this.issuer,
      client_id: this.config.auth.clientId,
      audience: this.config.auth.audience,
      scopes: CLIENT_SCOPES,
      dev: Boolean(this.devProvider),
    };
    sendJson(res, 200, doc, { 'cache-control': 'public, max-age=60' });
  }

  private async renderMetrics(res: ServerResponse): Promise<void> {
    const text = await this.deps.metrics.render();
    res.writeHead(200, { 'content-type': this.deps.metrics.contentType });
    res.end(text);
  }

  // ---------- sessions API ----------

  private listTargets({ res, principal }: Call): void {
    const targets: TargetInfo[] = Object.values(this.config.targets)
      .filter((t) => isAllowed(t, principal.subject))
      .map((t) => this.targetInfo(t));
    sendJson(res, 200, { targets });
  }

  private targetInfo(t: TargetConfig): TargetInfo {
    const info: TargetInfo = {
      name: t.name,
      source_type: t.source.type,
      capabilities: t.source.type === 'http' ? ['forward'] : ['logs'],
      policy: toWirePolicy(this.deps.sessions.policyFor(t)),
    };
    if (t.description) info.description = t.description;
    return info;
  }

  private async createSession({ req, res, principal }: Call): Promise<void> {
    const body = await readJson(req, res);
    if (body === undefined) return;
    const target = (body as { target?: unknown } | null)?.target;
    if (typeof target !== 'string' || target === '') {
      const p = problem('invalidParameter', 400, 'send {"target": "<name>"}');
      return sendProblem(res, { ...p, parameter: 'target' });
    }
    try {
      const state = this.deps.sessions.create(principal, target);
      sendJson(res, 201, state, { location: `/v1/sessions/${state.id}` });
    } catch (err) {
      this.refuseSession(res, principal, target, err);
    }
  }

  private refuseSession(res: ServerResponse, who: Principal, target: string, err: unknown) {
    if (isLogproxyError(err, ErrorCodes.NOT_FOUND)) {
      return sendProblem(res, problem('targetNotFound', 404, `no target named ${target}`));
    }
    const reauth = isLogproxyError(err, ErrorCodes.REAUTH_REQUIRED);
    if (!reauth && !isLogproxyError(err, ErrorCodes.ACCESS_DENIED)) throw err;
    this.deps.audit.write({
      event: 'session.refused',
      subject: who.subject,
      target,
      reason: reauth ? 'reauth_required' : 'forbidden',
    });
    if (!reauth) {
      return sendProblem(res, problem('forbidden', 403, `you may not open ${target}`));
    }
    // RFC 9470 step-up: the token is fine, but the sign-in behind it is older than the end
    // of the last session; max_age tells a client how recent a sign-in must be.
    const endedAt = Date.parse(String(err.details.ended_at));
    const maxAgeS = Math.max(0, Math.floor((this.deps.clock.now() - endedAt) / 1000));
    sendProblem(
      res,
      problem(
        'reauthRequired',
        401,
        `your last session on ${target} expired; sign in again (logproxy login) to open a new one`,
      ),
      {
        'www-authenticate':
          `Bearer realm="logproxy", error="insufficient_user_authentication", ` +
          `error_description="A new sign-in is required", max_age=${maxAgeS}`,
      },
    );
  }

  private listSessions({ res, url, principal }: Call): void {
    const all = url.searchParams.get('all');
    if (all === 'true' || all === '1') {
      if (!this.isAdmin(principal)) return this.notAdmin(res);
      return sendJson(res, 200, { sessions: this.deps.sessions.list() });
    }
    sendJson(res, 200, { sessions: this.deps.sessions.list(principal.subject) });
  }

  private readSession({ res, principal, params }: Call): void {
    const id = params[0]!;
    const owner = this.isAdmin(principal) ? undefined : principal.subject;
    const state = this.deps.sessions.read(id, owner);
    if (!state) return this.sessionNotFound(res, id);
    this.deps.sessions.noteToken(id, principal);
    sendJson(res, 200, state);
  }

  private endSession({ res, principal, params }: Call): void {
    const state = this.deps.sessions.end(params[0]!, principal.subject);
    if (!state) return this.sessionNotFound(res, params[0]!);
    sendJson(res, 200, state);
  }

  /** 200 with the state, also once ended: the client learns why from `end_reason`. */
  private heartbeat({ res, principal, params }: Call): void {
    const id = params[0]!;
    this.deps.sessions.noteToken(id, principal);
    const state = this.deps.sessions.heartbeat(id, principal.subject);
    if (!state) return this.sessionNotFound(res, id);
    sendJson(res, 200, state);
  }

  private revoke({ res, principal, params }: Call): void {
    if (!this.isAdmin(principal)) return this.notAdmin(res);
    const state = this.deps.sessions.revoke(params[0]!, principal.subject);
    if (!state) return this.sessionNotFound(res, params[0]!);
    sendJson(res, 200, state);
  }

  // ---------- data plane ----------

  private async logs({ req, res, url, principal, params }: Call): Promise<void> {
    const found = this.liveSession(res, principal, params[0]!, 'logs');
    if ('type' in found) return;
    await this.dataPlane!.handleLogs(req, res, found.session, found.target, url.searchParams);
  }

  private async forward({ req, res, url, principal, params }: Call): Promise<void> {
    const found = this.liveSession(res, principal, params[0]!, 'forward');
    if ('type' in found) return;
    const rest = `${params[1] || '/'}${url.search}`;
    await this.dataPlane!.handleForward(req, res, found.session, found.target, rest);
  }

  /** The caller's active session fit for this kind of traffic, or a problem answer. */
  private liveSession(
    res: ServerResponse | undefined,
    principal: Principal,
    id: string,
    kind: 'logs' | 'forward',
  ): { session: LiveSession; target: TargetConfig } | Problem {
    const session = this.deps.sessions.find(id, principal.subject);
    const fail = (p: Problem): Problem => {
      if (res) sendProblem(res, p);
      return p;
    };
    if (!session) return fail(problem('sessionNotFound', 404, undefined, { session_id: id }));
    if (session.signal.aborted) {
      const reason = session.signal.reason as Problem['reason'];
      return fail(
        problem('sessionEnded', 410, `the session ended (${reason})`, {
          ...(reason ? { reason } : {}),
          session_id: id,
        }),
      );
    }
    const target = this.config.targets[session.target]!;
    const offered = target.source.type === 'http' ? 'forward' : 'logs';
    if (kind !== offered) {
      const detail = `target ${target.name} (${target.source.type}) offers ${offered}, not ${kind}`;
      return fail(problem('notSupported', 400, detail));
    }
    if (!this.dataPlane) {
      return fail(problem('notSupported', 501, 'this gateway has no data plane yet'));
    }
    this.deps.sessions.noteToken(id, principal);
    return { session, target };
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.upgrade(req, socket, head).catch((err: unknown) => {
      this.deps.logger.error({ err: String(err), path: pathOf(req) }, 'upgrade failed');
      rejectUpgrade(socket, problem('internal', 500));
    });
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway.invalid');
    if (!this.verifier) return rejectUpgrade(socket, STARTING, { 'retry-after': '1' });
    const m = /^\/v1\/sessions\/([^/]+)\/forward(\/.*)?$/.exec(url.pathname);
    if (!m) return rejectUpgrade(socket, problem('notFound', 404, 'no WebSocket here'));
    const result = await this.verify(req);
    if (!('principal' in result)) return rejectUpgrade(socket, result.problem, result.headers);
    const found = this.liveSession(undefined, result.principal, m[1]!, 'forward');
    if ('type' in found) return rejectUpgrade(socket, found);
    const rest = `${m[2] || '/'}${url.search}`;
    this.dataPlane!.handleUpgrade(req, socket, head, found.session, found.target, rest);
  }

  // ---------- helpers ----------

  private isAdmin(p: Principal): boolean {
    return this.config.admins.includes(p.subject);
  }

  private notAdmin(res: ServerResponse): void {
    sendProblem(res, problem('notAdmin', 403, 'only administrators may do this'));
  }

  private sessionNotFound(res: ServerResponse, id: string): void {
    sendProblem(res, problem('sessionNotFound', 404, undefined, { session_id: id }));
  }
}

function isUnder(path: string, mount: string): boolean {
  return path === mount || path.startsWith(`${mount}/`);
}

/** The path without its query: queries may carry cursors, never worth a log line. */
function pathOf(req: IncomingMessage): string {
  return (req.url ?? '/').split('?')[0]!;
}

/** Reads a small JSON body; answers 400/413/415 itself and resolves undefined then. */
async function readJson(req: IncomingMessage, res: ServerResponse): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/([a-z.+-]*\+)?json\b/i.test(type)) {
    sendProblem(res, problem('badRequest', 415, 'send Content-Type: application/json'));
    return undefined;
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_JSON_BODY_BYTES) {
    sendProblem(res, problem('badRequest', 413, `the body exceeds ${MAX_JSON_BODY_BYTES} bytes`));
    req.resume();
    return undefined;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_JSON_BODY_BYTES) {
      sendProblem(
        res,
        problem('badRequest', 413, `the body exceeds ${MAX_JSON_BODY_BYTES} bytes`),
        { connection: 'close' },
      );
      return undefined;
    }
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    sendProblem(res, problem('badRequest', 400, 'the body is not valid JSON'));
    return undefined;
  }
}

/**
 * The fetch the token verifier uses for the embedded issuer's keys. The issuer is this very
 * process, so requests for the issuer's origin go straight to the address we are bound to
 * (public_url may name a proxy the gateway itself cannot reach); certificate checks are off
 * for that connection only (a self-signed or private-CA certificate is normal in
 * development), and nothing else is fetched through it.
 */
async function fetchOwnIssuer(issuer: string, localOrigin: string): Promise<typeof fetch> {
  const { Agent, fetch: undiciFetch } = await import('undici');
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
  const issuerOrigin = new URL(issuer).origin;
  return ((input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    // The provider names its jwks_uri after the Host it was asked on: the local one.
    if (url.origin !== issuerOrigin && url.origin !== new URL(localOrigin).origin) {
      throw new TypeError(`unexpected fetch of ${url.origin}`);
    }
    const local = new URL(`${url.pathname}${url.search}`, localOrigin);
    return undiciFetch(local, { ...(init as object), dispatcher } as never);
  }) as typeof fetch;
}
