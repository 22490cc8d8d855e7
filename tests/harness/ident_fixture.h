/* Helpers for the identification tests (issue 15): the data standard's case fields and the
 * screening answers of a report, the case events of one case, and requests about a case. */
#ifndef NRM_IDENT_FIXTURE_H
#define NRM_IDENT_FIXTURE_H

#include <stdbool.h>
#include "harness.h"
#include "scenario.h"

#define IDENT_WAIT_MS 8000
#define IDENT_MAX_ANSWERS 28

/* The case fields and answers of one report or update (the caller's, on its stack). */
typedef struct {
    Nrm__V1__TraffickingFacts facts;
    Nrm__V1__ExploitationPeriod period;
    Nrm__V1__MeansOfControl means[4];
    char *transit[4];
    Nrm__V1__IndicatorAnswer answers[IDENT_MAX_ANSWERS];
    Nrm__V1__IndicatorAnswer *answer_ptrs[IDENT_MAX_ANSWERS];
    size_t n_answers;
} ident_facts_t;

/* Empty fields, no answers. */
void ident_facts_init(ident_facts_t *f);

/* Every field set, valid: debt bondage and withheld documents, a job offer from a stranger,
 * agriculture, from March 2024 to an unknown month of 2025, through NE and DZ. */
void ident_facts_full(ident_facts_t *f);

/* Adds an answer (id a literal). */
void ident_answer(ident_facts_t *f, const char *indicator_id, bool present);

/* Puts the fields and answers on the report. */
void ident_attach(scenario_report_t *s, ident_facts_t *f);

/* The next event about case_id whose topic starts with prefix (others skipped), or NULL after
 * timeout_ms. Caller frees. */
Nrm__V1__Event *ident_next(harness_sub_t *sub, const char *prefix, const char *case_id,
                           int timeout_ms);

/* Sends DecideStatus as agency; returns the status, field copied (72 bytes) when not NULL. */
Nrm__V1__Status ident_decide(harness_t *h, const char *agency, const char *case_id,
                             Nrm__V1__TraffickingStatus status, const char *basis, char *field);

/* Sends CloseCase as agency; returns the status, field copied (72 bytes) when not NULL. */
Nrm__V1__Status ident_close(harness_t *h, const char *agency, const char *case_id,
                            const char *reason, char *field);

#endif
