/**
 * The gateway's sessions API for clients: bearer tokens from an AccessTokenSource, one silent
 * retry after a refresh when the gateway says the token is no longer good, and problem+json
 * answers turned into LogproxyErrors with stable codes (see `problemToError` in http.ts and
 * docs/exit-codes.md for the mapping).
 */
import type { DiscoveryDocument, SessionList, SessionState, TargetList } from '../protocol/api.js';
import { ErrorCodes, LogproxyError, isLogproxyError } from '../util/errors.js';
import { discoverGateway } from './discovery.js';
import { expectOk, readJson, type Fetch } from './http.js';
import type { AccessTokenSource, GatewayApi } from './types.js';

export interface GatewayApiOptions {
  /** Canonical gateway URL, no trailing slash. */
  baseUrl: string;
  tokens: AccessTokenSource;
  /** Our HTTP client (createHttpClient): it bounds every request's time. */
  fetch: Fetch;
}

/** Options of one authorised request. */
export interface AuthorizedRequestInit extends RequestInit {
  /**
   * Whether the request may be sent twice. Bodies we built from strings are; a streamed body
   * (a forwarded upload) is not, and gets no retry after a refresh: its 401 is returned.
   * Default: true unless the body is a stream.
   */
  replayable?: boolean;
}

/** GatewayApi plus the authorised fetch that tail and the forwarder build on. */
export interface GatewayClient extends GatewayApi {
  /**
   * `fetch(baseUrl + path)` with `Authorization: Bearer`, retried once after
   * `tokens.refresh()` on a 401 `invalid_token` when replayable. Returns the response as is
   * (status not checked): callers read it with `readJson`/`expectOk` or stream it.
   */
  authorizedFetch(path: string, init?: AuthorizedRequestInit): Promise<Response>;
}

const SERVER = 'the gateway';

/**
 * Creates the client.
 *
 * @example
 *   const api = createGatewayApi({ baseUrl: gateway, tokens, fetch: http });
 *   const { targets } = await api.listTargets();
 */
export function createGatewayApi(options: GatewayApiOptions): GatewayClient {
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const { tokens, fetch } = options;

  const authorizedFetch = async (
    path: string,
    init: AuthorizedRequestInit = {},
  ): Promise<Response> => {
    const { replayable: replayableOption, ...requestInit } = init;
    const replayable = replayableOption ?? !isStream(requestInit.body);
    const send = async (token: string) => {
      const headers = new Headers(requestInit.headers);
      headers.set('authorization', `Bearer ${token}`);
      if (!headers.has('accept')) headers.set('accept', 'application/json');
      return fetch(`${baseUrl}${path}`, { ...requestInit, headers });
    };

    const signal = requestInit.signal ?? undefined;
    const first = await send(await tokens.getAccessToken({ signal }));
    if (!isInvalidToken(first) || !replayable) return first;

    // The token expired early or was revoked: refresh once (shared with other callers and,
    // through the lock, with other processes) and try again. A second refusal is final.
    await first.body?.cancel().catch(() => undefined);
    const fresh = await tokens.refresh(signal);
    return send(fresh);
  };

  const json = async <T>(path: string, init: AuthorizedRequestInit = {}): Promise<T> => {
    const response = await authorizedFetch(path, init);
    try {
      return await readJson<T>(response, SERVER);
    } catch (err) {
      throw signInAgain(err);
    }
  };

  const post = <T>(path: string, body: unknown, signal?: AbortSignal) =>
    json<T>(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });

  const session = (id: string) => `/v1/sessions/${encodeURIComponent(id)}`;

  return {
    baseUrl,
    authorizedFetch,
    discovery: (): Promise<DiscoveryDocument> => discoverGateway(baseUrl, fetch),
    listTargets: (signal) => json<TargetList>('/v1/targets', { signal }),
    createSession: (target, signal) =>
      post<SessionState>('/v1/sessions', { target }, signal).then(checkSessionState),
    getSession: (id, signal) => json<SessionState>(session(id), { signal }).then(checkSessionState),
    heartbeat: (id, signal) =>
      post<SessionState>(`${session(id)}/heartbeat`, undefined, signal).then(checkSessionState),
    async endSession(id, signal) {
      const response = await authorizedFetch(session(id), { method: 'DELETE', signal });
      try {
        await expectOk(response, SERVER);
      } catch (err) {
        throw signInAgain(err);
      }
    },
    listSessions: (all = false, signal) =>
      json<SessionList>(`/v1/sessions${all ? '?all=true' : ''}`, { signal }),
    revokeSession: (id, signal) =>
      post<SessionState>(`${session(id)}/revoke`, undefined, signal).then(checkSessionState),
  };
}

/** A 401 whose challenge or problem type says the token itself is the problem. */
function isInvalidToken(response: Response): boolean {
  if (response.status !== 401) return false;
  const challenge = response.headers.get('www-authenticate') ?? '';
  // A 401 without a challenge detail is also a token problem: nothing else earns a 401.
  return /invalid_token/i.test(challenge) || !/error=/i.test(challenge);
}

/** After the retry, a refused token means the sign-in is over: say what to do. */
function signInAgain(err: unknown): unknown {
  if (isLogproxyError(err, ErrorCodes.NOT_SIGNED_IN)) {
    return new LogproxyError(
      ErrorCodes.NOT_SIGNED_IN,
      'the gateway refused the access token even after a refresh; run `logproxy login`',
      { cause: err, details: err.details },
    );
  }
  return err;
}

function isStream(body: unknown): boolean {
  return (
    !!body &&
    typeof body === 'object' &&
    (body instanceof ReadableStream ||
      typeof (body as { pipe?: unknown }).pipe === 'function' ||
      typeof (body as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function')
  );
}

/** The few fields a client acts on; anything else in the answer is passed through. */
function checkSessionState(state: SessionState): SessionState {
  if (
    !state ||
    typeof state.id !== 'string' ||
    (state.state !== 'active' && state.state !== 'ended') ||
    typeof state.expires_at !== 'string'
  ) {
    throw new LogproxyError(
      ErrorCodes.BAD_RESPONSE,
      'the gateway sent a session without id, state or expires_at; is it a compatible version?',
    );
  }
  return state;
}
