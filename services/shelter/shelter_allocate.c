/* Allocation: who may go where (eligibility), which shelter among those (choice), and holding
 * the beds with an update the database refuses when it would overbook. */
#include "nrm_alloc.h"
#include "nrm_crypto.h"
#include "nrm_log.h"
#include "nrm_validate.h"
#include "shelter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_CHILDREN (SHELTER_MAX_BEDS - 1)

/* Holds beds only while they are free: the row lock and the re-checked WHERE clause make two
 * concurrent holds on the last bed end with one success and one empty result. */
static const char s_sql_hold[] =
    "UPDATE shelters SET held = held + $2, updated_at = now()"
    " WHERE shelter_id = $1 AND active AND occupied + held + $2 <= capacity"
    " RETURNING occupied, held";
static const char s_sql_insert[] =
    "INSERT INTO allocations (allocation_id, case_id, shelter_id, beds, state, hold_until_ms,"
    " reason, request_event_id) VALUES ($1, $2, $3, $4, 'held', $5, $6, $7::uuid)";
static const char s_sql_case_state[] =
    "SELECT EXISTS (SELECT 1 FROM closed_cases WHERE case_id = $1),"
    " EXISTS (SELECT 1 FROM allocations WHERE case_id = $1 AND state <> 'released'),"
    " EXISTS (SELECT 1 FROM waitlist WHERE case_id = $1 AND state = 'waiting')";

void shelter_allocate_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "allocate_hold", s_sql_hold);
    nrm_db_statement(db, "allocate_insert", s_sql_insert);
    nrm_db_statement(db, "allocate_case_state", s_sql_case_state);
}

/* True when need's age is inside the shelter's range (an unknown age: when the range reaches
 * below the adult age, since such a person is presumed a minor). */
static bool s_age_fits(const shelter_row_t *s, const shelter_need_t *need)
{
    if (!need->age_known)
        return s->min_age < SHELTER_ADULT_AGE;
    return need->age_years >= s->min_age && need->age_years <= s->max_age;
}

/* True when the shelter's population takes this person: a minor only a minors' shelter; a woman
 * a women's or mixed shelter, or a family shelter when her children are with her; a man a men's
 * or mixed shelter; anyone else (gender other or unknown) a mixed shelter. */
static bool s_population_fits(const shelter_row_t *s, const shelter_need_t *need)
{
    if (need->is_minor)
        return s->population == NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_MINORS;
    bool woman = need->gender == NRM__V1__GENDER__GENDER_FEMALE;
    bool man = need->gender == NRM__V1__GENDER__GENDER_MALE;
    switch (s->population) {
    case NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_WOMEN:
        return woman;
    case NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_FAMILIES:
        return woman && need->children > 0;
    case NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_MEN:
        return man;
    case NRM__V1__SHELTER_POPULATION__SHELTER_POPULATION_MIXED:
        return true;
    default:
        return false;
    }
}

const char *shelter_unfit_rule(const shelter_row_t *s, const shelter_need_t *need)
{
    if (!s_population_fits(s, need))
        return "population";
    if (!s_age_fits(s, need))
        return need->age_known && need->age_years > s->max_age ? "max_age" : "min_age";
    if (need->children > 0 && !s->accepts_children)
        return "accepts_children";
    return need->disability && !s->accessible ? "accessible" : NULL;
}

bool shelter_eligible(const shelter_row_t *s, const shelter_need_t *need)
{
    return shelter_unfit_rule(s, need) == NULL;
}

/* True when the shelter speaks one of the person's languages. */
static bool s_speaks(const shelter_row_t *s, const shelter_need_t *need)
{
    for (size_t i = 0; i < need->n_languages; i++)
        for (size_t j = 0; j < s->n_languages; j++)
            if (strcmp(need->languages[i], s->languages[j]) == 0)
                return true;
    return false;
}

/* A shelter with room for the request and the keys it is ranked by (lower is better). */
typedef struct {
    shelter_row_t *row;
    int region_rank;   /* 0: the preferred side of the region rule */
    int language_rank; /* 0: speaks a language of the person */
} s_candidate_t;

/* Orders candidates: region rule, language, lowest occupancy ratio, then shelter id. */
static int s_compare(const void *pa, const void *pb)
{
    const s_candidate_t *a = pa, *b = pb;
    if (a->region_rank != b->region_rank)
        return a->region_rank - b->region_rank;
    if (a->language_rank != b->language_rank)
        return a->language_rank - b->language_rank;
    /* used_a / cap_a against used_b / cap_b, without division (capacities are > 0 here) */
    int64_t left = (int64_t)(a->row->occupied + a->row->held) * b->row->capacity;
    int64_t right = (int64_t)(b->row->occupied + b->row->held) * a->row->capacity;
    if (left != right)
        return left < right ? -1 : 1;
    return strcmp(a->row->id, b->row->id);
}

/* Writes why this candidate was chosen: the region rule, the language, the occupancy before
 * the allocation and how many shelters could have taken the person. */
static void s_reason(const s_candidate_t *c, const shelter_need_t *need, size_t candidates,
                     bool from_waitlist, char *buf, size_t size)
{
    bool high_risk = need->safety_risk == NRM__V1__SAFETY_RISK__SAFETY_RISK_HIGH;
    const char *region =
        high_risk
            ? (c->region_rank == 0 ? "high_risk_outside_region" : "high_risk_no_bed_outside_region")
            : (c->region_rank == 0 ? "same_region" : "no_bed_in_same_region");
    snprintf(buf, size, "%s%s; %s; occupancy %d/%d; %zu eligible with free beds",
             from_waitlist ? "from_waitlist; " : "", region,
             c->language_rank == 0 ? "language_match" : "no_language_match",
             c->row->occupied + c->row->held, c->row->capacity, candidates);
}

/* Inserts the allocation and emits shelter.allocated. */
static nrm_status_t s_record(shelter_t *self, nrm_tx_t *tx, const shelter_need_t *need,
                             const shelter_row_t *row, const char *reason)
{
    char allocation_id[SHELTER_UUID_SIZE];
    nrm_uuid_v4(allocation_id);
    int64_t hold_until_ms = tx->now_ms + self->hold_ms;
    nrm_params_t p = {0};
    nrm_params_text(&p, allocation_id);
    nrm_params_text(&p, need->case_id);
    nrm_params_text(&p, row->id);
    nrm_params_int(&p, need->beds);
    nrm_params_int(&p, hold_until_ms);
    nrm_params_text(&p, reason);
    nrm_params_text(&p, need->request_event_id);
    nrm_status_t st = nrm_db_exec(tx->db, "allocate_insert", &p, NULL, tx->err);
    if (st != NRM_OK)
        return st;
    Nrm__V1__ShelterAllocated body = NRM__V1__SHELTER_ALLOCATED__INIT;
    body.allocation_id = allocation_id;
    body.shelter_id = (char *)row->id;
    body.operator_agency_id = (char *)row->operator_id;
    body.region = (char *)row->region;
    body.beds = need->beds;
    body.hold_until_ms = hold_until_ms;
    body.reason = (char *)reason;
    nrm_log_debug("bed allocated", "{s:s, s:s, s:i}", "case_id", need->case_id, "shelter_id",
                  row->id, "beds", need->beds);
    return nrm_tx_emit_body(tx, need->case_id, NRM__V1__EVENT__BODY_SHELTER_ALLOCATED, &body);
}

/* Holds the beds in the candidate's shelter. *held tells whether the database agreed; the
 * local row is refreshed either way (full when another transaction took the beds first). */
static nrm_status_t s_hold(nrm_tx_t *tx, s_candidate_t *c, int beds, bool *held)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, c->row->id);
    nrm_params_int(&p, beds);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "allocate_hold", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    *held = PQntuples(res) == 1;
    if (*held) {
        c->row->occupied = (int)nrm_db_int(res, 0, 0);
        c->row->held = (int)nrm_db_int(res, 0, 1);
    } else {
        c->row->held = c->row->capacity - c->row->occupied;
    }
    PQclear(res);
    return NRM_OK;
}

/* The shelters of rows with room for need, best first (malloc'd, caller frees; *nc of them);
 * *eligible_count counts those that could take the person at all. */
static s_candidate_t *s_candidates(const shelter_need_t *need, shelter_row_t *rows, size_t n,
                                   size_t *nc, size_t *eligible_count)
{
    *nc = 0;
    *eligible_count = 0;
    s_candidate_t *c = nrm_xcalloc(n ? n : 1, sizeof *c);
    bool high_risk = need->safety_risk == NRM__V1__SAFETY_RISK__SAFETY_RISK_HIGH;
    for (size_t i = 0; i < n; i++) {
        shelter_row_t *r = &rows[i];
        if (!r->active || !shelter_eligible(r, need))
            continue;
        (*eligible_count)++;
        if (r->capacity - r->occupied - r->held < need->beds)
            continue;
        bool same_region = strcmp(r->region, need->region) == 0;
        /* high risk: away from the region of identification; otherwise: close to it */
        c[(*nc)++] = (s_candidate_t){r, same_region == high_risk, !s_speaks(r, need)};
    }
    qsort(c, *nc, sizeof *c, s_compare);
    return c;
}

nrm_status_t shelter_allocate(shelter_t *self, nrm_tx_t *tx, const shelter_need_t *need,
                              shelter_row_t *rows, size_t n, bool from_waitlist, bool *allocated,
                              size_t *eligible_count)
{
    *allocated = false;
    size_t nc = 0;
    s_candidate_t *c = s_candidates(need, rows, n, &nc, eligible_count);
    nrm_status_t st = NRM_OK;
    for (size_t i = 0; i < nc && st == NRM_OK && !*allocated; i++) {
        char reason[SHELTER_REASON_MAX];
        s_reason(&c[i], need, nc, from_waitlist, reason, sizeof reason);
        st = s_hold(tx, &c[i], need->beds, allocated);
        if (st == NRM_OK && *allocated)
            st = s_record(self, tx, need, c[i].row, reason);
    }
    free(c);
    return st;
}

shelter_row_t *shelter_choose(const shelter_need_t *need, shelter_row_t *rows, size_t n,
                              char *reason, size_t size, size_t *eligible_count)
{
    size_t nc = 0;
    s_candidate_t *c = s_candidates(need, rows, n, &nc, eligible_count);
    shelter_row_t *chosen = nc ? c[0].row : NULL;
    if (chosen) {
        s_reason(&c[0], need, nc, false, reason, size);
        chosen->held += need->beds;
    }
    free(c);
    return chosen;
}

void shelter_waitlist_reason(size_t eligible, char *buf, size_t size)
{
    if (eligible == 0)
        snprintf(buf, size, "no_eligible_shelter");
    else
        snprintf(buf, size, "no_free_bed; %zu eligible shelters full", eligible);
}

/* Returns v brought into lo..hi. */
static int s_clamp(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

bool shelter_need_from_event(const Nrm__V1__Event *ev, int64_t now_ms, shelter_need_t *need)
{
    const Nrm__V1__ShelterRequested *r = ev->shelter_requested;
    memset(need, 0, sizeof *need);
    if (!r || !ev->case_id || !ev->case_id[0] || strlen(ev->case_id) > SHELTER_ID_MAX ||
        !nrm_text_clean(ev->case_id) || !r->region[0] || strlen(r->region) > SHELTER_REGION_MAX ||
        !nrm_text_clean(r->region) || !nrm_uuid_valid(ev->event_id))
        return false;
    snprintf(need->case_id, sizeof need->case_id, "%s", ev->case_id);
    snprintf(need->request_event_id, sizeof need->request_event_id, "%s", ev->event_id);
    snprintf(need->region, sizeof need->region, "%s", r->region);
    /* an unstated urgency waits as routine */
    need->urgency =
        s_clamp(r->urgency, NRM__V1__URGENCY__URGENCY_ROUTINE, NRM__V1__URGENCY__URGENCY_EMERGENCY);
    need->safety_risk = s_clamp(r->safety_risk, NRM__V1__SAFETY_RISK__SAFETY_RISK_UNSPECIFIED,
                                NRM__V1__SAFETY_RISK__SAFETY_RISK_HIGH);
    const Nrm__V1__Profile *p = r->profile;
    need->age_known = p && !p->age_unknown && p->age_years >= 0;
    need->age_years = need->age_known ? p->age_years : 0;
    need->is_minor = r->is_minor || !need->age_known || need->age_years < SHELTER_ADULT_AGE;
    if (p) {
        need->gender = p->gender;
        need->disability = p->disability;
        need->children = s_clamp(p->accompanying_children, 0, S_MAX_CHILDREN);
        for (size_t i = 0; i < p->n_languages && need->n_languages < SHELTER_MAX_LANGUAGES; i++)
            need->n_languages +=
                shelter_languages_parse(p->languages[i], &need->languages[need->n_languages], 1);
    }
    int beds = 1 + need->children;
    need->beds = r->beds > beds && r->beds <= SHELTER_MAX_BEDS ? r->beds : beds;
    need->requested_at_ms = ev->occurred_at_ms > 0 ? ev->occurred_at_ms : now_ms;
    return true;
}

nrm_status_t shelter_case_state(nrm_tx_t *tx, const char *case_id, bool *closed, bool *served)
{
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "allocate_case_state", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    *closed = nrm_db_int(res, 0, 0) != 0;
    *served = nrm_db_int(res, 0, 1) != 0 || nrm_db_int(res, 0, 2) != 0;
    PQclear(res);
    return NRM_OK;
}

nrm_status_t shelter_place_need(shelter_t *self, nrm_tx_t *tx, const shelter_need_t *need,
                                bool *allocated, int *position)
{
    shelter_row_t *rows = NULL;
    size_t n = 0, eligible = 0;
    *allocated = false;
    if (position)
        *position = 0;
    nrm_status_t st = shelter_load_active(tx, &rows, &n);
    if (st == NRM_OK)
        st = shelter_allocate(self, tx, need, rows, n, false, allocated, &eligible);
    free(rows);
    if (st != NRM_OK || *allocated)
        return st;
    char reason[SHELTER_REASON_MAX];
    shelter_waitlist_reason(eligible, reason, sizeof reason);
    return shelter_waitlist_add(tx, need, reason, position);
}
