#include "ident_fixture.h"
#include "authz_fixture.h"

#include <string.h>

void ident_facts_init(ident_facts_t *f)
{
    memset(f, 0, sizeof *f);
    nrm__v1__trafficking_facts__init(&f->facts);
    nrm__v1__exploitation_period__init(&f->period);
    f->facts.means_of_control = f->means;
    f->facts.countries_of_transit = f->transit;
    for (size_t i = 0; i < IDENT_MAX_ANSWERS; i++) {
        nrm__v1__indicator_answer__init(&f->answers[i]);
        f->answer_ptrs[i] = &f->answers[i];
    }
}

void ident_facts_full(ident_facts_t *f)
{
    ident_facts_init(f);
    f->means[0] = NRM__V1__MEANS_OF_CONTROL__MEANS_OF_CONTROL_DEBT_BONDAGE;
    f->means[1] = NRM__V1__MEANS_OF_CONTROL__MEANS_OF_CONTROL_WITHHELD_DOCUMENTS;
    f->facts.n_means_of_control = 2;
    f->facts.recruitment_type = NRM__V1__RECRUITMENT_TYPE__RECRUITMENT_TYPE_JOB_OFFER;
    f->facts.labour_sector = NRM__V1__LABOUR_SECTOR__LABOUR_SECTOR_AGRICULTURE;
    f->facts.recruiter_relation = NRM__V1__RECRUITER_RELATION__RECRUITER_RELATION_STRANGER;
    f->period.start_year = 2024;
    f->period.start_month = 3;
    f->period.end_year = 2025;
    f->facts.exploitation_period = &f->period;
    f->transit[0] = "NE";
    f->transit[1] = "DZ";
    f->facts.n_countries_of_transit = 2;
}

void ident_answer(ident_facts_t *f, const char *indicator_id, bool present)
{
    if (f->n_answers == IDENT_MAX_ANSWERS)
        return;
    f->answers[f->n_answers].indicator_id = (char *)indicator_id;
    f->answers[f->n_answers].present = present;
    f->n_answers++;
}

void ident_attach(scenario_report_t *s, ident_facts_t *f)
{
    s->report.facts = &f->facts;
    s->report.screening_answers = f->answer_ptrs;
    s->report.n_screening_answers = f->n_answers;
}

Nrm__V1__Event *ident_next(harness_sub_t *sub, const char *prefix, const char *case_id,
                           int timeout_ms)
{
    for (;;) {
        Nrm__V1__Event *ev = harness_sub_next(sub, prefix, timeout_ms);
        if (!ev || strcmp(ev->case_id, case_id) == 0)
            return ev;
        nrm__v1__event__free_unpacked(ev, NULL);
    }
}

Nrm__V1__Status ident_decide(harness_t *h, const char *agency, const char *case_id,
                             Nrm__V1__TraffickingStatus status, const char *basis, char *field)
{
    Nrm__V1__DecideStatus d = NRM__V1__DECIDE_STATUS__INIT;
    d.case_id = (char *)case_id;
    d.status = status;
    d.basis = (char *)basis;
    return authz_fixture_call(h, "intake", agency, NRM__V1__REQUEST__BODY_DECIDE_STATUS, &d, field);
}

Nrm__V1__Status ident_close(harness_t *h, const char *agency, const char *case_id,
                            const char *reason, char *field)
{
    Nrm__V1__CloseCase c = NRM__V1__CLOSE_CASE__INIT;
    c.case_id = (char *)case_id;
    c.reason = (char *)reason;
    return authz_fixture_call(h, "intake", agency, NRM__V1__REQUEST__BODY_CLOSE_CASE, &c, field);
}
