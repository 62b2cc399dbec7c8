// A Matrix client, through the real matrix-js-sdk, using the identity service: registration
// with an OpenID token, terms, e-mail validation, bind, hashed lookup (the SDK's own), and a
// raw lookup showing MSC4004 third_party_mappings as the SDK hands them over.
// Usage: node client.mjs <parameters.json>; prints one JSON object with what it saw.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import * as sdk from "matrix-js-sdk";

const p = JSON.parse(readFileSync(process.argv[2], "utf8"));
const client = sdk.createClient({ baseUrl: p.homeserver, idBaseUrl: p.identity });
const v2 = sdk.IdentityPrefix.V2;

const registered = await client.registerWithIdentityServer({
  access_token: p.openidToken, token_type: "Bearer", matrix_server_name: p.serverName, expires_in: 3600,
});
const token = registered.access_token ?? registered.token;

const terms = await client.getTerms(sdk.SERVICE_TYPES.IS, p.identity);
const urls = Object.values(terms.policies).map(
  (policy) => Object.entries(policy).find(([key]) => key !== "version")[1].url,
);
await client.agreeToTerms(sdk.SERVICE_TYPES.IS, p.identity, token, urls);
const account = await client.getIdentityAccount(token);

// The SDK sends send_attempt as given; matrix clients send it as a string.
const { sid } = await client.requestEmailToken(p.email, p.clientSecret, "1", undefined, token);

// The test writes the token from the captured mail to this file.
const started = Date.now();
while (!existsSync(p.mailTokenFile)) {
  if (Date.now() - started > 30000) throw new Error("no mail token");
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const mailToken = readFileSync(p.mailTokenFile, "utf8").trim();
const submitted = await client.http.idServerRequest(
  sdk.Method.Post, "/validate/email/submitToken", { sid, client_secret: p.clientSecret, token: mailToken }, v2, token,
);
const bound = await client.http.idServerRequest(
  sdk.Method.Post, "/3pid/bind", { sid, client_secret: p.clientSecret, mxid: account.user_id }, v2, token,
);

// The SDK's hashed lookup (it lower-cases the address before hashing).
const found = await client.identityHashedLookup([[p.email.toUpperCase(), "email"]], token);

// An address another server pushed (MSC4004): the raw answer through the SDK's HTTP layer.
const details = await client.getIdentityHashDetails(token);
const hash = createHash("sha256").update(`${p.remoteEmail} email ${details.lookup_pepper}`).digest("base64url");
const raw = await client.http.idServerRequest(
  sdk.Method.Post, "/lookup", { algorithm: "sha256", pepper: details.lookup_pepper, addresses: [hash] }, v2, token,
);

// The SDK logs to the console too: the result is the line that starts with RESULT.
console.log("RESULT " + JSON.stringify({ account, sid, submitted, bound, found, hash, lookup: raw }));
