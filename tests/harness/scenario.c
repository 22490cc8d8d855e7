#include "scenario.h"
#include "nrm_time.h"

#define S_HOUR_MS 3600000

void scenario_adult_woman(scenario_report_t *s, const char *region, const char *full_name,
                          const char *date_of_birth)
{
    nrm__v1__request__init(&s->request);
    nrm__v1__submit_report__init(&s->report);
    nrm__v1__personal_data__init(&s->person);
    nrm__v1__profile__init(&s->profile);
    s->person.full_name = (char *)full_name;
    s->person.date_of_birth = (char *)date_of_birth;
    s->person.phone = "+212 600 000 111";
    s->person.document_number = "PASS-A1234567";
    s->profile.age_years = 29;
    s->profile.gender = NRM__V1__GENDER__GENDER_FEMALE;
    s->profile.nationality = "NG";
    s->languages[0] = "en";
    s->languages[1] = "fr";
    s->profile.languages = s->languages;
    s->profile.n_languages = 2;
    s->needs[0] = NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER;
    s->needs[1] = NRM__V1__SERVICE_TYPE__SERVICE_TYPE_MEDICAL;
    s->types[0] = NRM__V1__EXPLOITATION_TYPE__EXPLOITATION_TYPE_FORCED_LABOUR;
    s->report.region = (char *)region;
    s->report.identified_at_ms = nrm_now_ms() - S_HOUR_MS;
    s->report.person = &s->person;
    s->report.profile = &s->profile;
    s->report.exploitation_types = s->types;
    s->report.n_exploitation_types = 1;
    s->report.country_of_exploitation = "MA";
    s->report.needs = s->needs;
    s->report.n_needs = 2;
    s->report.urgency = NRM__V1__URGENCY__URGENCY_URGENT;
    s->report.safety_risk = NRM__V1__SAFETY_RISK__SAFETY_RISK_MEDIUM;
    s->report.consent_to_referral = 1;
    s->report.consent_to_data_sharing = 1;
    s->report.notes = "Met at the farm gate; speaks of her employer keeping her passport.";
    scenario_request(&s->request, NRM__V1__REQUEST__BODY_SUBMIT_REPORT, &s->report);
}

void scenario_request(Nrm__V1__Request *req, Nrm__V1__Request__BodyCase body, void *message)
{
    req->body_case = body;
    /* every body member of the oneof shares one pointer slot in the generated union */
    req->submit_report = message;
}
