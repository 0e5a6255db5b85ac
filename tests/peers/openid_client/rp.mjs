// openid-client (v6) as a relying party of StepGuard, in two steps the test drives:
//   node rp.mjs start  <issuer> <client_id> <client_secret> <redirect_uri> <acr_values>
//     -> {"url", "verifier", "state", "nonce"}: discovery, PKCE S256, the authorization URL
//   node rp.mjs finish <issuer> <client_id> <client_secret> <callback_url> <verifier> <state> <nonce>
//     -> the validated ID token claims: the code redeemed, signature/iss/aud/nonce checked
import * as client from "openid-client";

const [mode, issuer, clientId, clientSecret, ...rest] = process.argv.slice(2);

const config = await client.discovery(
  new URL(issuer),
  clientId,
  { client_secret: clientSecret, id_token_signed_response_alg: "ES256" },
  client.ClientSecretBasic(clientSecret),
  { execute: [client.allowInsecureRequests] },
);

if (mode === "start") {
  const [redirectUri, acrValues] = rest;
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: "openid email",
    code_challenge: challenge,
    code_challenge_method: "S256",
    acr_values: acrValues,
    state,
    nonce,
  });
  process.stdout.write(JSON.stringify({ url: url.href, verifier, state, nonce }));
} else if (mode === "finish") {
  const [callback, verifier, state, nonce] = rest;
  const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  process.stdout.write(JSON.stringify({ claims: tokens.claims(), scope: tokens.scope }));
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
