// oidc-provider (a certified OpenID Provider) as StepGuard's upstream in tests.
//
//   node op.mjs <port> <config.json>
//
// config.json: {"client_id", "client_secret", "redirect_uris": [...], "acr", "amr": [...]}.
// A minimal login interaction (any login name, no password) signs the user in with the
// configured acr/amr; consent is implied for the one client. Prints "listening <issuer>".
import http from 'node:http';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const [port, configPath] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const issuer = `http://localhost:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: config.client_id,
    client_secret: config.client_secret,
    redirect_uris: config.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
    require_auth_time: true,
  }],
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.test`, email_verified: true, name: id };
      },
    };
  },
  claims: {
    // acr and amr with every ID token (as Okta and Entra ID do), not only on request.
    openid: ['sub', 'acr', 'amr'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    auth_time: null,
  },
  acrValues: [config.acr],
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['stepguard-tests-only-cookie-key'] },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function interaction(req, res) {
  const url = new URL(req.url, issuer);
  const uid = url.pathname.split('/')[2];
  if (req.method === 'GET') {
    await provider.interactionDetails(req, res);
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>Upstream sign-in</title><h1>Upstream IdP</h1>
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Login <input name="login" id="login" autocomplete="off"></label>
<button type="submit" id="sign-in">Sign in</button></form>`);
    return;
  }
  let body = '';
  for await (const chunk of req) body += chunk;
  const login = new URLSearchParams(body).get('login') || 'alice';
  await provider.interactionFinished(req, res, {
    login: { accountId: login, acr: config.acr, amr: config.amr },
  }, { mergeWithLastSubmission: false });
}

http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((error) => {
      res.writeHead(500);
      res.end(String(error));
    });
    return;
  }
  provider.callback()(req, res);
}).listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
