// Asks a provider's own npm SDK whether it accepts a webhook request. Reads one JSON object on stdin:
//   {"sdk": "<npm package>", "secret": "...", "url": "...", "method": "POST",
//    "headers": {...}, "body": "<base64 of the raw body>"}
// and prints {"accepted": true|false, "why": "<the SDK's own words when it refuses>"}.
// Used by tests/providers/test_sdk_checks.py; the test signs the request, the SDK judges it.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

function header(headers, name) {
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === wanted) return value;
  }
  return undefined;
}

const CHECKS = {
  // GitHub's own signature helpers (octokit is GitHub's SDK).
  async "@octokit/webhooks-methods"({ secret, headers, body }) {
    const { verify } = await import("@octokit/webhooks-methods");
    return verify(secret, body.toString("utf8"), header(headers, "X-Hub-Signature-256") ?? "");
  },
  async "@linear/sdk"({ secret, headers, body }) {
    const { LinearWebhookClient } = await import("@linear/sdk/webhooks");
    return new LinearWebhookClient(secret).verify(body, header(headers, "Linear-Signature") ?? "");
  },
  async "@mux/mux-node"({ secret, headers, body }) {
    const { default: Mux } = await import("@mux/mux-node");
    const mux = new Mux({ tokenId: "test", tokenSecret: "test", webhookSecret: secret });
    const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
    await mux.webhooks.verifySignature(body.toString("utf8"), lower, secret);
    return true;
  },
  async "@sanity/webhook"({ secret, headers, body }) {
    const { isValidSignature } = await import("@sanity/webhook");
    return isValidSignature(body.toString("utf8"), header(headers, "sanity-webhook-signature") ?? "", secret);
  },
  async "@contentful/node-apps-toolkit"({ secret, headers, body, url, method }) {
    const { verifyRequest } = await import("@contentful/node-apps-toolkit");
    const parsed = new URL(url);
    const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
    return verifyRequest(secret, { method, path: parsed.pathname + parsed.search, headers: lower,
                                    body: body.toString("utf8") }, 300);
  },
  async "@shopify/shopify-api"({ secret, headers, body, url, method }) {
    await import("@shopify/shopify-api/adapters/web-api");
    const { shopifyApi, ApiVersion, LogSeverity } = await import("@shopify/shopify-api");
    const shopify = shopifyApi({ apiKey: "test-key", apiSecretKey: secret, hostName: "hookstatus.test",
                                 apiVersion: ApiVersion.October24, isEmbeddedApp: false,
                                 logger: { level: LogSeverity.Error, log: async () => {} } });
    const request = new Request(url, { method, headers, body });
    const result = await shopify.webhooks.validate({ rawBody: body.toString("utf8"), rawRequest: request });
    if (!result.valid) throw new Error(`${result.reason}${result.missingHeaders ? ": " + result.missingHeaders : ""}`);
    return true;
  },
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
const job = JSON.parse(input);
const check = CHECKS[job.sdk];
if (!check) {
  console.log(JSON.stringify({ accepted: false, why: `no check for ${job.sdk}` }));
  process.exit(2);
}
try {
  const ok = await check({ ...job, method: job.method ?? "POST", body: Buffer.from(job.body, "base64") });
  console.log(JSON.stringify({ accepted: ok === true, why: ok === true ? "" : "the SDK said false" }));
} catch (error) {
  console.log(JSON.stringify({ accepted: false, why: String(error?.message ?? error) }));
}
