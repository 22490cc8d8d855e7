/* The case fields of IOM's Human Trafficking Case Data Standard beyond the profile (means of
 * control, recruitment type, labour sector, period of exploitation, countries of transit,
 * relation to the recruiter): checked like every field (a refusal names it), stored with the
 * case (a serialized TraffickingFacts), merged by updates and linked reports, carried on
 * case.opened and case.updated with the screening outcome. None of them identifies anyone. */
#include "intake.h"
#include "nrm_alloc.h"
#include "nrm_log.h"
#include "nrm_validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_PATH 112
#define S_FIRST_YEAR 1900
#define S_MONTHS 12
#define S_MS_PER_S 1000

static const char s_sql_fields_load[] =
    "SELECT facts, is_minor, trafficking_status,"
    " (extract(epoch FROM identified_at) * 1000)::bigint FROM cases WHERE case_id = $1";
static const char s_sql_fields_save[] = "UPDATE cases SET facts = $2 WHERE case_id = $1";

void intake_fields_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "intake_fields_load", s_sql_fields_load);
    nrm_db_statement(db, "intake_fields_save", s_sql_fields_save);
    intake_screening_prepare(db);
    intake_status_prepare(db);
    intake_recovery_prepare(db);
}

/* The current year and month (UTC) of now_ms. */
static void s_year_month(int64_t now_ms, int *year, int *month)
{
    time_t t = (time_t)(now_ms / S_MS_PER_S);
    struct tm tm;
    gmtime_r(&t, &tm);
    *year = tm.tm_year + 1900;
    *month = tm.tm_mon + 1;
}

/* Checks one end of the period ("start" or "end"): a year from 1900 to now or 0 (unknown), a
 * month 1-12 or 0, never a month without its year, never after now. */
static nrm_status_t s_check_month(nrm_error_t *err, const char *prefix, const char *end, int year,
                                  int month, int64_t now_ms)
{
    char ypath[S_PATH], mpath[S_PATH];
    snprintf(ypath, sizeof ypath, "%s.exploitation_period.%s_year", prefix, end);
    snprintf(mpath, sizeof mpath, "%s.exploitation_period.%s_month", prefix, end);
    int now_year, now_month;
    s_year_month(now_ms, &now_year, &now_month);
    if (year != 0 && nrm_check_range(err, ypath, year, S_FIRST_YEAR, now_year) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (nrm_check_range(err, mpath, month, 0, S_MONTHS) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (month != 0 && year == 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, mpath, "%s needs its year", mpath);
    if (year == now_year && month > now_month)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, mpath, "%s is in the future", mpath);
    return NRM_OK;
}

/* Checks the period: each end, and a start no later than the end when both are known. */
static nrm_status_t s_check_period(const Nrm__V1__ExploitationPeriod *p, const char *prefix,
                                   int64_t now_ms, nrm_error_t *err)
{
    if (!p)
        return NRM_OK;
    if (s_check_month(err, prefix, "start", p->start_year, p->start_month, now_ms) != NRM_OK ||
        s_check_month(err, prefix, "end", p->end_year, p->end_month, now_ms) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    bool before =
        p->end_year && p->start_year &&
        (p->end_year < p->start_year || (p->end_year == p->start_year && p->end_month &&
                                         p->start_month && p->end_month < p->start_month));
    if (!before)
        return NRM_OK;
    char path[S_PATH];
    snprintf(path, sizeof path, "%s.exploitation_period.end_year", prefix);
    return nrm_fail(err, NRM_INVALID_ARGUMENT, path, "the period ends before it starts");
}

nrm_status_t intake_check_facts(const Nrm__V1__TraffickingFacts *f, const char *prefix,
                                int64_t now_ms, nrm_error_t *err)
{
    if (!f)
        return NRM_OK;
    char path[S_PATH], at[S_PATH];
    snprintf(path, sizeof path, "%s.means_of_control", prefix);
    if (f->n_means_of_control > INTAKE_MAX_MEANS)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, path, "%s has more than %d entries", path,
                        INTAKE_MAX_MEANS);
    for (size_t i = 0; i < f->n_means_of_control; i++)
        if (nrm_check_enum(err, nrm_path_index(at, sizeof at, path, i),
                           &nrm__v1__means_of_control__descriptor, f->means_of_control[i],
                           false) != NRM_OK)
            return NRM_INVALID_ARGUMENT;
    static const struct {
        const char *name;
        const ProtobufCEnumDescriptor *desc;
        size_t offset;
    } enums[] = {
        {"recruitment_type", &nrm__v1__recruitment_type__descriptor,
         offsetof(Nrm__V1__TraffickingFacts, recruitment_type)},
        {"labour_sector", &nrm__v1__labour_sector__descriptor,
         offsetof(Nrm__V1__TraffickingFacts, labour_sector)},
        {"recruiter_relation", &nrm__v1__recruiter_relation__descriptor,
         offsetof(Nrm__V1__TraffickingFacts, recruiter_relation)},
    };
    for (size_t e = 0; e < sizeof enums / sizeof enums[0]; e++) {
        int value;
        memcpy(&value, (const char *)f + enums[e].offset, sizeof value);
        snprintf(path, sizeof path, "%s.%s", prefix, enums[e].name);
        if (nrm_check_enum(err, path, enums[e].desc, value, true) != NRM_OK)
            return NRM_INVALID_ARGUMENT;
    }
    if (s_check_period(f->exploitation_period, prefix, now_ms, err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    snprintf(path, sizeof path, "%s.countries_of_transit", prefix);
    if (f->n_countries_of_transit > INTAKE_MAX_TRANSIT)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, path, "%s has more than %d entries", path,
                        INTAKE_MAX_TRANSIT);
    for (size_t i = 0; i < f->n_countries_of_transit; i++) {
        nrm_path_index(at, sizeof at, path, i);
        if (nrm_check_country(err, at, f->countries_of_transit[i], true) != NRM_OK)
            return NRM_INVALID_ARGUMENT;
        for (size_t j = 0; j < i; j++)
            if (strcmp(f->countries_of_transit[j], f->countries_of_transit[i]) == 0)
                return nrm_fail(err, NRM_INVALID_ARGUMENT, at, "%s is listed twice", at);
    }
    return NRM_OK;
}

nrm_status_t intake_ident_check_report(const intake_t *self, const Nrm__V1__SubmitReport *r,
                                       int64_t now_ms, nrm_error_t *err)
{
    if (intake_check_facts(r->facts, "submit_report.facts", now_ms, err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    return intake_screening_check(self->screening, r->screening_answers, r->n_screening_answers,
                                  "submit_report.screening_answers", err);
}

nrm_status_t intake_ident_check_update(const intake_t *self, const Nrm__V1__UpdateCase *u,
                                       int64_t now_ms, nrm_error_t *err)
{
    if (intake_check_facts(u->facts, "update_case.facts", now_ms, err) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    return intake_screening_check(self->screening, u->screening_answers, u->n_screening_answers,
                                  "update_case.screening_answers", err);
}

/* Empty fields with their pointers set. */
static void s_fields_init(intake_fields_t *f)
{
    memset(f, 0, sizeof *f);
    nrm__v1__trafficking_facts__init(&f->msg);
    nrm__v1__exploitation_period__init(&f->period);
    f->msg.means_of_control = f->means;
    f->msg.countries_of_transit = f->transit_ptrs;
    for (size_t i = 0; i < INTAKE_MAX_TRANSIT; i++)
        f->transit_ptrs[i] = f->transit[i];
}

/* True when the period has any end known. */
static bool s_period_set(const Nrm__V1__ExploitationPeriod *p)
{
    return p && (p->start_year || p->start_month || p->end_year || p->end_month);
}

/* Merges add (checked) into f: means of control and countries of transit are added unless
 * present, set enums and a set period replace. Returns true when f changed. */
static bool s_fields_merge(intake_fields_t *f, const Nrm__V1__TraffickingFacts *add)
{
    if (!add)
        return false;
    bool changed = false;
    for (size_t i = 0; i < add->n_means_of_control; i++) {
        bool known = false;
        for (size_t j = 0; j < f->msg.n_means_of_control; j++)
            known |= f->means[j] == add->means_of_control[i];
        if (!known && f->msg.n_means_of_control < INTAKE_MAX_MEANS) {
            f->means[f->msg.n_means_of_control++] = add->means_of_control[i];
            changed = true;
        }
    }
    for (size_t i = 0; i < add->n_countries_of_transit; i++) {
        bool known = false;
        for (size_t j = 0; j < f->msg.n_countries_of_transit; j++)
            known |= strcmp(f->transit[j], add->countries_of_transit[i]) == 0;
        if (!known && f->msg.n_countries_of_transit < INTAKE_MAX_TRANSIT) {
            snprintf(f->transit[f->msg.n_countries_of_transit++], sizeof f->transit[0], "%s",
                     add->countries_of_transit[i]);
            changed = true;
        }
    }
#define S_REPLACE(member)                                                                          \
    if (add->member && add->member != f->msg.member) {                                             \
        f->msg.member = add->member;                                                               \
        changed = true;                                                                            \
    }
    S_REPLACE(recruitment_type)
    S_REPLACE(labour_sector)
    S_REPLACE(recruiter_relation)
#undef S_REPLACE
    if (s_period_set(add->exploitation_period) &&
        (!f->msg.exploitation_period ||
         memcmp(&f->period.start_year, &add->exploitation_period->start_year,
                4 * sizeof(int32_t)) != 0)) {
        f->period.start_year = add->exploitation_period->start_year;
        f->period.start_month = add->exploitation_period->start_month;
        f->period.end_year = add->exploitation_period->end_year;
        f->period.end_month = add->exploitation_period->end_month;
        f->msg.exploitation_period = &f->period;
        changed = true;
    }
    return changed;
}

/* Serialises f into a malloc'd buffer (caller frees); *len receives its size. */
static uint8_t *s_fields_pack(const intake_fields_t *f, size_t *len)
{
    *len = nrm__v1__trafficking_facts__get_packed_size(&f->msg);
    uint8_t *buf = nrm_xmalloc(*len ? *len : 1);
    nrm__v1__trafficking_facts__pack(&f->msg, buf);
    return buf;
}

/* Saves f on the case (statement stmt: $1 case, $2 facts, then extra, may be NULL). */
static nrm_status_t s_fields_save(nrm_tx_t *tx, const char *stmt, const char *case_id,
                                  const intake_fields_t *f, const int64_t *extra)
{
    size_t len = 0;
    uint8_t *bytes = s_fields_pack(f, &len);
    if (!bytes)
        return nrm_fail(tx->err, NRM_INTERNAL, NULL, "out of memory");
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    nrm_params_bytes(&p, bytes, len);
    if (extra)
        nrm_params_int(&p, *extra);
    nrm_status_t st = nrm_db_exec(tx->db, stmt, &p, NULL, tx->err);
    free(bytes);
    return st;
}

void intake_ident_opening(const intake_t *self, nrm_call_t *call, bool is_minor,
                          intake_ident_t *ident, uint8_t **facts, size_t *facts_len)
{
    const Nrm__V1__SubmitReport *r = call->request->submit_report;
    memset(ident, 0, sizeof *ident);
    s_fields_init(&ident->fields);
    s_fields_merge(&ident->fields, r->facts);
    ident->status = NRM__V1__TRAFFICKING_STATUS__TRAFFICKING_STATUS_PRESUMED_VICTIM;
    int64_t period_s = intake_recovery_period_s(call->config);
    ident->recovery_ends_at_ms = period_s ? r->identified_at_ms + period_s * S_MS_PER_S : 0;
    *facts = s_fields_pack(&ident->fields, facts_len);
    /* a new case's answers are the report's (each indicator once: checked), so their outcome
     * is the one intake_screening_record computes from the stored answers */
    size_t n = r->n_screening_answers;
    const char **ids = nrm_xcalloc(n + 1, sizeof *ids);
    bool *present = nrm_xcalloc(n + 1, sizeof *present);
    for (size_t i = 0; i < n; i++) {
        ids[i] = r->screening_answers[i]->indicator_id;
        present[i] = r->screening_answers[i]->present;
    }
    intake_screening_assess(self->screening, ids, present, n, is_minor, &ident->screened);
    free(ids);
    free(present);
    if (n == 0) /* nothing stored: the columns' defaults say so */
        ident->screened.version[0] = '\0';
}

nrm_status_t intake_ident_open_answers(intake_t *self, nrm_call_t *call, const char *case_id,
                                       bool is_minor)
{
    const Nrm__V1__SubmitReport *r = call->request->submit_report;
    if (r->n_screening_answers == 0)
        return NRM_OK;
    intake_screened_t screened;
    return intake_screening_record(self->screening, &call->tx, case_id, r->screening_answers,
                                   r->n_screening_answers, is_minor, &screened);
}

/* Reads the stored fields of a case into ident (and its minority into *is_minor). */
static nrm_status_t s_ident_load(nrm_tx_t *tx, nrm_config_t *config, const char *case_id,
                                 intake_ident_t *ident, bool *is_minor)
{
    memset(ident, 0, sizeof *ident);
    s_fields_init(&ident->fields);
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "intake_fields_load", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return nrm_fail(tx->err, NRM_NOT_FOUND, NULL, "no such case");
    }
    size_t len = 0;
    const uint8_t *bytes = nrm_db_bytes(res, 0, 0, &len);
    Nrm__V1__TraffickingFacts *stored = nrm__v1__trafficking_facts__unpack(NULL, len, bytes);
    *is_minor = nrm_db_int(res, 0, 1) != 0;
    ident->status = (int)nrm_db_int(res, 0, 2);
    ident->recovery_ends_at_ms =
        nrm_db_int(res, 0, 3) + intake_recovery_period_s(config) * S_MS_PER_S;
    PQclear(res);
    if (!stored)
        return nrm_fail(tx->err, NRM_INTERNAL, NULL, "stored case fields unreadable");
    s_fields_merge(&ident->fields, stored);
    nrm__v1__trafficking_facts__free_unpacked(stored, NULL);
    return NRM_OK;
}

nrm_status_t intake_ident_update(intake_t *self, nrm_call_t *call, const char *case_id,
                                 const Nrm__V1__TraffickingFacts *facts,
                                 Nrm__V1__IndicatorAnswer *const *answers, size_t n_answers,
                                 intake_ident_t *ident, bool *changed)
{
    bool is_minor = false;
    nrm_status_t st = s_ident_load(&call->tx, call->config, case_id, ident, &is_minor);
    if (st != NRM_OK)
        return st;
    *changed = s_fields_merge(&ident->fields, facts);
    if (*changed)
        st = s_fields_save(&call->tx, "intake_fields_save", case_id, &ident->fields, NULL);
    if (st == NRM_OK)
        st = intake_screening_record(self->screening, &call->tx, case_id, answers, n_answers,
                                     is_minor, &ident->screened);
    if (st == NRM_OK && n_answers > 0)
        *changed = true; /* new answers are news even when the outcome stays */
    return st;
}
