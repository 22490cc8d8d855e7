/* ListAllocations: the allocations of a case or of a shelter (holds, arrivals, releases) and
 * the case's place on the waitlist, filtered by state and paged. The coordinator sees all;
 * a shelter operator its shelters' allocations; a case manager its cases' allocations and
 * waitlist places (shelter learns case managers from intake's stream: shelter_cases.c). With a
 * case_id or a shelter_id, a sender with no relation to it is refused (nrm_authz). Pages follow
 * creation order, which never changes once a row is written. */
#include "nrm_authz.h"
#include "nrm_page.h"
#include "nrm_validate.h"
#include "shelter.h"

#include <stdio.h>
#include <string.h>

#define S_STATES_MAX 4
#define S_FIELD_MAX 48
#define S_LIST_TEXT 64

static const char *const s_states[] = {"held", "occupied", "released", "waiting"};

/* the sender ($1) manages the case of the row of alias t */
#define S_MANAGES(t)                                                                               \
    "EXISTS (SELECT 1 FROM case_managers m WHERE m.case_id = " t ".case_id"                        \
    " AND m.agency_id = $1::text)"

/* $1 the sender ("" for the coordinator: all), $2 case, $3 shelter, $4 states joined by commas, $5
 * first page or after ($6 created_us, $7 id), $8 the rows wanted */
static const char s_sql_list[] =
    "WITH queue AS (SELECT entry_id, row_number() OVER (ORDER BY urgency DESC, requested_at_ms,"
    "  entry_id) AS position FROM waitlist WHERE state = 'waiting'),"
    " listed AS ("
    " SELECT a.allocation_id AS id, a.case_id, a.shelter_id, s.operator_agency_id, a.state,"
    "  a.beds, a.hold_until_ms, 0::bigint AS position,"
    "  (extract(epoch FROM a.created_at) * 1000000)::bigint AS created_us,"
    "  (extract(epoch FROM GREATEST(a.created_at, a.confirmed_at, a.released_at)) * 1000)::bigint"
    "   AS updated_ms,"
    "  CASE WHEN a.state = 'released' THEN COALESCE(a.release_reason, '') ELSE a.reason END"
    "   AS reason"
    " FROM allocations a JOIN shelters s ON s.shelter_id = a.shelter_id"
    " WHERE ($1::text = '' OR s.operator_agency_id = $1::text OR " S_MANAGES(
        "a") ")"
             "  AND ($2::text = '' OR a.case_id = $2::text) AND ($3::text = '' OR a.shelter_id = "
             "$3::text)"
             " UNION ALL"
             " SELECT 'waitlist:' || w.entry_id, w.case_id, '', '', 'waiting', w.beds, 0, "
             "q.position,"
             "  (extract(epoch FROM w.created_at) * 1000000)::bigint,"
             "  (extract(epoch FROM w.updated_at) * 1000)::bigint, w.reason"
             " FROM waitlist w JOIN queue q ON q.entry_id = w.entry_id"
             " WHERE $3::text = '' AND ($1::text = '' OR " S_MANAGES(
                 "w") ")"
                      "  AND ($2::text = '' OR w.case_id = $2::text))"
                      " SELECT id, case_id, shelter_id, operator_agency_id, state, beds, "
                      "hold_until_ms, position,"
                      "  created_us, updated_ms, reason FROM listed"
                      " WHERE ($4::text = '' OR state = ANY (string_to_array($4::text, ',')))"
                      "  AND ($5::boolean OR (created_us, id) > ($6::bigint, $7::text))"
                      " ORDER BY created_us, id LIMIT $8";
static const char s_sql_case_relation[] =
    "SELECT EXISTS (SELECT 1 FROM allocations a JOIN shelters s ON s.shelter_id = a.shelter_id"
    " WHERE a.case_id = $1 AND s.operator_agency_id = $2),"
    " EXISTS (SELECT 1 FROM case_managers WHERE case_id = $1 AND agency_id = $2)";
static const char s_sql_shelter_relation[] =
    "SELECT EXISTS (SELECT 1 FROM shelters WHERE shelter_id = $1 AND operator_agency_id = $2)";

void shelter_list_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "shelter_list_allocations", s_sql_list);
    nrm_db_statement(db, "shelter_case_relation", s_sql_case_relation);
    nrm_db_statement(db, "shelter_shelter_relation", s_sql_shelter_relation);
}

/* Checks the request and joins the states for SQL ("" when none). */
static nrm_status_t s_check(const Nrm__V1__ListAllocations *l, char *states, nrm_error_t *err)
{
    if (nrm_check_text(err, "list_allocations.case_id", l->case_id, SHELTER_ID_MAX, false) !=
            NRM_OK ||
        nrm_check_text(err, "list_allocations.shelter_id", l->shelter_id, SHELTER_ID_MAX, false) !=
            NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (l->n_state > S_STATES_MAX)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "list_allocations.state", "at most %d states",
                        S_STATES_MAX);
    char field[S_FIELD_MAX];
    size_t used = 0;
    states[0] = '\0';
    for (size_t i = 0; i < l->n_state; i++) {
        bool known = false;
        for (size_t k = 0; k < sizeof s_states / sizeof s_states[0]; k++)
            known |= strcmp(l->state[i], s_states[k]) == 0;
        if (!known)
            return nrm_fail(err, NRM_INVALID_ARGUMENT,
                            nrm_path_index(field, sizeof field, "list_allocations.state", i),
                            "state is held, occupied, released or waiting");
        used +=
            (size_t)snprintf(states + used, S_LIST_TEXT - used, "%s%s", i ? "," : "", l->state[i]);
    }
    return NRM_OK;
}

/* The sender's relations to the object statement asks about (id): column 0 true makes it an
 * operator of it, column 1 (when there is one) its case manager. */
static nrm_status_t s_relations(nrm_call_t *call, const char *statement, const char *id,
                                unsigned *relations)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, id);
    nrm_params_text(&p, call->agency_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(call->tx.db, statement, &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    *relations = nrm_db_int(res, 0, 0) ? NRM_ROLE_SHELTER_OPERATOR : 0;
    if (PQnfields(res) > 1 && nrm_db_int(res, 0, 1))
        *relations |= NRM_ROLE_CASE_MANAGER;
    PQclear(res);
    return NRM_OK;
}

/* Decides who sees what (nrm_authz): the shelter's operator for a shelter_id; an operator with
 * an allocation of the case in its shelters, or the case's manager, for a case_id; without
 * either any agency, each only the rows of the shelters it operates and of the cases it
 * manages (both relations the matrix allows). */
static nrm_status_t s_authorize(nrm_call_t *call, const Nrm__V1__ListAllocations *l)
{
    unsigned relations = NRM_ROLE_SHELTER_OPERATOR | NRM_ROLE_CASE_MANAGER;
    const char *field = NULL;
    nrm_status_t st = NRM_OK;
    if (l->shelter_id[0]) {
        field = "list_allocations.shelter_id";
        st = s_relations(call, "shelter_shelter_relation", l->shelter_id, &relations);
    } else if (l->case_id[0]) {
        field = "list_allocations.case_id";
        st = s_relations(call, "shelter_case_relation", l->case_id, &relations);
    }
    if (st != NRM_OK)
        return st;
    return nrm_authz_check_at(call, relations, field);
}

/* One row of the list as an AllocationRow (strings owned by the call). */
static Nrm__V1__AllocationRow *s_row(nrm_call_t *call, const PGresult *res, int i)
{
    Nrm__V1__AllocationRow *a = nrm_call_alloc(call, sizeof *a);
    nrm__v1__allocation_row__init(a);
    a->allocation_id = nrm_call_strdup(call, nrm_db_text(res, i, 0));
    a->case_id = nrm_call_strdup(call, nrm_db_text(res, i, 1));
    a->shelter_id = nrm_call_strdup(call, nrm_db_text(res, i, 2));
    a->operator_agency_id = nrm_call_strdup(call, nrm_db_text(res, i, 3));
    a->state = nrm_call_strdup(call, nrm_db_text(res, i, 4));
    a->beds = (int32_t)nrm_db_int(res, i, 5);
    a->hold_until_ms = nrm_db_int(res, i, 6);
    a->waitlist_position = (int32_t)nrm_db_int(res, i, 7);
    a->created_ms = nrm_db_int(res, i, 8) / 1000;
    a->updated_ms = nrm_db_int(res, i, 9);
    a->reason = nrm_call_strdup(call, nrm_db_text(res, i, 10));
    return a;
}

nrm_status_t shelter_list_allocations(void *ctx, nrm_call_t *call)
{
    (void)ctx;
    const Nrm__V1__ListAllocations *l = call->request->list_allocations;
    char states[S_LIST_TEXT];
    nrm_page_t page;
    if (s_check(l, states, call->tx.err) != NRM_OK ||
        nrm_page_from_request(call->tx.err, "list_allocations", l->page_token, l->page_size,
                              &page) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    nrm_status_t st = s_authorize(call, l);
    if (st != NRM_OK)
        return st;
    call->subject_id = l->shelter_id[0] ? l->shelter_id : l->case_id;
    bool coordinator = nrm_authz_sender_is(call, NRM_ROLE_COORDINATOR);
    nrm_params_t p = {0};
    nrm_params_text(&p, coordinator ? "" : call->agency_id);
    nrm_params_text(&p, l->case_id);
    nrm_params_text(&p, l->shelter_id);
    nrm_params_text(&p, states);
    nrm_params_bool(&p, page.first);
    nrm_params_int(&p, page.after_key);
    nrm_params_text(&p, page.after_id);
    nrm_params_int(&p, page.size + 1);
    PGresult *res = NULL;
    st = nrm_db_exec(call->tx.db, "shelter_list_allocations", &p, &res, call->tx.err);
    if (st != NRM_OK)
        return st;
    Nrm__V1__AllocationList *list = nrm_call_alloc(call, sizeof *list);
    nrm__v1__allocation_list__init(list);
    int rows = PQntuples(res);
    int shown = rows > page.size ? page.size : rows;
    list->allocations =
        nrm_call_alloc(call, (size_t)(shown ? shown : 1) * sizeof *list->allocations);
    for (int i = 0; i < shown; i++)
        list->allocations[list->n_allocations++] = s_row(call, res, i);
    list->next_page_token = "";
    if (rows > page.size) {
        char token[NRM_PAGE_TOKEN_MAX];
        nrm_page_token(token, nrm_db_int(res, shown - 1, 8), nrm_db_text(res, shown - 1, 0));
        list->next_page_token = nrm_call_strdup(call, token);
    }
    PQclear(res);
    call->reply->result_case = NRM__V1__REPLY__RESULT_ALLOCATION_LIST;
    call->reply->allocation_list = list;
    return NRM_OK;
}
