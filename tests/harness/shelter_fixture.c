#include "shelter_fixture.h"
#include "nrm_client.h"
#include "nrm_time.h"

#include <czmq.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PATH 512
#define S_POLL_MS 100
#define S_MAX_LANGUAGES SHELTER_FIXTURE_LANGUAGES
#define S_LANGUAGE_CHARS 3
#define S_SHELTER_FILE "shelter.json"
#define S_IN_FLIGHT 256
#define S_UUID 37
#define S_SUBMIT_TIMEOUT_MS 120000

/* The shelter file of a test: settings, operators and shelters. New reference. */
static json_t *s_network(const shelter_fixture_t *list, size_t n, int hold_s, int check_ms)
{
    json_t *agencies = json_array(), *shelters = json_array(), *seen = json_object();
    for (size_t i = 0; i < n; i++) {
        const shelter_fixture_t *f = &list[i];
        if (!json_object_get(seen, f->operator_id)) {
            json_object_set_new(seen, f->operator_id, json_true());
            json_array_append_new(agencies,
                                  json_pack("{s:s, s:s, s:s, s:s}", "id", f->operator_id, "name",
                                            "Test shelter operator (demo)", "type",
                                            "SHELTER_OPERATOR", "region", f->region));
        }
        json_t *langs = json_array();
        char buf[S_MAX_LANGUAGES * S_LANGUAGE_CHARS + 1];
        snprintf(buf, sizeof buf, "%s", f->languages ? f->languages : "");
        char *save = NULL;
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
            json_array_append_new(langs, json_string(t));
        json_array_append_new(
            shelters, json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:b, s:b, s:o, s:b}",
                                "shelterId", f->id, "name", "Test shelter (demo)",
                                "operatorAgencyId", f->operator_id, "region", f->region, "capacity",
                                f->capacity, "population", f->population, "minAge", f->min_age,
                                "maxAge", f->max_age, "acceptsChildren", f->accepts_children,
                                "accessible", f->accessible, "languages", langs, "active", 1));
    }
    json_decref(seen);
    return json_pack("{s:{s:s, s:i, s:i}, s:o, s:o}", "shelter", "_comment",
                     "Test data (demonstration only)", "hold_s", hold_s, "expiry_check_ms",
                     check_ms, "agencies", agencies, "shelters", shelters);
}

const shelter_fixture_t shelter_fixture_one_bed = {
    "w04-women",
    "op-wait-test",
    "MA-04",
    1,
    NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_WOMEN,
    18,
    120,
    false,
    false,
    "ar,fr,en"};

void shelter_fixture_use(harness_t *h, const shelter_fixture_t *list, size_t n, int hold_s,
                         int check_ms)
{
    const char *source = getenv("NRM_SOURCE_DIR");
    char path[S_PATH];
    snprintf(path, sizeof path, "%s/deploy/demo/config.json", source ? source : ".");
    json_t *demo = json_load_file(path, 0, NULL);
    char mine[S_PATH];
    snprintf(mine, sizeof mine, "%s/%s", harness_dir(h), S_SHELTER_FILE);
    json_t *network = s_network(list, n, hold_s, check_ms);
    if (!demo || json_dump_file(network, mine, JSON_INDENT(1)) != 0) {
        fprintf(stderr, "shelter_fixture: cannot prepare %s\n", mine);
        abort();
    }
    json_decref(network);
    /* the same include list as the demonstration, with the test's shelters instead */
    json_t *includes = json_array(), *inc;
    size_t i;
    json_array_foreach(json_object_get(demo, "include"), i, inc)
    {
        const char *name = json_string_value(inc);
        char abs[S_PATH];
        snprintf(abs, sizeof abs, "%s/deploy/demo/%s", source, name);
        json_array_append_new(includes,
                              json_string(strcmp(name, S_SHELTER_FILE) == 0 ? mine : abs));
    }
    json_decref(demo);
    harness_config_set(h, "include", includes);
}

int shelter_fixture_start(harness_t *h)
{
    if (harness_start(h, "intake", 0) != 0 || harness_start(h, "routing", 0) != 0)
        return -1;
    return harness_start(h, "shelter", 0);
}

void shelter_fixture_upsert(shelter_fixture_upsert_t *s, const shelter_fixture_t *f)
{
    Nrm__V1__UpsertShelter *u = &s->upsert;
    nrm__v1__upsert_shelter__init(u);
    u->shelter_id = (char *)f->id;
    u->name = "Test shelter (demo)";
    u->operator_agency_id = (char *)f->operator_id;
    u->region = (char *)f->region;
    u->capacity = f->capacity;
    u->population = f->population;
    u->min_age = f->min_age;
    u->max_age = f->max_age;
    u->accepts_children = f->accepts_children;
    u->accessible = f->accessible;
    u->active = 1;
    u->languages = s->languages;
    for (const char *p = f->languages; p && *p && u->n_languages < SHELTER_FIXTURE_LANGUAGES;) {
        snprintf(s->codes[u->n_languages], sizeof s->codes[0], "%.2s", p);
        s->languages[u->n_languages] = s->codes[u->n_languages];
        u->n_languages++;
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }
    nrm__v1__request__init(&s->request);
    scenario_request(&s->request, NRM__V1__REQUEST__BODY_UPSERT_SHELTER, u);
}

void shelter_fixture_person(scenario_report_t *s, const char *region, const char *full_name,
                            const char *language)
{
    scenario_adult_woman(s, region, full_name, "");
    s->person.date_of_birth = "";
    if (language) {
        s->languages[0] = (char *)language;
        s->profile.n_languages = 1;
    }
}

int shelter_fixture_allocation_of(harness_t *h, const char *case_id, char out[SHELTER_FIXTURE_ID])
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT allocation_id FROM shelter.allocations WHERE case_id = '%s'"
             " AND state <> 'released'",
             case_id);
    PGresult *res = harness_sql(h, sql);
    int rc = PQntuples(res) == 1 ? 0 : -1;
    if (rc == 0)
        snprintf(out, SHELTER_FIXTURE_ID, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

int shelter_fixture_submit(harness_t *h, scenario_report_t *s, const char *agency,
                           char case_id[SHELTER_FIXTURE_ID])
{
    Nrm__V1__Reply *reply = harness_call(h, "intake", agency, &s->request);
    int rc = reply && reply->status == NRM__V1__STATUS__STATUS_OK && reply->case_ref ? 0 : -1;
    if (rc == 0)
        snprintf(case_id, SHELTER_FIXTURE_ID, "%s", reply->case_ref->case_id);
    else
        fprintf(stderr, "shelter_fixture: report refused: %s %s\n",
                reply ? reply->error_field : "timeout", reply ? reply->error_message : "");
    if (reply)
        nrm__v1__reply__free_unpacked(reply, NULL);
    return rc;
}

/* Takes the replies waiting on client, recording case ids by request id. */
static size_t s_take_replies(nrm_client_t *client, char (*request_ids)[S_UUID], size_t sent,
                             char (*case_ids)[SHELTER_FIXTURE_ID], size_t *ok)
{
    size_t got = 0;
    Nrm__V1__Reply *reply;
    while ((reply = nrm_client_receive(client)) != NULL) {
        for (size_t i = 0; i < sent; i++) {
            if (strcmp(request_ids[i], reply->request_id) != 0)
                continue;
            got++;
            if (reply->status == NRM__V1__STATUS__STATUS_OK && reply->case_ref) {
                snprintf(case_ids[i], SHELTER_FIXTURE_ID, "%s", reply->case_ref->case_id);
                (*ok)++;
            }
            break;
        }
        nrm__v1__reply__free_unpacked(reply, NULL);
    }
    return got;
}

size_t shelter_fixture_submit_many(harness_t *h, scenario_report_t *reports, size_t n,
                                   const char *agency, char (*case_ids)[SHELTER_FIXTURE_ID])
{
    nrm_client_t *client = harness_client_new(h, "intake", 0, agency);
    char(*request_ids)[S_UUID] = calloc(n ? n : 1, S_UUID);
    zpoller_t *poller = zpoller_new(nrm_client_socket(client), NULL);
    size_t sent = 0, answered = 0, ok = 0;
    int64_t deadline = nrm_mono_ms() + S_SUBMIT_TIMEOUT_MS;
    for (size_t i = 0; i < n; i++)
        case_ids[i][0] = '\0';
    while (answered < n && nrm_mono_ms() < deadline) {
        while (sent < n && sent - answered < S_IN_FLIGHT) {
            reports[sent].request.request_id = "";
            if (nrm_client_send(client, &reports[sent].request, request_ids[sent]) != 0)
                break;
            sent++;
        }
        zpoller_wait(poller, S_POLL_MS);
        answered += s_take_replies(client, request_ids, sent, case_ids, &ok);
    }
    zpoller_destroy(&poller);
    free(request_ids);
    nrm_client_destroy(&client);
    return ok;
}

void shelter_fixture_settle(harness_t *h)
{
    if (harness_wait_sql(h, "SELECT count(*) FROM shelter.outbox WHERE seq IS NULL", 0,
                         SHELTER_FIXTURE_WAIT_MS) != 0)
        fprintf(stderr, "shelter_fixture: events still unsequenced\n");
}

size_t shelter_fixture_events(harness_t *h, const char *topic, Nrm__V1__Event ***events)
{
    shelter_fixture_settle(h);
    Nrm__V1__Event **all = NULL;
    size_t n = harness_fetch_all(h, "shelter", &all), kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(all[i]->topic, topic) == 0)
            all[kept++] = all[i];
        else
            nrm__v1__event__free_unpacked(all[i], NULL);
    }
    *events = all;
    return kept;
}

void shelter_fixture_events_free(Nrm__V1__Event **events, size_t n)
{
    for (size_t i = 0; i < n; i++)
        nrm__v1__event__free_unpacked(events[i], NULL);
    free(events);
}

Nrm__V1__Event *shelter_fixture_outcome(harness_t *h, const char *case_id,
                                        Nrm__V1__Event__BodyCase want, int timeout_ms)
{
    int64_t deadline = nrm_mono_ms() + timeout_ms;
    for (;;) {
        Nrm__V1__Event **all = NULL, *found = NULL;
        size_t n = harness_fetch_all(h, "shelter", &all);
        for (size_t i = 0; i < n; i++) {
            bool outcome = all[i]->body_case == NRM__V1__EVENT__BODY_SHELTER_ALLOCATED ||
                           all[i]->body_case == NRM__V1__EVENT__BODY_SHELTER_WAITLISTED;
            if (outcome && strcmp(all[i]->case_id, case_id) == 0) {
                if (found)
                    nrm__v1__event__free_unpacked(found, NULL);
                found = all[i];
            } else {
                nrm__v1__event__free_unpacked(all[i], NULL);
            }
        }
        free(all);
        bool wanted = found && (want == NRM__V1__EVENT__BODY__NOT_SET || found->body_case == want);
        if (wanted || nrm_mono_ms() >= deadline)
            return found;
        if (found)
            nrm__v1__event__free_unpacked(found, NULL);
        zclock_sleep(S_POLL_MS);
    }
}

void shelter_fixture_sqlstate(const char *name, const char *sql, char state[6])
{
    char conninfo[S_PATH];
    snprintf(conninfo, sizeof conninfo, "host=%s port=%s dbname=t_%s user=postgres",
             getenv("NRM_TEST_PGHOST"), getenv("NRM_TEST_PGPORT"), name);
    PGconn *conn = PQconnectdb(conninfo);
    PGresult *res = PQexec(conn, sql);
    const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    snprintf(state, 6, "%s", code ? code : "");
    PQclear(res);
    PQfinish(conn);
}
