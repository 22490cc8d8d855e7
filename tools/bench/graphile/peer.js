// The peer pipeline of tools/bench/e2e.sh (a benchmark, not a test): the same four stages as
// intake -> routing -> shelter -> notify, as Graphile Worker tasks over the same PostgreSQL.
//
//   node peer.js setup CONNINFO CAPACITIES_JSON    schema "peer" (cases, providers,
//                                                   referrals, shelters with the given
//                                                   capacities per region, placements) and
//                                                   Graphile Worker's own schema
//   node peer.js worker CONNINFO HOOK_URL CONCURRENCY
//                                                   runs the tasks until SIGTERM
//   node peer.js submit CONNINFO N CLIENTS REGION [RATE] [LOG]
//                                                   adds N "intake" jobs from CLIENTS
//                                                   connections (RATE per second in all, 0: as
//                                                   fast as acknowledged); prints one line of
//                                                   JSON like nrm-bench; LOG gets
//                                                   "CASE_ID SUBMITTED_MS" per job
//
// Tasks, each one transaction that does its work and adds the next job (so nothing is lost
// between stages; a retried job changes nothing twice, by its keys):
//   intake   insert the case
//   route    create a referral per non-shelter need to the region's provider with the fewest
//            open referrals, then ask for a bed
//   allocate lock the region's shelters, take a bed where one is free (never over capacity) or
//            put the case on the waitlist; the webhook job gets a delivery id fixed here
//   webhook  POST a small CloudEvent to HOOK_URL (X-NRM-Delivery: the fixed id); a non-2xx
//            answer fails the job and Graphile Worker retries it
"use strict";
const { run, runMigrations } = require("graphile-worker");
const { Pool } = require("pg");
const crypto = require("crypto");
const fs = require("fs");

const SERVICES = ["MEDICAL", "LEGAL_AID"];

async function tx(pool, work) {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    throw e;
  } finally {
    client.release();
  }
}

async function setup(conninfo, capacities) {
  const pool = new Pool({ connectionString: conninfo });
  await pool.query(`
    DROP SCHEMA IF EXISTS peer CASCADE;
    CREATE SCHEMA peer;
    CREATE TABLE peer.cases (case_id uuid PRIMARY KEY, region text NOT NULL,
                             needs text[] NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE peer.providers (provider_id text PRIMARY KEY, region text NOT NULL,
                                 service text NOT NULL, open_referrals int NOT NULL DEFAULT 0);
    CREATE TABLE peer.referrals (case_id uuid NOT NULL, service text NOT NULL,
                                 provider_id text NOT NULL REFERENCES peer.providers,
                                 PRIMARY KEY (case_id, service));
    CREATE TABLE peer.shelters (shelter_id text PRIMARY KEY, region text NOT NULL,
                                capacity int NOT NULL, occupied int NOT NULL DEFAULT 0,
                                CHECK (occupied <= capacity));
    CREATE TABLE peer.placements (case_id uuid PRIMARY KEY, shelter_id text REFERENCES peer.shelters,
                                  waitlisted_at timestamptz, placed_at timestamptz);`);
  for (const [region, list] of Object.entries(capacities)) {
    for (const service of SERVICES)
      for (let i = 0; i < 3; i++)
        await pool.query("INSERT INTO peer.providers VALUES ($1, $2, $3, 0)",
                         [`${service}-${region}-${i}`, region, service]);
    for (let i = 0; i < list.length; i++)
      await pool.query("INSERT INTO peer.shelters VALUES ($1, $2, $3, 0)",
                       [`shelter-${region}-${i}`, region, list[i]]);
  }
  await runMigrations({ connectionString: conninfo });
  await pool.end();
}

function tasks(pool, hookUrl) {
  return {
    intake: async (p) =>
      tx(pool, async (c) => {
        await c.query("INSERT INTO peer.cases (case_id, region, needs) VALUES ($1, $2, $3)" +
                      " ON CONFLICT DO NOTHING", [p.case_id, p.region, p.needs]);
        await c.query("SELECT graphile_worker.add_job('route', $1::json)", [JSON.stringify(p)]);
      }),
    route: async (p) =>
      tx(pool, async (c) => {
        for (const service of p.needs.filter((n) => n !== "SHELTER")) {
          const r = await c.query(
            "SELECT provider_id FROM peer.providers WHERE region = $1 AND service = $2" +
            " ORDER BY open_referrals, provider_id LIMIT 1 FOR UPDATE", [p.region, service]);
          if (!r.rows.length) continue;
          const ins = await c.query("INSERT INTO peer.referrals VALUES ($1, $2, $3)" +
                                    " ON CONFLICT DO NOTHING", [p.case_id, service, r.rows[0].provider_id]);
          if (ins.rowCount)
            await c.query("UPDATE peer.providers SET open_referrals = open_referrals + 1" +
                          " WHERE provider_id = $1", [r.rows[0].provider_id]);
        }
        if (p.needs.includes("SHELTER"))
          await c.query("SELECT graphile_worker.add_job('allocate', $1::json)", [JSON.stringify(p)]);
      }),
    allocate: async (p) =>
      tx(pool, async (c) => {
        const done = await c.query("SELECT 1 FROM peer.placements WHERE case_id = $1", [p.case_id]);
        if (done.rows.length) return;
        const s = await c.query("SELECT shelter_id, capacity, occupied FROM peer.shelters" +
                                " WHERE region = $1 ORDER BY shelter_id FOR UPDATE", [p.region]);
        const free = s.rows.find((r) => r.occupied < r.capacity);
        if (free) {
          await c.query("UPDATE peer.shelters SET occupied = occupied + 1 WHERE shelter_id = $1",
                        [free.shelter_id]);
          await c.query("INSERT INTO peer.placements (case_id, shelter_id, placed_at)" +
                        " VALUES ($1, $2, now())", [p.case_id, free.shelter_id]);
        } else {
          await c.query("INSERT INTO peer.placements (case_id, waitlisted_at) VALUES ($1, now())",
                        [p.case_id]);
        }
        await c.query("SELECT graphile_worker.add_job('webhook', $1::json)", [JSON.stringify({
          case_id: p.case_id, delivery_id: crypto.randomUUID(),
          type: free ? "shelter.allocated" : "shelter.waitlisted" })]);
      }),
    webhook: async (p) => {
      const res = await fetch(hookUrl, {
        method: "POST",
        headers: { "Content-Type": "application/cloudevents+json", "X-NRM-Delivery": p.delivery_id },
        body: JSON.stringify({ specversion: "1.0", id: p.delivery_id, source: "/peer",
                               type: p.type, subject: p.case_id, data: {} }),
      });
      await res.arrayBuffer();
      if (res.status < 200 || res.status > 299) throw new Error(`HTTP ${res.status}`);
    },
  };
}

async function worker(conninfo, hookUrl, concurrency) {
  const pool = new Pool({ connectionString: conninfo, max: concurrency + 2 });
  const runner = await run({ connectionString: conninfo, concurrency, pollInterval: 1000,
                             noHandleSignals: false, taskList: tasks(pool, hookUrl),
                             logger: undefined });
  await runner.promise;
  await pool.end();
}

async function submit(conninfo, n, clients, region, rate, logFile) {
  const pool = new Pool({ connectionString: conninfo, max: clients });
  const log = logFile ? fs.openSync(logFile, "w") : null;
  const latencies = [];
  let next = 0, ok = 0;
  const interval = rate > 0 ? (1000 * clients) / rate : 0;
  const started = performance.now();
  // paced: one job every 1000 / rate ms, client c starting c of those after the first
  async function client(_, c) {
    let due = started + (interval * c) / clients;
    for (;;) {
      if (next >= n) return;
      next++;
      if (interval > 0) {
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        due += interval;
      }
      const job = { case_id: crypto.randomUUID(), region, needs: ["MEDICAL", "LEGAL_AID", "SHELTER"] };
      const submitted = Date.now() + (performance.now() % 1);
      const t0 = performance.now();
      await pool.query("SELECT graphile_worker.add_job('intake', $1::json)", [JSON.stringify(job)]);
      latencies.push(performance.now() - t0);
      ok++;
      if (log) fs.writeSync(log, `${job.case_id} ${submitted.toFixed(3)}\n`);
    }
  }
  await Promise.all(Array.from({ length: clients }, client));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.floor(((latencies.length - 1) * p) / 100)];
  console.log(JSON.stringify({ reports: n, clients, ok, seconds: +seconds.toFixed(3),
    reports_per_s: +(ok / seconds).toFixed(1), ack_p50_ms: +pct(50).toFixed(2),
    ack_p99_ms: +pct(99).toFixed(2), ack_max_ms: +pct(100).toFixed(2) }));
  if (log) fs.closeSync(log);
  await pool.end();
}

const [mode, conninfo, ...rest] = process.argv.slice(2);
const main = {
  setup: () => setup(conninfo, JSON.parse(rest[0])),
  worker: () => worker(conninfo, rest[0], parseInt(rest[1], 10)),
  submit: () => submit(conninfo, parseInt(rest[0], 10), parseInt(rest[1], 10), rest[2],
                       parseFloat(rest[3] || "0"), rest[4]),
}[mode];
if (!main) {
  console.error("usage: peer.js setup|worker|submit CONNINFO ...");
  process.exit(2);
}
main().catch((e) => { console.error(`peer: ${e.message}`); process.exit(1); });
