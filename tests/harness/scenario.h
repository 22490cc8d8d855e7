/* Builders of realistic requests for the integration tests. Every builder fills a struct the
 * caller owns (on its stack); strings point at literals or the caller's buffers. */
#ifndef NRM_SCENARIO_H
#define NRM_SCENARIO_H

#include "nrm/v1/api.pb-c.h"

/* A report with its parts, ready to send. */
typedef struct {
    Nrm__V1__Request request;
    Nrm__V1__SubmitReport report;
    Nrm__V1__PersonalData person;
    Nrm__V1__Profile profile;
    Nrm__V1__ServiceType needs[8];
    Nrm__V1__ExploitationType types[4];
    char *languages[4];
} scenario_report_t;

/* An adult woman from Nigeria identified in region, forced labour, needing shelter and medical
 * care, consenting; full_name and date_of_birth identify her. */
void scenario_adult_woman(scenario_report_t *s, const char *region, const char *full_name,
                          const char *date_of_birth);

/* A request wrapping a body of the given case. */
void scenario_request(Nrm__V1__Request *req, Nrm__V1__Request__BodyCase body, void *message);

#endif
