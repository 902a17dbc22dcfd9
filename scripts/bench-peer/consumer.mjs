// The peer scripts/bench compares quilt-notify with: what a team would write instead of it, in
// Node.js with the usual libraries (bbc/sqs-consumer, AWS SDK v3 for SQS and SES v2, Handlebars),
// doing the same work per message as the worker with details off: parse the EventBridge
// envelope, match the route (source and detail-type), build the same template data, render the
// same three templates (config/templates/package-created), send one email with SES v2
// SendEmail, delete the message (in batches) only once its email was accepted.
//
// Settings come from the environment (scripts/bench.py sets them):
//   QUEUE_URL       the queue to drain
//   SQS_ENDPOINT    LocalStack's endpoint (SQS)
//   SES_ENDPOINT    the SES v2 emulator's endpoint
//   TEMPLATE_DIR    the directory with subject.hbs, html.hbs and text.hbs
//   FROM, TO        sender and recipient
//   CATALOG_HOST    the catalog's host for catalog_url and revisions_url (default none: null)
//   ROUTE           the route's name in the template data and the email's tag (default "bench")
//   POLLERS         concurrent consumers, each receiving batches of BATCH (default 4 and 10)
//   WAIT_SECONDS    long-poll wait (default 20), VISIBILITY_SECONDS (default 30)
// It prints one line when every consumer polls ("ready"), then after each batch's
// DeleteMessageBatch one line "deleted TOTAL AT_MS" (messages deleted so far by this process, and
// the time in ms since the epoch: scripts/bench's drain timing; one line per batch of ten, where
// the worker logs one per message), and runs until SIGTERM or SIGINT.

import fs from "node:fs";
import path from "node:path";

import { SESv2Client, SendEmailCommand } from "@aws-sdk/client-sesv2";
import { SQSClient } from "@aws-sdk/client-sqs";
import Handlebars from "handlebars";
import { Consumer } from "sqs-consumer";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) {
    console.error(`bench-peer: ${name} is not set`);
    process.exit(2);
  }
  return value;
};

const queueUrl = env("QUEUE_URL");
const region = process.env.AWS_REGION ?? "us-east-1";
const pollers = Number(env("POLLERS", "4"));
const batchSize = Number(env("BATCH", "10"));
const from = env("FROM");
const to = env("TO");
const catalogHost = (process.env.CATALOG_HOST ?? "").replace(/\/+$/, "").replace(/^https?:\/\//, "");
const route = env("ROUTE", "bench");

// The same helpers the worker's Handlebars (handlebars-rust) has built in.
Handlebars.registerHelper("eq", (a, b) => a === b);
Handlebars.registerHelper("gt", (a, b) => a > b);
Handlebars.registerHelper("len", (value) => (value == null ? 0 : value.length));

const templateDir = env("TEMPLATE_DIR");
const load = (name, escape) =>
  Handlebars.compile(fs.readFileSync(path.join(templateDir, `${name}.hbs`), "utf8"), {
    noEscape: !escape,
  });
const templates = { subject: load("subject", false), html: load("html", true), text: load("text", false) };

const sqs = new SQSClient({ region, endpoint: env("SQS_ENDPOINT") });
const ses = new SESv2Client({ region, endpoint: env("SES_ENDPOINT") });

// Percent-encodes all but RFC 3986 unreserved characters and "/", as the worker's links do
// (src/domain/catalog.rs, encode_path).
const keep = /[A-Za-z0-9\-._~/]/;
function encodePath(raw) {
  let out = "";
  for (const byte of Buffer.from(raw, "utf8")) {
    const c = String.fromCharCode(byte);
    out += byte < 128 && keep.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

// The worker's template data with details off (src/domain/render.rs, template_data).
function templateData(envelope) {
  const detail = envelope.detail;
  const topHash = detail.topHash;
  const packageUrl = catalogHost
    ? `https://${catalogHost}/b/${encodePath(detail.bucket)}/packages/${encodePath(detail.handle)}`
    : null;
  return {
    ...envelope,
    bucket: detail.bucket,
    handle: detail.handle,
    top_hash: topHash,
    short_hash: topHash.slice(0, 7),
    type: detail.type,
    time: envelope.time,
    catalog_url: packageUrl && `${packageUrl}/tree/${encodePath(topHash)}/`,
    revisions_url: packageUrl && `${packageUrl}/revisions`,
    quilt_uri: `quilt+s3://${encodePath(detail.bucket)}#package=${encodePath(detail.handle)}@${encodePath(topHash)}`,
    route,
    unsubscribe_url: null,
    package: null,
    changes: null,
  };
}

// The bench's route: every package-revision event from Quilt.
const matches = (envelope) =>
  envelope.source === "com.quiltdata" &&
  envelope["detail-type"] === "package-revision" &&
  typeof envelope.detail?.bucket === "string" &&
  typeof envelope.detail?.handle === "string" &&
  typeof envelope.detail?.topHash === "string";

async function handle(message) {
  const envelope = JSON.parse(message.Body);
  if (!matches(envelope)) {
    return message;
  }
  const data = templateData(envelope);
  const subject = templates.subject(data).replace(/\s+/g, " ").trim();
  await ses.send(
    new SendEmailCommand({
      FromEmailAddress: from,
      Destination: { ToAddresses: [to] },
      Content: {
        Simple: {
          Subject: { Data: subject, Charset: "UTF-8" },
          Body: {
            Html: { Data: templates.html(data), Charset: "UTF-8" },
            Text: { Data: templates.text(data), Charset: "UTF-8" },
          },
        },
      },
      EmailTags: [
        { Name: "route", Value: route },
        { Name: "event_id", Value: String(envelope.id).replace(/[^A-Za-z0-9_-]/g, "_") },
      ],
    }),
  );
  return message;
}

// Each message of a batch is sent concurrently; only those whose email was accepted are
// returned, so only those are deleted (one DeleteMessageBatch).
async function handleBatch(messages) {
  const results = await Promise.allSettled(messages.map(handle));
  return results.filter((r) => r.status === "fulfilled").map((r) => r.value);
}

const consumers = Array.from({ length: pollers }, () =>
  Consumer.create({
    queueUrl,
    sqs,
    batchSize,
    handleMessageBatch: handleBatch,
    waitTimeSeconds: Number(env("WAIT_SECONDS", "20")),
    visibilityTimeout: Number(env("VISIBILITY_SECONDS", "30")),
    pollingWaitTimeMs: 0,
    strictReturn: true,
  }),
);
let deleted = 0;
for (const consumer of consumers) {
  // message_processed: once per message, after its batch's DeleteMessageBatch returned.
  consumer.on("message_processed", () => {
    deleted += 1;
  });
  consumer.on("response_processed", () => console.log(`deleted ${deleted} ${Date.now()}`));
  consumer.on("error", (err) => console.error(`bench-peer: ${err.message}`));
  consumer.on("processing_error", (err) => console.error(`bench-peer: ${err.message}`));
  consumer.start();
}
console.log(`bench-peer: ready, ${pollers} consumers of ${batchSize} on ${queueUrl}`);

const stop = () => {
  for (const consumer of consumers) {
    consumer.stop({ abort: true });
  }
  setTimeout(() => process.exit(0), 100);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
