/* Screening with operational indicators of trafficking (in the spirit of the ILO / European
 * Commission indicators): a report, or a later update, answers indicators of a checklist; each
 * indicator belongs to a dimension (deceptive recruitment, coercive recruitment, abuse of
 * vulnerability, exploitative conditions, coercion at destination) and is strong, medium or
 * weak. The checklist and the rule that combines it are configuration data ("intake.screening",
 * deploy/demo/screening.json, a default for the national committee to review):
 *
 *   {"version": "...", "weights": {"STRONG": 2, "MEDIUM": 1, "WEAK": 1},
 *    "dimension_positive": {"min_strong": 1, "min_score": 3},
 *    "likely": [[DIMENSION...], ...], "likely_minor": [[DIMENSION...], ...],
 *    "possible": {"positive_dimensions_at_least": 1, "strong_indicators_at_least": 1},
 *    "indicators": [{"id": "...", "dimension": "...", "strength": "...", "text": "..."}]}
 *
 * A dimension is positive when its present indicators hold at least min_strong strong ones and
 * weigh at least min_score. The outcome is LIKELY when every group of "likely" (of
 * "likely_minor" for a minor) has a positive dimension; POSSIBLE when enough dimensions are
 * positive or enough strong indicators are present; UNLIKELY otherwise; NOT_SCREENED without
 * answers. The dimensions that led to it are published with it. Screening decides nothing on
 * its own: referrals (child protection for a minor first) never wait for it. */
#include "intake.h"
#include "nrm_alloc.h"
#include "nrm_log.h"
#include "nrm_pgarray.h"
#include "nrm_validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PATH 112
#define S_MAX_GROUPS 8
#define S_STRENGTHS 4  /* IndicatorStrength values are below this */
#define S_DIMENSIONS 6 /* IndicatorDimension values are below this */
#define S_ID_MAX 64
#define S_MAX_INDICATORS 200
#define S_SETTING "intake.screening"

typedef struct {
    char id[S_ID_MAX];
    int dimension; /* IndicatorDimension value */
    int strength;  /* IndicatorStrength value */
} s_indicator_t;

struct intake_screening_t {
    s_indicator_t *indicators;
    size_t count;
    char version[INTAKE_VERSION_MAX];
    int weights[S_STRENGTHS];
    int min_strong;
    int min_score;
    unsigned likely[S_MAX_GROUPS]; /* sets of dimensions (bit d) */
    size_t n_likely;
    unsigned likely_minor[S_MAX_GROUPS];
    size_t n_likely_minor;
    int possible_dimensions; /* 0: not a way to POSSIBLE */
    int possible_strong;     /* 0: idem */
};

static const char s_sql_answer[] =
    "INSERT INTO screening_answers (case_id, indicator_id, present) VALUES ($1, $2, $3)"
    " ON CONFLICT (case_id, indicator_id) DO UPDATE SET present = EXCLUDED.present,"
    " answered_at = now()";
static const char s_sql_answers[] =
    "SELECT indicator_id, present FROM screening_answers WHERE case_id = $1 ORDER BY indicator_id";
static const char s_sql_save[] =
    "UPDATE cases SET screening_outcome = $2, screening_dimensions = $3::int[],"
    " screening_version = $4 WHERE case_id = $1";

void intake_screening_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "intake_screening_answer", s_sql_answer);
    nrm_db_statement(db, "intake_screening_answers", s_sql_answers);
    nrm_db_statement(db, "intake_screening_save", s_sql_save);
}

void intake_screening_destroy(intake_screening_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->indicators);
    free(*self_p);
    *self_p = NULL;
}

/* The value of an enum member named without its prefix ("STRONG"), or -1. */
static int s_enum(const ProtobufCEnumDescriptor *desc, const char *prefix, const json_t *name)
{
    const char *s = json_string_value(name);
    char full[S_PATH];
    if (!s || snprintf(full, sizeof full, "%s%s", prefix, s) >= (int)sizeof full)
        return -1;
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(desc, full);
    return v && v->value > 0 ? v->value : -1;
}

/* Reads a list of groups of dimension names into sets. Returns 0 or -1 (err set). */
static int s_groups(const json_t *list, const char *path, unsigned *out, size_t *n,
                    nrm_error_t *err)
{
    *n = 0;
    if (!list)
        return 0;
    if (!json_is_array(list) || json_array_size(list) > S_MAX_GROUPS) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, path, "%s must be a list of at most %d groups", path,
                 S_MAX_GROUPS);
        return -1;
    }
    size_t i, j;
    json_t *group, *name;
    json_array_foreach(list, i, group)
    {
        unsigned set = 0;
        json_array_foreach(group, j, name)
        {
            int d = s_enum(&nrm__v1__indicator_dimension__descriptor, "INDICATOR_DIMENSION_", name);
            if (d < 0)
                break;
            set |= 1u << d;
        }
        if (!json_is_array(group) || set == 0 || j != json_array_size(group)) {
            char at[S_PATH];
            snprintf(at, sizeof at, "%s[%zu]", path, i);
            nrm_fail(err, NRM_FAILED_PRECONDITION, at,
                     "%s must be a non-empty list of indicator dimensions", at);
            return -1;
        }
        out[(*n)++] = set;
    }
    return 0;
}

/* A non-negative integer member of obj, or dflt when absent; -1 when not such a number. */
static int s_count(const json_t *obj, const char *key, int dflt)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return dflt;
    return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < 1000
               ? (int)json_integer_value(v)
               : -1;
}

/* Reads the indicators. Returns 0 or -1 (err set). */
static int s_indicators(intake_screening_t *self, const json_t *list, nrm_error_t *err)
{
    if (!json_is_array(list) || json_array_size(list) > S_MAX_INDICATORS) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, S_SETTING ".indicators",
                 S_SETTING ".indicators must be a list of at most %d indicators", S_MAX_INDICATORS);
        return -1;
    }
    self->indicators = nrm_xcalloc(json_array_size(list) + 1, sizeof *self->indicators);
    size_t i;
    json_t *entry;
    json_array_foreach(list, i, entry)
    {
        char at[S_PATH];
        snprintf(at, sizeof at, S_SETTING ".indicators[%zu]", i);
        const char *id = json_string_value(json_object_get(entry, "id"));
        int dimension = s_enum(&nrm__v1__indicator_dimension__descriptor, "INDICATOR_DIMENSION_",
                               json_object_get(entry, "dimension"));
        int strength = s_enum(&nrm__v1__indicator_strength__descriptor, "INDICATOR_STRENGTH_",
                              json_object_get(entry, "strength"));
        if (!id || !id[0] || strlen(id) >= S_ID_MAX || !nrm_text_clean(id) || dimension < 0 ||
            strength < 0) {
            nrm_fail(err, NRM_FAILED_PRECONDITION, at,
                     "%s needs an id (at most %d bytes), a dimension and a strength", at,
                     S_ID_MAX - 1);
            return -1;
        }
        for (size_t j = 0; j < self->count; j++)
            if (strcmp(self->indicators[j].id, id) == 0) {
                nrm_fail(err, NRM_FAILED_PRECONDITION, at, "%s repeats an indicator id", at);
                return -1;
            }
        s_indicator_t *ind = &self->indicators[self->count++];
        snprintf(ind->id, sizeof ind->id, "%s", id);
        ind->dimension = dimension;
        ind->strength = strength;
    }
    return 0;
}

intake_screening_t *intake_screening_load(nrm_config_t *config, nrm_error_t *err)
{
    const json_t *cfg = nrm_config_get(config, S_SETTING);
    intake_screening_t *self = nrm_xcalloc(1, sizeof *self);
    if (!cfg) { /* no checklist: every answer is refused, every case is not screened */
        nrm_log_warn("no screening checklist configured", "{s:s}", "setting", S_SETTING);
        self->indicators = nrm_xcalloc(1, sizeof *self->indicators);
        return self;
    }
    const char *version = json_string_value(json_object_get(cfg, "version"));
    snprintf(self->version, sizeof self->version, "%s", version ? version : "");
    const json_t *weights = json_object_get(cfg, "weights");
    static const char *const names[S_STRENGTHS] = {NULL, "WEAK", "MEDIUM", "STRONG"};
    static const int dflt[S_STRENGTHS] = {0, 1, 1, 2};
    int rc = json_is_object(cfg) ? 0 : -1;
    for (int s = 1; s < S_STRENGTHS && rc == 0; s++)
        if ((self->weights[s] = s_count(weights, names[s], dflt[s])) < 0)
            rc = -1;
    const json_t *positive = json_object_get(cfg, "dimension_positive");
    const json_t *possible = json_object_get(cfg, "possible");
    self->min_strong = s_count(positive, "min_strong", 1);
    self->min_score = s_count(positive, "min_score", 3);
    self->possible_dimensions = s_count(possible, "positive_dimensions_at_least", 1);
    self->possible_strong = s_count(possible, "strong_indicators_at_least", 1);
    if (rc != 0 || self->min_strong < 0 || self->min_score < 1 || self->possible_dimensions < 0 ||
        self->possible_strong < 0) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, S_SETTING,
                 S_SETTING " needs an object whose weights, dimension_positive and possible are "
                           "small non-negative counts (min_score at least 1)");
        rc = -1;
    }
    if (rc == 0)
        rc = s_groups(json_object_get(cfg, "likely"), S_SETTING ".likely", self->likely,
                      &self->n_likely, err);
    if (rc == 0)
        rc = s_groups(json_object_get(cfg, "likely_minor"), S_SETTING ".likely_minor",
                      self->likely_minor, &self->n_likely_minor, err);
    if (rc == 0)
        rc = s_indicators(self, json_object_get(cfg, "indicators"), err);
    if (rc != 0)
        intake_screening_destroy(&self);
    return self;
}

/* The indicator with this id, or NULL. */
static const s_indicator_t *s_find(const intake_screening_t *self, const char *id)
{
    for (size_t i = 0; id && i < self->count; i++)
        if (strcmp(self->indicators[i].id, id) == 0)
            return &self->indicators[i];
    return NULL;
}

nrm_status_t intake_screening_check(const intake_screening_t *self,
                                    Nrm__V1__IndicatorAnswer *const *answers, size_t n,
                                    const char *field, nrm_error_t *err)
{
    if (n > self->count && n > 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field,
                        "%s has more answers than the checklist has indicators", field);
    char path[S_PATH], at[S_PATH];
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s.indicator_id", nrm_path_index(at, sizeof at, field, i));
        if (nrm_check_text(err, path, answers[i]->indicator_id, S_ID_MAX, true) != NRM_OK)
            return NRM_INVALID_ARGUMENT;
        if (!s_find(self, answers[i]->indicator_id))
            return nrm_fail(err, NRM_INVALID_ARGUMENT, path,
                            "%s is not an indicator of the screening checklist", path);
        for (size_t j = 0; j < i; j++)
            if (strcmp(answers[j]->indicator_id, answers[i]->indicator_id) == 0)
                return nrm_fail(err, NRM_INVALID_ARGUMENT, path, "%s is answered twice", path);
    }
    return NRM_OK;
}

/* True when every group has a dimension of positive. */
static bool s_groups_hold(const unsigned *groups, size_t n, unsigned positive)
{
    for (size_t g = 0; g < n; g++)
        if (!(groups[g] & positive))
            return false;
    return n > 0;
}

void intake_screening_assess(const intake_screening_t *self, const char *const *ids,
                             const bool *present, size_t n, bool is_minor, intake_screened_t *out)
{
    memset(out, 0, sizeof *out);
    nrm__v1__screening__init(&out->msg);
    out->msg.dimensions = out->dims;
    snprintf(out->version, sizeof out->version, "%s", self->version);
    out->msg.checklist_version = out->version;
    int score[S_DIMENSIONS] = {0}, strong[S_DIMENSIONS] = {0}, strong_total = 0;
    for (size_t i = 0; i < n; i++) {
        const s_indicator_t *ind = s_find(self, ids[i]);
        if (!ind)
            continue; /* no longer in the checklist */
        out->msg.answered++;
        if (!present[i])
            continue;
        out->msg.present++;
        score[ind->dimension] += self->weights[ind->strength];
        if (ind->strength == NRM__V1__INDICATOR_STRENGTH__INDICATOR_STRENGTH_STRONG) {
            strong[ind->dimension]++;
            strong_total++;
        }
    }
    unsigned positive = 0, with_strong = 0;
    for (int d = 1; d < S_DIMENSIONS; d++) {
        if (strong[d] >= self->min_strong && score[d] >= self->min_score)
            positive |= 1u << d;
        if (strong[d] > 0)
            with_strong |= 1u << d;
    }
    int n_positive = __builtin_popcount(positive);
    unsigned led = 0;
    if (out->msg.answered == 0) {
        out->msg.outcome = NRM__V1__SCREENING_OUTCOME__SCREENING_OUTCOME_NOT_SCREENED;
    } else if (is_minor ? s_groups_hold(self->likely_minor, self->n_likely_minor, positive)
                        : s_groups_hold(self->likely, self->n_likely, positive)) {
        out->msg.outcome = NRM__V1__SCREENING_OUTCOME__SCREENING_OUTCOME_LIKELY;
        led = positive;
    } else if ((self->possible_dimensions > 0 && n_positive >= self->possible_dimensions) ||
               (self->possible_strong > 0 && strong_total >= self->possible_strong)) {
        out->msg.outcome = NRM__V1__SCREENING_OUTCOME__SCREENING_OUTCOME_POSSIBLE;
        led = positive | with_strong;
    } else {
        out->msg.outcome = NRM__V1__SCREENING_OUTCOME__SCREENING_OUTCOME_UNLIKELY;
    }
    for (int d = 1; d < S_DIMENSIONS; d++)
        if (led & (1u << d))
            out->dims[out->msg.n_dimensions++] = (Nrm__V1__IndicatorDimension)d;
}

nrm_status_t intake_screening_record(const intake_screening_t *self, nrm_tx_t *tx,
                                     const char *case_id, Nrm__V1__IndicatorAnswer *const *answers,
                                     size_t n, bool is_minor, intake_screened_t *out)
{
    nrm_status_t st = NRM_OK;
    for (size_t i = 0; i < n && st == NRM_OK; i++) {
        nrm_params_t p = {0};
        nrm_params_text(&p, case_id);
        nrm_params_text(&p, answers[i]->indicator_id);
        nrm_params_bool(&p, answers[i]->present);
        st = nrm_db_exec(tx->db, "intake_screening_answer", &p, NULL, tx->err);
    }
    nrm_params_t p = {0};
    nrm_params_text(&p, case_id);
    PGresult *res = NULL;
    if (st == NRM_OK)
        st = nrm_db_exec(tx->db, "intake_screening_answers", &p, &res, tx->err);
    if (st != NRM_OK)
        return st;
    size_t rows = (size_t)PQntuples(res);
    const char **ids = nrm_xcalloc(rows + 1, sizeof *ids);
    bool *present = nrm_xcalloc(rows + 1, sizeof *present);
    for (size_t i = 0; i < rows; i++) {
        ids[i] = nrm_db_text(res, (int)i, 0);
        present[i] = nrm_db_int(res, (int)i, 1) != 0;
    }
    intake_screening_assess(self, ids, present, rows, is_minor, out);
    free(ids);
    free(present);
    PQclear(res);
    nrm_pgarray_t dims;
    nrm_pgarray_init(&dims);
    for (size_t i = 0; i < out->msg.n_dimensions; i++)
        nrm_pgarray_int(&dims, out->dims[i]);
    nrm_params_t s = {0};
    nrm_params_text(&s, case_id);
    nrm_params_int(&s, out->msg.outcome);
    nrm_params_text(&s, nrm_pgarray_close(&dims));
    nrm_params_text(&s, out->version);
    st = nrm_db_exec(tx->db, "intake_screening_save", &s, NULL, tx->err);
    nrm_pgarray_free(&dims);
    return st;
}
