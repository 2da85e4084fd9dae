// bench/graphile/worker.js: bench/run's outside reference. graphile-worker
// runs one task, "deliver", whose job payload is one event (id, type,
// subject, time, data, as in notification_outbox); it POSTs the same
// CloudEvents envelope with the same headers and the same HMAC-SHA256
// X-Signature-256 as s3o-notifyd to the URL in BENCH_URL over https, on a
// keep-alive agent that trusts the run's CA (BENCH_CA). A reply other than
// 2xx fails the job (graphile-worker retries it later).
//
//   node worker.js migrate   install graphile-worker's schema and exit
//   node worker.js           work until SIGTERM (graphile-worker's own
//                            graceful shutdown)
//
// The database: the PG* environment (PGHOST, PGPORT, PGUSER, PGDATABASE).
// Settings, from the environment (bench/run passes the ones it chose):
//   GW_CONCURRENCY   concurrentJobs (default 32)
//   GW_LOCAL_QUEUE   localQueue.size, -1 off (default 200)
//   GW_COMPLETE      completeJobBatchDelay ms, -1 off (default 0)
//   GW_POOL          maxPoolSize (default 10)
//   GW_POLL          pollInterval ms (default 2000)
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const https = require("node:https");
const tls = require("node:tls");
const { Logger, run, runMigrations } = require("graphile-worker");

// Warnings and errors only: an info line per job would cost more than the job.
const logger = new Logger(() => (level, message) => {
	if (level === "error" || level === "warning") console.error(`${level}: ${message}`);
});

function num(name, dflt) {
	const v = process.env[name];
	if (v === undefined || v === "") return dflt;
	const n = Number(v);
	if (!Number.isInteger(n)) throw new Error(`${name}=${v}: not an integer`);
	return n;
}

const concurrency = num("GW_CONCURRENCY", 32);
const localQueue = num("GW_LOCAL_QUEUE", 200);
const preset = {
	worker: {
		logger,
		schema: "graphile_worker",
		concurrentJobs: concurrency,
		maxPoolSize: num("GW_POOL", 10),
		pollInterval: num("GW_POLL", 2000),
		completeJobBatchDelay: num("GW_COMPLETE", 0),
		failJobBatchDelay: num("GW_COMPLETE", 0),
		...(localQueue > 1 ? { localQueue: { size: localQueue } } : {}),
	},
};

async function main() {
	if (process.argv[2] === "migrate") {
		await runMigrations({ preset });
		return;
	}
	const url = new URL(process.env.BENCH_URL);
	const secret = process.env.BENCH_SECRET;
	// One secure context for every connection: with `ca` among the agent's
	// options instead, node turns the whole CA file into the agent's
	// connection-pool key on every request (milliseconds each for a system
	// bundle), kept-alive socket or not.
	const agent = new https.Agent({
		keepAlive: true,
		maxSockets: concurrency,
		secureContext: tls.createSecureContext({ ca: fs.readFileSync(process.env.BENCH_CA) }),
	});

	function post(body) {
		const sig =
			"sha256=" + crypto.createHmac("sha256", secret).update(body).digest("hex");
		return new Promise((resolve, reject) => {
			const req = https.request(
				{
					agent,
					method: "POST",
					host: url.hostname,
					port: url.port,
					path: url.pathname,
					headers: {
						Accept: "*/*",
						"Content-Type": "application/cloudevents+json",
						"User-Agent": "s3o-bench-graphile/1",
						"X-Signature-256": sig,
						"Content-Length": Buffer.byteLength(body),
					},
					timeout: 30000,
				},
				(res) => {
					res.resume();
					res.on("end", () =>
						res.statusCode >= 200 && res.statusCode < 300
							? resolve()
							: reject(new Error(`HTTP ${res.statusCode}`)),
					);
				},
			);
			req.on("timeout", () => req.destroy(new Error("timeout")));
			req.on("error", reject);
			req.end(body);
		});
	}

	const runner = await run({
		preset,
		taskList: {
			// The envelope s3o-notifyd builds from an outbox row.
			deliver: (p) =>
				post(
					JSON.stringify({
						specversion: "1.0",
						id: p.id,
						source: "/s3-orchestrator",
						type: p.type,
						subject: p.subject,
						time: p.time,
						datacontenttype: "application/json",
						data: p.data,
					}),
				),
		},
	});
	await runner.promise;
}

main().catch((e) => {
	console.error(e);
	process.exit(1);
});
