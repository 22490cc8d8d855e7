/* The consumers: every stream's events become categorical facts, gathered per batch in memory
 * (JSON rows, one list per table) and written at the end of the batch in one statement per
 * table (jsonb_to_recordset). Outcome changes of one referral or plan within a batch are merged
 * first, so that one UPDATE sees each row once. */
#include "nrm/v1/enums.pb-c.h"
#include "nrm_alloc.h"
#include "nrm_json.h"
#include "nrm_log.h"
#include "stats.h"

#include <czmq.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define S_MS_PER_S 1000
#define S_MS_PER_DAY 86400000LL
#define S_KEY_MAX 96
#define S_UNKNOWN "UNKNOWN"

/* The tables a batch writes, in the order they are written (inserts before the updates that
 * may concern the rows they insert). */
typedef enum {
    S_CASES,
    S_REFERRALS,
    S_REFERRAL_OUTCOMES,
    S_BED_EVENTS,
    S_SHELTERS,
    S_OCCUPANCY,
    S_DELIVERIES,
    S_PLANS,
    S_PLAN_OUTCOMES,
    S_TABLES
} s_table_t;

static const struct {
    const char *name;
    const char *sql;
} s_statements[S_TABLES] = {
    [S_CASES] = {"stats_cases",
                 "INSERT INTO cases SELECT * FROM jsonb_to_recordset($1::jsonb) AS x("
                 " case_id text, opened_ms bigint, month text, year text, region text,"
                 " gender text, age_band text, nationality text, agency_type text, minor text,"
                 " exploitation_types text[], country_of_exploitation text)"
                 " ON CONFLICT (case_id) DO NOTHING"},
    [S_REFERRALS] = {"stats_referrals",
                     "INSERT INTO referrals (referral_id, case_id, service, created_ms, month,"
                     " year, outcome)"
                     " SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(referral_id text,"
                     " case_id text, service text, created_ms bigint, month text, year text,"
                     " outcome text) ON CONFLICT (referral_id) DO NOTHING"},
    [S_REFERRAL_OUTCOMES] = {"stats_referral_outcomes",
                             "UPDATE referrals r SET outcome = x.outcome,"
                             " accepted_ms = coalesce(r.accepted_ms, x.accepted_ms),"
                             " decline_reason = coalesce(x.decline_reason, r.decline_reason)"
                             " FROM jsonb_to_recordset($1::jsonb) AS x(referral_id text,"
                             " outcome text, accepted_ms bigint, decline_reason text)"
                             " WHERE r.referral_id = x.referral_id"},
    [S_BED_EVENTS] = {"stats_bed_events",
                      "INSERT INTO bed_events SELECT * FROM jsonb_to_recordset($1::jsonb) AS x("
                      " stream text, seq bigint, case_id text, kind text, at_ms bigint,"
                      " month text, year text, region text) ON CONFLICT DO NOTHING"},
    [S_SHELTERS] = {"stats_shelters",
                    "INSERT INTO shelters SELECT DISTINCT ON (shelter_id) shelter_id, region"
                    " FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (shelter_id text,"
                    " region text)) WITH ORDINALITY AS x(shelter_id, region, n)"
                    " ORDER BY shelter_id, n DESC"
                    " ON CONFLICT (shelter_id) DO UPDATE SET region = excluded.region"},
    [S_OCCUPANCY] = {"stats_occupancy",
                     "INSERT INTO occupancy SELECT * FROM jsonb_to_recordset($1::jsonb) AS x("
                     " seq bigint, shelter_id text, at_ms bigint, month text, year text,"
                     " capacity int, occupied int) ON CONFLICT DO NOTHING"},
    [S_DELIVERIES] = {"stats_deliveries",
                      "INSERT INTO deliveries SELECT day_ms, month, year, topic, outcome,"
                      " count(*), sum(attempts) FROM jsonb_to_recordset($1::jsonb) AS x("
                      " day_ms bigint, month text, year text, topic text, outcome text,"
                      " attempts bigint) GROUP BY 1, 2, 3, 4, 5"
                      " ON CONFLICT (day_ms, topic, outcome) DO UPDATE SET"
                      " n = deliveries.n + excluded.n,"
                      " attempts = deliveries.attempts + excluded.attempts"},
    [S_PLANS] = {"stats_plans",
                 "INSERT INTO plans (plan_id, case_id, kind, opened_ms, month, year)"
                 " SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(plan_id text, case_id text,"
                 " kind text, opened_ms bigint, month text, year text)"
                 " ON CONFLICT (plan_id) DO NOTHING"},
    [S_PLAN_OUTCOMES] = {"stats_plan_outcomes",
                         "UPDATE plans p SET outcome = x.outcome, closed_ms = x.closed_ms"
                         " FROM jsonb_to_recordset($1::jsonb) AS x(plan_id text, outcome text,"
                         " closed_ms bigint) WHERE p.plan_id = x.plan_id"},
};

struct stats_batch_t {
    json_t *rows[S_TABLES]; /* arrays of row objects */
    zhash_t *merged;        /* "table/id" -> row object of an outcome table (borrowed refs) */
};

stats_batch_t *stats_batch_new(void)
{
    stats_batch_t *self = nrm_xcalloc(1, sizeof *self);
    for (int t = 0; t < S_TABLES; t++)
        self->rows[t] = json_array();
    self->merged = zhash_new();
    return self;
}

void stats_batch_destroy(stats_batch_t **self)
{
    if (!self || !*self)
        return;
    for (int t = 0; t < S_TABLES; t++)
        json_decref((*self)->rows[t]);
    zhash_destroy(&(*self)->merged);
    free(*self);
    *self = NULL;
}

void stats_batch_prepare(nrm_db_t *db)
{
    for (int t = 0; t < S_TABLES; t++)
        nrm_db_statement(db, s_statements[t].name, s_statements[t].sql);
}

void stats_reset(void *ctx)
{
    stats_batch_t *b = ((stats_t *)ctx)->batch;
    for (int t = 0; t < S_TABLES; t++)
        json_array_clear(b->rows[t]);
    zhash_destroy(&b->merged);
    b->merged = zhash_new();
}

const char *stats_age_band(int age_years, bool age_unknown)
{
    static const struct {
        int below;
        const char *band;
    } bands[] = {{9, "0--8"},    {18, "9--17"},  {21, "18--20"}, {24, "21--23"},
                 {27, "24--26"}, {30, "27--29"}, {39, "30--38"}, {48, "39--47"}};
    if (age_unknown || age_years < 0)
        return "unknown";
    for (size_t i = 0; i < sizeof bands / sizeof bands[0]; i++)
        if (age_years < bands[i].below)
            return bands[i].band;
    return "48+";
}

/* Writes the UTC month ("YYYY-MM") and year of ms into row. */
static void s_when(json_t *row, int64_t ms)
{
    time_t t = (time_t)(ms / S_MS_PER_S);
    struct tm tm;
    gmtime_r(&t, &tm);
    char month[16], year[8];
    snprintf(month, sizeof month, "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
    snprintf(year, sizeof year, "%04d", tm.tm_year + 1900);
    json_object_set_new(row, "month", json_string(month));
    json_object_set_new(row, "year", json_string(year));
}

/* The short name of an enum value, "UNKNOWN" for the zero value or an unknown number. */
static const char *s_enum(const ProtobufCEnumDescriptor *desc, int value)
{
    const char *name = value ? nrm_json_enum_short_name(desc, value) : NULL;
    return name ? name : S_UNKNOWN;
}

/* text, or "UNKNOWN" when empty. */
static const char *s_or_unknown(const char *text)
{
    return text && text[0] ? text : S_UNKNOWN;
}

/* Appends row (reference taken) to table. */
static void s_add(stats_batch_t *b, s_table_t table, json_t *row)
{
    json_array_append_new(b->rows[table], row);
}

/* The row of table for id gathered in this batch, created (with "id_field": id) if none. */
static json_t *s_merged(stats_batch_t *b, s_table_t table, const char *id_field, const char *id)
{
    char key[S_KEY_MAX];
    snprintf(key, sizeof key, "%d/%s", (int)table, id);
    json_t *row = zhash_lookup(b->merged, key);
    if (!row) {
        row = json_pack("{s:s}", id_field, id);
        s_add(b, table, row);
        zhash_insert(b->merged, key, row);
    }
    return row;
}

static void s_case_opened(stats_t *self, const Nrm__V1__Event *ev)
{
    const Nrm__V1__CaseOpened *c = ev->case_opened;
    const Nrm__V1__Profile *p = c->profile;
    json_t *types = json_array();
    for (size_t i = 0; i < c->n_exploitation_types; i++)
        json_array_append_new(types, json_string(s_enum(&nrm__v1__exploitation_type__descriptor,
                                                        (int)c->exploitation_types[i])));
    const char *agency_type =
        nrm_config_agency_type(nrm_service_config(self->service), c->reporting_agency_id);
    json_t *row = json_pack(
        "{s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s}", "case_id", ev->case_id, "opened_ms",
        (json_int_t)ev->occurred_at_ms, "region", s_or_unknown(c->region), "gender",
        s_enum(&nrm__v1__gender__descriptor, p ? (int)p->gender : 0), "age_band",
        p ? stats_age_band(p->age_years, p->age_unknown) : "unknown", "nationality",
        s_or_unknown(p ? p->nationality : NULL), "agency_type", s_or_unknown(agency_type), "minor",
        c->is_minor ? "true" : "false", "exploitation_types", types, "country_of_exploitation",
        s_or_unknown(c->country_of_exploitation));
    s_when(row, ev->occurred_at_ms);
    s_add(self->batch, S_CASES, row);
}

/* A new referral row (outcome pending, or unroutable with a synthetic id). */
static void s_referral_row(stats_t *self, const Nrm__V1__Event *ev, const char *referral_id,
                           int service, const char *outcome)
{
    json_t *row =
        json_pack("{s:s, s:s, s:s, s:I, s:s}", "referral_id", referral_id, "case_id", ev->case_id,
                  "service", s_enum(&nrm__v1__service_type__descriptor, service), "created_ms",
                  (json_int_t)ev->occurred_at_ms, "outcome", outcome);
    s_when(row, ev->occurred_at_ms);
    s_add(self->batch, S_REFERRALS, row);
}

/* The outcome of a referral moves (merged with earlier moves of the batch). */
static void s_referral_outcome(stats_t *self, const char *referral_id, const char *outcome)
{
    json_t *row = s_merged(self->batch, S_REFERRAL_OUTCOMES, "referral_id", referral_id);
    json_object_set_new(row, "outcome", json_string(outcome));
}

static void s_referral_event(stats_t *self, const Nrm__V1__Event *ev)
{
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_REFERRAL_CREATED:
        s_referral_row(self, ev, ev->referral_created->referral_id,
                       (int)ev->referral_created->service, "pending");
        break;
    case NRM__V1__EVENT__BODY_REFERRAL_UNROUTABLE: {
        char id[S_KEY_MAX];
        snprintf(id, sizeof id, "unroutable:%lld", (long long)ev->seq);
        s_referral_row(self, ev, id, (int)ev->referral_unroutable->service, "unroutable");
        break;
    }
    case NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED: {
        s_referral_outcome(self, ev->referral_accepted->referral_id, "accepted");
        json_t *row = s_merged(self->batch, S_REFERRAL_OUTCOMES, "referral_id",
                               ev->referral_accepted->referral_id);
        if (!json_object_get(row, "accepted_ms"))
            json_object_set_new(row, "accepted_ms", json_integer(ev->occurred_at_ms));
        break;
    }
    case NRM__V1__EVENT__BODY_REFERRAL_DECLINED: {
        s_referral_outcome(self, ev->referral_declined->referral_id, "declined");
        json_t *row = s_merged(self->batch, S_REFERRAL_OUTCOMES, "referral_id",
                               ev->referral_declined->referral_id);
        json_object_set_new(row, "decline_reason",
                            json_string(s_enum(&nrm__v1__decline_reason__descriptor,
                                               (int)ev->referral_declined->decline_reason)));
        break;
    }
    case NRM__V1__EVENT__BODY_REFERRAL_EXPIRED:
        s_referral_outcome(self, ev->referral_expired->referral_id, "expired");
        break;
    case NRM__V1__EVENT__BODY_REFERRAL_COMPLETED:
        s_referral_outcome(self, ev->referral_completed->referral_id,
                           ev->referral_completed->service_delivered ? "completed"
                                                                     : "not_delivered");
        break;
    case NRM__V1__EVENT__BODY_REFERRAL_REVOKED:
        s_referral_outcome(self, ev->referral_revoked->referral_id, "revoked");
        break;
    default:
        break;
    }
}

static void s_bed_event(stats_t *self, const Nrm__V1__Event *ev, const char *kind,
                        const char *region)
{
    json_t *row = json_pack("{s:s, s:I, s:s, s:s, s:I, s:s}", "stream", ev->stream, "seq",
                            (json_int_t)ev->seq, "case_id", ev->case_id, "kind", kind, "at_ms",
                            (json_int_t)ev->occurred_at_ms, "region", s_or_unknown(region));
    s_when(row, ev->occurred_at_ms);
    s_add(self->batch, S_BED_EVENTS, row);
}

static void s_shelter_event(stats_t *self, const Nrm__V1__Event *ev)
{
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_SHELTER_REQUESTED:
        s_bed_event(self, ev, "requested", ev->shelter_requested->region);
        break;
    case NRM__V1__EVENT__BODY_SHELTER_ALLOCATED:
        s_bed_event(self, ev, "allocated", ev->shelter_allocated->region);
        s_add(self->batch, S_SHELTERS,
              json_pack("{s:s, s:s}", "shelter_id", ev->shelter_allocated->shelter_id, "region",
                        s_or_unknown(ev->shelter_allocated->region)));
        break;
    case NRM__V1__EVENT__BODY_SHELTER_WAITLISTED:
        s_bed_event(self, ev, "waitlisted", "");
        break;
    case NRM__V1__EVENT__BODY_SHELTER_CAPACITY_CHANGED: {
        const Nrm__V1__ShelterCapacityChanged *c = ev->shelter_capacity_changed;
        json_t *row =
            json_pack("{s:I, s:s, s:I, s:i, s:i}", "seq", (json_int_t)ev->seq, "shelter_id",
                      c->shelter_id, "at_ms", (json_int_t)ev->occurred_at_ms, "capacity",
                      c->capacity, "occupied", c->occupied);
        s_when(row, ev->occurred_at_ms);
        s_add(self->batch, S_OCCUPANCY, row);
        break;
    }
    default:
        break;
    }
}

static void s_delivery(stats_t *self, const Nrm__V1__Event *ev, const char *topic, int attempts,
                       const char *outcome)
{
    json_t *row = json_pack("{s:I, s:s, s:s, s:i}", "day_ms",
                            (json_int_t)(ev->occurred_at_ms / S_MS_PER_DAY * S_MS_PER_DAY), "topic",
                            s_or_unknown(topic), "outcome", outcome, "attempts", attempts);
    s_when(row, ev->occurred_at_ms);
    s_add(self->batch, S_DELIVERIES, row);
}

static void s_plan_event(stats_t *self, const Nrm__V1__Event *ev)
{
    if (ev->body_case == NRM__V1__EVENT__BODY_PLAN_OPENED) {
        json_t *row = json_pack("{s:s, s:s, s:s, s:I}", "plan_id", ev->plan_opened->plan_id,
                                "case_id", ev->case_id, "kind",
                                s_enum(&nrm__v1__plan_kind__descriptor, (int)ev->plan_opened->kind),
                                "opened_ms", (json_int_t)ev->occurred_at_ms);
        s_when(row, ev->occurred_at_ms);
        s_add(self->batch, S_PLANS, row);
    } else if (ev->body_case == NRM__V1__EVENT__BODY_PLAN_CLOSED) {
        json_t *row = s_merged(self->batch, S_PLAN_OUTCOMES, "plan_id", ev->plan_closed->plan_id);
        json_object_set_new(
            row, "outcome",
            json_string(s_enum(&nrm__v1__plan_outcome__descriptor, (int)ev->plan_closed->outcome)));
        json_object_set_new(row, "closed_ms", json_integer(ev->occurred_at_ms));
    }
}

nrm_status_t stats_apply(void *ctx, nrm_tx_t *tx, const Nrm__V1__Event *ev)
{
    stats_t *self = ctx;
    switch (ev->body_case) {
    case NRM__V1__EVENT__BODY_CASE_OPENED:
        s_case_opened(self, ev);
        break;
    case NRM__V1__EVENT__BODY_REFERRAL_CREATED:
    case NRM__V1__EVENT__BODY_REFERRAL_ACCEPTED:
    case NRM__V1__EVENT__BODY_REFERRAL_DECLINED:
    case NRM__V1__EVENT__BODY_REFERRAL_EXPIRED:
    case NRM__V1__EVENT__BODY_REFERRAL_COMPLETED:
    case NRM__V1__EVENT__BODY_REFERRAL_REVOKED:
    case NRM__V1__EVENT__BODY_REFERRAL_UNROUTABLE:
        s_referral_event(self, ev);
        break;
    case NRM__V1__EVENT__BODY_SHELTER_REQUESTED:
    case NRM__V1__EVENT__BODY_SHELTER_ALLOCATED:
    case NRM__V1__EVENT__BODY_SHELTER_WAITLISTED:
    case NRM__V1__EVENT__BODY_SHELTER_CAPACITY_CHANGED:
        s_shelter_event(self, ev);
        break;
    case NRM__V1__EVENT__BODY_NOTIFICATION_DELIVERED:
        s_delivery(self, ev, ev->notification_delivered->topic,
                   ev->notification_delivered->attempts, "delivered");
        break;
    case NRM__V1__EVENT__BODY_NOTIFICATION_FAILED:
        s_delivery(self, ev, ev->notification_failed->topic, ev->notification_failed->attempts,
                   "failed");
        break;
    case NRM__V1__EVENT__BODY_PLAN_OPENED:
    case NRM__V1__EVENT__BODY_PLAN_CLOSED:
        s_plan_event(self, ev);
        break;
    default:
        return NRM_OK;
    }
    nrm_db_count_on_commit(tx->db, self->events_applied, 1);
    return NRM_OK;
}

nrm_status_t stats_flush(void *ctx, nrm_tx_t *tx)
{
    stats_t *self = ctx;
    stats_batch_t *b = self->batch;
    nrm_status_t st = NRM_OK;
    for (int t = 0; st == NRM_OK && t < S_TABLES; t++) {
        if (json_array_size(b->rows[t]) == 0)
            continue;
        char *text = json_dumps(b->rows[t], JSON_COMPACT);
        if (!text)
            nrm_oom("stats batch");
        nrm_params_t p = {0};
        nrm_params_text(&p, text);
        st = nrm_db_exec_later(tx->db, s_statements[t].name, &p, tx->err);
        free(text);
    }
    stats_reset(self);
    return st;
}
