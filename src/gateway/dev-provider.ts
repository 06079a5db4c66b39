/**
 * The embedded development identity provider: oidc-provider 8, mounted by the gateway under
 * the issuer's path, so `logproxy-gateway --dev` needs no external IdP.
 *
 * It offers what the CLI needs and nothing more: one public client doing the device flow,
 * refresh tokens rotated on every use (reuse of an old one revokes the whole grant), JWT
 * access tokens (RFC 9068) for the gateway's audience carrying `auth_time`, revocation, a
 * browser approval page with a password-less development login, and `autoApprove` for
 * scripts. Keys, cookie secrets and grants persist in `config.dataDir`.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import Provider, {
  errors as oidcErrors,
  interactionPolicy,
  type ClientMetadata,
  type Configuration,
  type KoaContextWithOIDC,
} from 'oidc-provider';
import { FileModelStore } from './dev-provider-store.js';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-file.js';
import {
  PAGE_HEADERS,
  codeConfirmPage,
  codeInputPage,
  consentPage,
  errorPage,
  signInPage,
  successPage,
} from './dev-provider-pages.js';
import type { DevAuthConfig, DevProvider } from './types.js';

export interface DevProviderLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface DevProviderOptions {
  /** e.g. `${gatewayBaseUrl}/oidc`; its pathname is where the gateway mounts `handle`. */
  issuer: string;
  /** The `aud` of access tokens: the gateway's audience (a resource indicator). */
  audience: string;
  /** The public client the CLI uses. */
  clientId: string;
  config: DevAuthConfig;
  logger?: DevProviderLogger;
  /**
   * `opaque` issues random access tokens that only introspection can read (to exercise a
   * gateway configured for RFC 7662). Default `jwt`.
   */
  accessTokenFormat?: 'jwt' | 'opaque';
  /** Confidential clients (client_secret_basic) allowed to call the introspection endpoint. */
  introspectionClients?: ReadonlyArray<{ clientId: string; clientSecret: string }>;
}

const SCOPES = ['openid', 'offline_access', 'profile'] as const;
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
/** A browser sign-in session only has to outlive one approval. */
const BROWSER_SESSION_TTL_S = 60 * 60;
/** Access tokens are ES256 (short signatures); the RS256 key signs ID tokens, the default. */
const ACCESS_TOKEN_ALG = 'ES256';

const STORE_FILE = 'provider-store.json';
const SIGNING_KEYS_FILE = 'signing-keys.json';
const COOKIE_KEYS_FILE = 'cookie-keys.json';

/**
 * Creates the provider. Call once per gateway; `close()` waits for pending writes.
 *
 * @example
 *   const dev = await createDevProvider({ issuer: `${base}/oidc`, audience, clientId, config });
 *   // in the gateway's request handler:
 *   if (url.pathname.startsWith(dev.mountPath)) return dev.handle(req, res);
 */
export async function createDevProvider(options: DevProviderOptions): Promise<DevProvider> {
  const { issuer, config, logger } = options;
  validateOptions(options);
  const mountPath = new URL(issuer).pathname.replace(/\/+$/, '');

  await ensurePrivateDir(config.dataDir);
  const signingKeys = await loadOrCreate(path.join(config.dataDir, SIGNING_KEYS_FILE), () =>
    generateSigningKeys(),
  );
  const cookieKeys = await loadOrCreate(path.join(config.dataDir, COOKIE_KEYS_FILE), async () =>
    [0, 1].map(() => randomBytes(32).toString('base64url')),
  );
  const store = await FileModelStore.open(path.join(config.dataDir, STORE_FILE));

  const configuration = buildConfiguration(options, mountPath, store, signingKeys, cookieKeys);
  const provider = new Provider(issuer, configuration);
  // Never trust X-Forwarded-* headers: a client could pick the host of the URLs we hand out.
  provider.proxy = false;
  provider.use(deviceAuthorizationExtras(options));
  provider.on('server_error', (_ctx: unknown, err: Error) => {
    logger?.warn({ err: err.message }, 'development identity provider: internal error');
  });

  logger?.warn(
    { issuer, users: config.users, autoApprove: config.autoApprove ?? null },
    'DEVELOPMENT identity provider enabled: anyone who can reach the gateway can sign in as ' +
      'any configured user without a password. Never use auth.dev in production.',
  );

  const callback = provider.callback();
  const interactions = createInteractionRoutes(provider, options, mountPath);

  return {
    issuer,
    mountPath,
    handle(req: IncomingMessage, res: ServerResponse): void {
      const rest = stripMountPath(req.url ?? '/', mountPath);
      if (rest === undefined) {
        sendHtml(res, 404, errorPage('Not found', 'There is no such page.'));
        return;
      }
      if (rest.startsWith('/interaction/')) {
        interactions(req, res, rest).catch((err: unknown) => {
          logger?.warn({ err: (err as Error).message }, 'development sign-in page failed');
          sendHtml(res, 500, errorPage('Something went wrong', 'Start again from the terminal.'));
        });
        return;
      }
      mountForOidcProvider(req, rest, mountPath);
      void callback(req, res);
    },
    async close(): Promise<void> {
      await store.flush();
    },
  };
}

// ---------- options and files ----------

function validateOptions(options: DevProviderOptions): void {
  const { config } = options;
  if (config.users.length === 0) {
    throw new TypeError('auth.dev.users must name at least one user');
  }
  if (config.autoApprove !== undefined && !config.users.includes(config.autoApprove)) {
    throw new TypeError(
      `auth.dev.auto_approve is "${config.autoApprove}", which is not in auth.dev.users`,
    );
  }
  if (!path.isAbsolute(config.dataDir)) {
    throw new TypeError(`auth.dev.data_dir must be an absolute path, got "${config.dataDir}"`);
  }
  new URL(options.issuer); // throws a TypeError naming the bad URL
}

/** Reads JSON from `file`, or creates it with `create()` (0600, atomically) the first time. */
async function loadOrCreate<T>(file: string, create: () => Promise<T>): Promise<T> {
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text !== undefined) {
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new Error(`${file} is not valid JSON; move it away and a new one will be made`);
    }
  }
  const value = await create();
  await writeFileAtomic(file, JSON.stringify(value, null, 2));
  return value;
}

interface SigningKeys {
  keys: JWK[];
}

async function generateSigningKeys(): Promise<SigningKeys> {
  const keys: JWK[] = [];
  for (const alg of [ACCESS_TOKEN_ALG, 'RS256']) {
    const { privateKey } = await generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
    const jwk = await exportJWK(privateKey);
    keys.push({ ...jwk, kid: await calculateJwkThumbprint(jwk), alg, use: 'sig' });
  }
  return { keys };
}

// ---------- oidc-provider configuration ----------

function buildConfiguration(
  options: DevProviderOptions,
  mountPath: string,
  store: FileModelStore,
  signingKeys: SigningKeys,
  cookieKeys: string[],
): Configuration {
  const { audience, clientId, config } = options;
  const users = new Set(config.users);
  const accessTokenTtlS = Math.max(1, Math.round(config.accessTokenTtlMs / 1000));
  const refreshTokenTtlS = Math.max(1, Math.round(config.refreshTokenTtlMs / 1000));
  const deviceCodeTtlS = Math.max(1, Math.round(config.deviceCodeTtlMs / 1000));

  const clients: ClientMetadata[] = [
    {
      client_id: clientId,
      client_name: 'logproxy CLI',
      token_endpoint_auth_method: 'none',
      grant_types: [DEVICE_CODE_GRANT, 'refresh_token'],
      response_types: [],
      redirect_uris: [],
    },
    ...(options.introspectionClients ?? []).map((c) => ({
      client_id: c.clientId,
      client_secret: c.clientSecret,
      token_endpoint_auth_method: 'client_secret_basic' as const,
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    })),
  ];

  return {
    adapter: (name: string) => store.adapterFor(name),
    clients,
    jwks: { keys: signingKeys.keys } as Configuration['jwks'],
    cookies: {
      keys: cookieKeys,
      long: { httpOnly: true, sameSite: 'lax', signed: true },
      short: { httpOnly: true, sameSite: 'lax', signed: true },
    },
    scopes: [...SCOPES],
    claims: { openid: ['sub'], profile: ['name', 'preferred_username'] },
    async findAccount(_ctx, sub) {
      if (!users.has(sub)) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { sub, name: sub, preferred_username: sub };
        },
      };
    },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: true,
        userCodeInputSource,
        userCodeConfirmSource,
        successSource,
      },
      revocation: { enabled: true },
      introspection: {
        enabled: true,
        // The CLI (public) may only look at its own tokens; a confidential client (a gateway
        // configured for introspection) may look at any.
        allowedPolicy: async (ctx, client, token) =>
          client.clientAuthMethod !== 'none' || token.clientId === ctx.oidc.client?.clientId,
      },
      userinfo: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Every token is for the gateway, asked for or not.
        defaultResource: () => audience,
        // A refresh without `resource` still gets a JWT for the gateway.
        useGrantedResource: () => true,
        getResourceServerInfo(_ctx, resourceIndicator) {
          if (resourceIndicator !== audience) throw new oidcErrors.InvalidTarget();
          return {
            scope: SCOPES.join(' '),
            audience,
            accessTokenTTL: accessTokenTtlS,
            accessTokenFormat: options.accessTokenFormat ?? 'jwt',
            jwt: { sign: { alg: ACCESS_TOKEN_ALG } },
          };
        },
      },
    },
    extraTokenClaims: addAuthTime,
    rotateRefreshToken: true,
    interactions: {
      url: (_ctx, interaction) => `${mountPath}/interaction/${interaction.uid}`,
      policy: buildInteractionPolicy(),
    },
    ttl: {
      AccessToken: accessTokenTtlS,
      IdToken: accessTokenTtlS,
      DeviceCode: deviceCodeTtlS,
      Interaction: deviceCodeTtlS,
      Session: BROWSER_SESSION_TTL_S,
      // A little longer than any refresh token of the grant, which all end by then anyway.
      Grant: refreshTokenTtlS + 60,
      // Absolute: counted from the sign-in, not renewed by rotation. Without this, refreshing
      // every few minutes would keep a person signed in forever.
      RefreshToken(ctx, token) {
        const rotated = ctx?.oidc?.entities.RotatedRefreshToken;
        if (rotated) return Math.max(1, rotated.remainingTTL);
        const signedInS = token.iiat ?? Math.floor(Date.now() / 1000);
        return Math.max(1, refreshTokenTtlS - (Math.floor(Date.now() / 1000) - signedInS));
      },
    },
    renderError(ctx, out) {
      setPageHeaders(ctx);
      ctx.type = 'html';
      ctx.body = errorPage(
        'Sign-in failed',
        `${out.error_description ?? out.error}. Start again from the terminal.`,
      );
    },
  };
}

/** RFC 9068 makes `auth_time` optional; the gateway needs it to tell a fresh sign-in apart. */
async function addAuthTime(
  ctx: KoaContextWithOIDC,
  _token: unknown,
): Promise<Record<string, unknown> | undefined> {
  // The device code on first issue; the (new, rotated) refresh token on refresh. Both carry
  // the person's sign-in time, so a refresh keeps the original auth_time.
  const entities = ctx?.oidc?.entities;
  const source = entities?.DeviceCode ?? entities?.RefreshToken;
  const authTime = source?.authTime;
  return typeof authTime === 'number' ? { auth_time: authTime } : undefined;
}

/**
 * oidc-provider's default policy remembers a browser's sign-in and skips consent for scopes
 * granted before. For a device code that is wrong: each approval must say who signs in and
 * must be confirmed (a code sent by someone else is the classic device-flow phishing), and
 * the sign-in time must be the approval, so the gateway's `auth_time` check sees a new login.
 */
function buildInteractionPolicy(): interactionPolicy.Prompt[] {
  const { base, Check } = interactionPolicy;
  const policy = base();
  policy
    .get('login')
    ?.checks.add(
      new Check('dev_sign_in_each_time', 'every device code asks who signs in', (ctx) =>
        ctx.oidc.result?.login ? Check.NO_NEED_TO_PROMPT : Check.REQUEST_PROMPT,
      ),
    );
  policy
    .get('consent')
    ?.checks.add(
      new Check('dev_confirm_each_time', 'every device code must be approved', (ctx) =>
        ctx.oidc.result && 'consent' in ctx.oidc.result
          ? Check.NO_NEED_TO_PROMPT
          : Check.REQUEST_PROMPT,
      ),
    );
  return policy;
}

// ---------- device authorization: interval and auto-approval ----------

type KoaMiddleware = (ctx: KoaContextWithOIDC, next: () => Promise<void>) => Promise<void>;

/**
 * Runs around oidc-provider's own routes. On a successful device authorization it adds the
 * `interval` oidc-provider leaves out (clients would poll every 5 s), and with `autoApprove`
 * approves the new code before the response leaves, so the first poll already succeeds.
 */
function deviceAuthorizationExtras(options: DevProviderOptions): KoaMiddleware {
  const { pollIntervalS, autoApprove } = options.config;
  return async (ctx, next) => {
    await next();
    if (ctx.oidc?.route !== 'device_authorization' || ctx.status !== 200) return;
    if (autoApprove !== undefined) {
      await approveAs(ctx, autoApprove, options.audience);
      options.logger?.info(
        { user: autoApprove },
        'development provider auto-approved a device code',
      );
    }
    (ctx.body as Record<string, unknown>).interval = pollIntervalS;
  };
}

/** What the approval pages would record, done at once for `user`. */
async function approveAs(ctx: KoaContextWithOIDC, user: string, audience: string): Promise<void> {
  const code = ctx.oidc.entities.DeviceCode;
  if (!code) throw new Error('device authorization finished without a device code');
  const { provider } = ctx.oidc;

  const requested = String((code.params as { scope?: unknown })?.scope ?? '')
    .split(' ')
    .filter((scope) => (SCOPES as readonly string[]).includes(scope))
    .join(' ');
  const resource = Object.keys(ctx.oidc.resourceServers ?? {})[0] ?? audience;

  const grant = new provider.Grant({ accountId: user, clientId: code.clientId });
  grant.addOIDCScope(requested);
  grant.addResourceScope(resource, requested);
  const grantId = await grant.save();

  Object.assign(code, {
    accountId: user,
    grantId,
    // The approval is the sign-in: auth_time is now.
    authTime: Math.floor(Date.now() / 1000),
    amr: ['dev'],
    scope: requested,
    resource,
  });
  await code.save();
}

// ---------- device flow pages (rendered inside oidc-provider's own routes) ----------

function setPageHeaders(ctx: KoaContextWithOIDC): void {
  for (const [name, value] of Object.entries(PAGE_HEADERS)) ctx.set(name, value);
}

async function userCodeInputSource(
  ctx: KoaContextWithOIDC,
  form: string,
  _out?: unknown,
  err?: { name?: string; userCode?: string },
): Promise<void> {
  setPageHeaders(ctx);
  let error: string | undefined;
  let notice: string | undefined;
  if (err?.name === 'AbortedError') {
    notice = 'Sign-in denied. Your terminal will report that access was denied.';
  } else if (err?.name === 'NoCodeError') {
    error = 'Enter the code your terminal shows.';
  } else if (err?.name === 'ExpiredError') {
    error = 'That code has expired. Run the sign-in again in your terminal for a new one.';
  } else if (err?.name === 'AlreadyUsedError') {
    error = 'That code was already used. Run the sign-in again in your terminal.';
  } else if (err?.userCode || err?.name === 'NotFoundError') {
    error = 'No sign-in is waiting for that code. Check it against your terminal.';
  } else if (err) {
    error = 'Something went wrong. Start again from the terminal.';
  }
  ctx.type = 'html';
  ctx.body = codeInputPage(form, error, notice);
}

async function userCodeConfirmSource(
  ctx: KoaContextWithOIDC,
  form: string,
  client: { clientId: string; clientName?: string },
  _deviceInfo: unknown,
  userCode: string,
): Promise<void> {
  setPageHeaders(ctx);
  ctx.type = 'html';
  ctx.body = codeConfirmPage(form, client.clientName ?? client.clientId, userCode);
}

async function successSource(ctx: KoaContextWithOIDC): Promise<void> {
  setPageHeaders(ctx);
  ctx.type = 'html';
  ctx.body = successPage(ctx.oidc.entities.DeviceCode?.accountId);
}

// ---------- our interaction routes: sign-in and approval ----------

type InteractionRoutes = (req: IncomingMessage, res: ServerResponse, rest: string) => Promise<void>;

const INTERACTION_PATH = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?\/?$/;
const MAX_FORM_BYTES = 8 * 1024;

function createInteractionRoutes(
  provider: Provider,
  options: DevProviderOptions,
  mountPath: string,
): InteractionRoutes {
  const { users } = options.config;
  const expired = (res: ServerResponse): void =>
    sendHtml(
      res,
      400,
      errorPage(
        'This sign-in has expired',
        'The page is too old or was opened in another browser. Start again from the terminal.',
      ),
    );

  return async (req, res, rest) => {
    const match = INTERACTION_PATH.exec(rest.split('?')[0]);
    if (!match) {
      sendHtml(res, 404, errorPage('Not found', 'There is no such sign-in page.'));
      return;
    }
    const [, uid, action] = match;
    const base = `${mountPath}/interaction/${uid}`;

    let details: Awaited<ReturnType<Provider['interactionDetails']>>;
    try {
      details = await provider.interactionDetails(req, res);
    } catch (err) {
      if (err instanceof oidcErrors.SessionNotFound) return expired(res);
      throw err;
    }
    if (details.uid !== uid) return expired(res);

    const wantsPost = action !== undefined;
    if ((req.method === 'POST') !== wantsPost) {
      res.setHeader('Allow', wantsPost ? 'POST' : 'GET');
      sendHtml(res, 405, errorPage('Not allowed', 'Use the buttons on the sign-in page.'));
      return;
    }

    const clientId = String(details.params.client_id);
    const client = await provider.Client.find(clientId);
    const clientName = client?.clientName ?? clientId;
    const pages = { action: `${base}/${details.prompt.name === 'login' ? 'login' : 'confirm'}` };
    const abortAction = `${base}/abort`;

    if (action === undefined) {
      if (details.prompt.name === 'login') {
        sendHtml(res, 200, signInPage({ action: pages.action, abortAction, users }));
      } else {
        sendHtml(
          res,
          200,
          consentPage({
            action: pages.action,
            abortAction,
            user: details.session?.accountId ?? '',
            clientName,
            scopes: String(details.params.scope ?? '')
              .split(' ')
              .filter(Boolean),
          }),
        );
      }
      return;
    }

    const form = await readForm(req);
    if (action === 'abort') {
      await provider.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'the person denied the sign-in request' },
        { mergeWithLastSubmission: false },
      );
      return;
    }

    if (action === 'login' && details.prompt.name === 'login') {
      const name = (form.get('pick') ?? form.get('user') ?? '').trim();
      if (!users.includes(name)) {
        const error = name
          ? `There is no user "${name}" here. This development provider knows: ` +
            `${users.join(', ')}.`
          : 'Choose or type a user name.';
        sendHtml(
          res,
          400,
          signInPage({ action: pages.action, abortAction, users, error, typed: name }),
        );
        return;
      }
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: name, amr: ['dev'] } },
        { mergeWithLastSubmission: false },
      );
      return;
    }

    if (action === 'confirm' && details.prompt.name === 'consent') {
      const grantId = await saveGrant(provider, details);
      await provider.interactionFinished(
        req,
        res,
        { consent: { grantId } },
        { mergeWithLastSubmission: true },
      );
      return;
    }

    // A stale tab posting to a step the interaction has moved past.
    return expired(res);
  };
}

interface ConsentDetails {
  missingOIDCScope?: string[];
  missingOIDCClaims?: string[];
  missingResourceScopes?: Record<string, string[]>;
}

/** Grants what the consent prompt found missing, on the existing grant if there is one. */
async function saveGrant(
  provider: Provider,
  details: Awaited<ReturnType<Provider['interactionDetails']>>,
): Promise<string> {
  const accountId = details.session?.accountId;
  if (!accountId) throw new Error('consent without a signed-in user');
  const existing = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  const grant =
    existing ?? new provider.Grant({ accountId, clientId: String(details.params.client_id) });

  const missing = details.prompt.details as ConsentDetails;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return grant.save();
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM_BYTES) throw new Error('sign-in form too large');
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sendHtml(res: ServerResponse, status: number, html: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { ...PAGE_HEADERS, 'Content-Length': Buffer.byteLength(html) });
  res.end(html);
}

// ---------- mounting ----------

/**
 * The request path below the mount point, always starting with `/`; undefined when the URL is
 * not under it (`/oidcx` is not under `/oidc`).
 */
function stripMountPath(url: string, mountPath: string): string | undefined {
  if (!url.startsWith(mountPath)) return undefined;
  const rest = url.slice(mountPath.length);
  if (rest === '' || rest.startsWith('?')) return `/${rest}`;
  return rest.startsWith('/') ? rest : undefined;
}

/**
 * oidc-provider works out its mount point the way Express does (`req.originalUrl` holds the
 * full URL, `req.url` the part below the mount, `req.baseUrl` the prefix) and builds every URL
 * it hands out (verification_uri, redirects, discovery endpoints) from them.
 */
function mountForOidcProvider(req: IncomingMessage, rest: string, mountPath: string): void {
  const mounted = req as IncomingMessage & { originalUrl?: string; baseUrl?: string };
  mounted.originalUrl = req.url;
  mounted.baseUrl = mountPath;
  req.url = rest;
}
