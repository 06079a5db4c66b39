/**
 * The real embedded provider on its own plain HTTP server (port 0), mounted under /oidc the
 * way the gateway mounts it. For tests that need real tokens without a whole gateway.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createDevProvider, type DevProviderOptions } from '../../src/gateway/dev-provider.js';
import type { DevAuthConfig, DevProvider } from '../../src/gateway/types.js';

export const TEST_AUDIENCE = 'https://logs.test.example';
export const TEST_CLIENT_ID = 'logproxy-cli';

export interface DevIdp {
  issuer: string;
  audience: string;
  clientId: string;
  dataDir: string;
  provider: DevProvider;
  server: http.Server;
  /** Warnings the provider logged. */
  warnings: Array<{ obj: object; msg: string }>;
  /** Stops the server and the provider; removes dataDir unless `keepData`. */
  close(opts?: { keepData?: boolean }): Promise<void>;
}

export interface DevIdpOptions extends Partial<DevAuthConfig> {
  audience?: string;
  clientId?: string;
  accessTokenFormat?: DevProviderOptions['accessTokenFormat'];
  introspectionClients?: DevProviderOptions['introspectionClients'];
  /** Reuse a server port (for restart tests); default a free one. */
  port?: number;
}

export async function startDevIdp(options: DevIdpOptions = {}): Promise<DevIdp> {
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), 'lp-idp-')));
  const config: DevAuthConfig = {
    users: options.users ?? ['alice', 'bob'],
    autoApprove: 'autoApprove' in options ? options.autoApprove : 'alice',
    accessTokenTtlMs: options.accessTokenTtlMs ?? 5 * 60_000,
    refreshTokenTtlMs: options.refreshTokenTtlMs ?? 12 * 3600_000,
    deviceCodeTtlMs: options.deviceCodeTtlMs ?? 10 * 60_000,
    pollIntervalS: options.pollIntervalS ?? 1,
    dataDir,
  };

  // The issuer needs the port, so listen first and attach the provider once created.
  const mounted: { provider?: DevProvider } = {};
  const server = http.createServer((req, res) => {
    const { provider } = mounted;
    if (provider && req.url?.startsWith(provider.mountPath)) return provider.handle(req, res);
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}/oidc`;
  const audience = options.audience ?? TEST_AUDIENCE;
  const clientId = options.clientId ?? TEST_CLIENT_ID;

  const warnings: DevIdp['warnings'] = [];
  const provider = await createDevProvider({
    issuer,
    audience,
    clientId,
    config,
    accessTokenFormat: options.accessTokenFormat,
    introspectionClients: options.introspectionClients,
    logger: { warn: (obj, msg) => warnings.push({ obj, msg }), info: () => {} },
  });
  mounted.provider = provider;

  return {
    issuer,
    audience,
    clientId,
    dataDir,
    provider,
    server,
    warnings,
    async close({ keepData = false } = {}) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await provider.close();
      if (!keepData && options.dataDir === undefined) {
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  };
}
