/* Validation of intake requests: every field of a report checked before anything is stored. */
#include "intake.h"
#include "nrm_config.h"
#include "nrm_validate.h"

#include <string.h>

#define S_PATH 96

static const char *const s_close_reasons[] = {
    "reintegrated", "returned", "transferred", "lost_contact",        "not_a_victim",
    "duplicate",    "deceased", "other",       "declined_assistance", NULL};

/* Checks a repeated enum field: at most max entries, each a defined, non-zero member. */
static nrm_status_t s_check_enum_list(nrm_error_t *err, const char *field,
                                      const ProtobufCEnumDescriptor *desc, const int *values,
                                      size_t n, size_t max)
{
    if (n > max)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, field, "%s has more than %zu entries", field,
                        max);
    char path[S_PATH];
    for (size_t i = 0; i < n; i++)
        if (nrm_check_enum(err, nrm_path_index(path, sizeof path, field, i), desc, values[i],
                           false) != NRM_OK)
            return NRM_INVALID_ARGUMENT;
    return NRM_OK;
}

/* Checks the identifying part of a report; fills the age when a date of birth is given. */
static nrm_status_t s_check_person(const Nrm__V1__PersonalData *p, int64_t now_ms,
                                   intake_facts_t *facts, nrm_error_t *err)
{
    if (!p)
        return NRM_OK;
    char path[S_PATH];
    if (nrm_check_text(err, "submit_report.person.full_name", p->full_name, INTAKE_MAX_NAME,
                       false) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (p->n_aliases > INTAKE_MAX_ALIASES)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "submit_report.person.aliases",
                        "at most %d aliases", INTAKE_MAX_ALIASES);
    for (size_t i = 0; i < p->n_aliases; i++)
        if (nrm_check_text(err,
                           nrm_path_index(path, sizeof path, "submit_report.person.aliases", i),
                           p->aliases[i], INTAKE_MAX_NAME, true) != NRM_OK)
            return NRM_INVALID_ARGUMENT;
    if (p->date_of_birth[0]) {
        int y, m, d;
        if (nrm_check_date(err, "submit_report.person.date_of_birth", p->date_of_birth, now_ms, &y,
                           &m, &d) != NRM_OK)
            return NRM_INVALID_ARGUMENT;
        facts->has_age = true;
        facts->age_from_birth_date = true;
        facts->age_years = nrm_age_on(y, m, d, now_ms);
    }
    if (nrm_check_text(err, "submit_report.person.phone", p->phone, INTAKE_MAX_PHONE, false) !=
        NRM_OK)
        return NRM_INVALID_ARGUMENT;
    for (const char *c = p->phone; *c; c++)
        if (!strchr("+0123456789 -().", *c))
            return nrm_fail(err, NRM_INVALID_ARGUMENT, "submit_report.person.phone",
                            "phone may hold digits, spaces and + - ( ) . only");
    return nrm_check_text(err, "submit_report.person.document_number", p->document_number,
                          INTAKE_MAX_DOCUMENT, false);
}

/* Checks the categorical profile and completes the age facts. */
static nrm_status_t s_check_profile(const Nrm__V1__Profile *p, intake_facts_t *facts,
                                    nrm_error_t *err)
{
    if (!p)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "submit_report.profile", "profile is required");
    char path[S_PATH];
    if (!p->age_unknown && nrm_check_range(err, "submit_report.profile.age_years", p->age_years, 0,
                                           INTAKE_MAX_AGE) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (nrm_check_enum(err, "submit_report.profile.gender", &nrm__v1__gender__descriptor, p->gender,
                       true) != NRM_OK ||
        nrm_check_country(err, "submit_report.profile.nationality", p->nationality, false) !=
            NRM_OK ||
        nrm_check_range(err, "submit_report.profile.accompanying_children",
                        p->accompanying_children, 0, INTAKE_MAX_CHILDREN) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (p->n_languages > INTAKE_MAX_LANGUAGES)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "submit_report.profile.languages",
                        "at most %d languages", INTAKE_MAX_LANGUAGES);
    for (size_t i = 0; i < p->n_languages; i++)
        if (nrm_check_language(
                err, nrm_path_index(path, sizeof path, "submit_report.profile.languages", i),
                p->languages[i]) != NRM_OK)
            return NRM_INVALID_ARGUMENT;
    if (!facts->has_age && !p->age_unknown) {
        facts->has_age = true;
        facts->age_years = p->age_years;
    }
    /* presumption of minority: no known age means treated as a child */
    facts->is_minor = !facts->has_age || facts->age_years < INTAKE_ADULT_AGE;
    return NRM_OK;
}

nrm_status_t intake_check_report(const Nrm__V1__SubmitReport *r, nrm_config_t *config,
                                 int64_t now_ms, intake_facts_t *facts, nrm_error_t *err)
{
    memset(facts, 0, sizeof *facts);
    if (nrm_check_text(err, "submit_report.region", r->region, 16, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    if (!nrm_config_region_known(config, r->region))
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "submit_report.region",
                        "region is not one of the configured regions");
    if (r->identified_at_ms <= 0)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "submit_report.identified_at_ms",
                        "identified_at_ms is required");
    if (r->identified_at_ms > now_ms + INTAKE_CLOCK_SKEW_MS)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "submit_report.identified_at_ms",
                        "identified_at_ms is in the future");
    if (s_check_person(r->person, r->identified_at_ms, facts, err) != NRM_OK ||
        s_check_profile(r->profile, facts, err) != NRM_OK ||
        s_check_enum_list(err, "submit_report.exploitation_types",
                          &nrm__v1__exploitation_type__descriptor,
                          (const int *)r->exploitation_types, r->n_exploitation_types,
                          INTAKE_MAX_TYPES) != NRM_OK ||
        nrm_check_country(err, "submit_report.country_of_exploitation", r->country_of_exploitation,
                          false) != NRM_OK ||
        s_check_enum_list(err, "submit_report.needs", &nrm__v1__service_type__descriptor,
                          (const int *)r->needs, r->n_needs, INTAKE_MAX_TYPES) != NRM_OK ||
        nrm_check_enum(err, "submit_report.urgency", &nrm__v1__urgency__descriptor, r->urgency,
                       true) != NRM_OK ||
        nrm_check_enum(err, "submit_report.safety_risk", &nrm__v1__safety_risk__descriptor,
                       r->safety_risk, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    return nrm_check_text(err, "submit_report.notes", r->notes, INTAKE_MAX_NOTES, false);
}

nrm_status_t intake_check_update(const Nrm__V1__UpdateCase *u, nrm_error_t *err)
{
    if (nrm_check_text(err, "update_case.case_id", u->case_id, 64, true) != NRM_OK ||
        s_check_enum_list(err, "update_case.add_needs", &nrm__v1__service_type__descriptor,
                          (const int *)u->add_needs, u->n_add_needs, INTAKE_MAX_TYPES) != NRM_OK ||
        nrm_check_enum(err, "update_case.urgency", &nrm__v1__urgency__descriptor, u->urgency,
                       true) != NRM_OK ||
        nrm_check_enum(err, "update_case.safety_risk", &nrm__v1__safety_risk__descriptor,
                       u->safety_risk, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    return NRM_OK;
}

nrm_status_t intake_check_close(const Nrm__V1__CloseCase *c, nrm_error_t *err)
{
    if (nrm_check_text(err, "close_case.case_id", c->case_id, 64, true) != NRM_OK)
        return NRM_INVALID_ARGUMENT;
    for (size_t i = 0; s_close_reasons[i]; i++)
        if (strcmp(c->reason, s_close_reasons[i]) == 0)
            return NRM_OK;
    return nrm_fail(err, NRM_INVALID_ARGUMENT, "close_case.reason",
                    "reason must be one of reintegrated, returned, transferred, lost_contact, "
                    "not_a_victim, duplicate, deceased, other, declined_assistance");
}
