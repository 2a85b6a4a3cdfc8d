// A real OpenID provider for the tests (panva's oidc-provider, the certified Node one), with
// one confidential client and its development sign-in page: whatever is typed as the login
// is the account, its subject and (when it holds an @) its e-mail, verified unless it begins
// with "unverified". Started by tests/oidc/__init__.py:
//   node provider.mjs NODE_MODULES PORT CLIENT SECRET
// (NODE_MODULES: where `make install` put it, .venv/oidc/node_modules)
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [modules, port, clientId, clientSecret] = process.argv.slice(2);
const { default: Provider } = await import(
  pathToFileURL(path.join(modules, 'oidc-provider', 'lib', 'index.js')).href
);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: ['http://localhost/sso/callback'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    require_auth_time: true,
  }],
  pkce: { required: () => true },
  // the scopes' claims (email) in the ID token itself, as hospital providers send them
  conformIdTokenClaims: false,
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'email'],
  cookies: { keys: ['tests-only-not-secret'] },
  features: { devInteractions: { enabled: true } },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id,
      ...(id.includes('@') ? { email: id.replace(/^unverified-/, ''), email_verified: !id.startsWith('unverified-') } : {}),
    }),
  }),
  // a first-party client: no consent screen, the scopes asked for are granted
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email');
    await grant.save();
    return grant;
  },
});
provider.proxy = true;

// the test apps listen on loopback addresses and ports of their own: any loopback
// .../sso/callback is a redirect URI of the test client
provider.Client.prototype.redirectUriAllowed = function allowed(uri) {
  const url = new URL(uri);
  return ['localhost', '127.0.0.1'].includes(url.hostname) && url.pathname === '/sso/callback';
};

provider.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
