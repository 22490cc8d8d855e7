#include "nrm_authz.h"

#include <string.h>

#define S_COORDINATOR NRM_ROLE_COORDINATOR
#define S_MANAGER NRM_ROLE_CASE_MANAGER
#define S_PROVIDER NRM_ROLE_REFERRED_PROVIDER
#define S_OPERATOR NRM_ROLE_SHELTER_OPERATOR
#define S_SUBSCRIBER NRM_ROLE_SUBSCRIPTION_AGENCY
#define S_PLAN_MANAGER NRM_ROLE_PLAN_MANAGER
#define S_PARTNER NRM_ROLE_RECEPTION_PARTNER
#define S_STATS_READER NRM_ROLE_STATS_READER
#define S_MESSAGE_MAX 160
#define S_PATH_MAX 128

/* The agency types competent to decide a person's status, unless the configuration names
 * others (NRM_AUTHZ_STATUS_DECIDERS). */
static const char *const s_status_deciders[] = {"JUDICIARY", "LAW_ENFORCEMENT",
                                                NRM_AUTHZ_COORDINATOR_TYPE, NULL};

/* The matrix. A request absent from it is refused to everyone. */
static const nrm_authz_rule_t s_rules[] = {
    {NRM__V1__REQUEST__BODY_SUBMIT_REPORT, "intake", NULL, NRM_ROLE_ANY_AGENCY, NULL,
     "the sender becomes the case manager of a case it opens, a reporter (no power) of a case "
     "its report links to"},
    {NRM__V1__REQUEST__BODY_UPDATE_CASE, "intake", "update_case.case_id", S_COORDINATOR | S_MANAGER,
     NULL, ""},
    {NRM__V1__REQUEST__BODY_WITHDRAW_CONSENT, "intake", "withdraw_consent.case_id",
     S_COORDINATOR | S_MANAGER, NULL, ""},
    {NRM__V1__REQUEST__BODY_CLOSE_CASE, "intake", "close_case.case_id", S_COORDINATOR | S_MANAGER,
     NULL, ""},
    {NRM__V1__REQUEST__BODY_REASSIGN_CASE, "intake", NULL, S_COORDINATOR, NULL,
     "the new case manager must be a configured agency"},
    {NRM__V1__REQUEST__BODY_DECIDE_STATUS, "intake", "decide_status.case_id", 0, s_status_deciders,
     "a competent authority: the agency types `intake.status_deciders` names (by default "
     "JUDICIARY, LAW_ENFORCEMENT, COORDINATOR), whatever their relation to the case"},
    {NRM__V1__REQUEST__BODY_GET_CASE, "intake", "get_case.case_id",
     S_COORDINATOR | S_MANAGER | NRM_ROLE_REPORTER, NULL, "categorical data only"},
    {NRM__V1__REQUEST__BODY_LIST_CASES, "intake", "list_cases", S_COORDINATOR | S_MANAGER, NULL,
     "a case manager (an agency managing a case) lists its own cases; a coordinator lists all"},
    {NRM__V1__REQUEST__BODY_GET_IDENTITY, "intake", "get_identity.case_id",
     S_COORDINATOR | S_MANAGER | S_PROVIDER, NULL,
     "the referred provider: one whose referral for the case is accepted (not completed, revoked "
     "or otherwise ended), while the person consents to data sharing, or a child-protection "
     "provider of a minor regardless of consent; every disclosure is audited and published as "
     "case.identity_disclosed; never after erasure"},
    {NRM__V1__REQUEST__BODY_ERASE_IDENTITY, "intake", NULL, S_COORDINATOR, NULL,
     "destroys the case's data key and identity hash; the categorical record, events and audit "
     "stay"},
    {NRM__V1__REQUEST__BODY_RESPOND_TO_REFERRAL, "routing", "respond_to_referral.referral_id",
     S_COORDINATOR | S_PROVIDER, NULL, ""},
    {NRM__V1__REQUEST__BODY_COMPLETE_REFERRAL, "routing", "complete_referral.referral_id",
     S_COORDINATOR | S_PROVIDER, NULL, ""},
    {NRM__V1__REQUEST__BODY_LIST_REFERRALS, "routing", "list_referrals.case_id",
     S_COORDINATOR | S_MANAGER | NRM_ROLE_REPORTER | S_PROVIDER, NULL,
     "with a case_id: that case's referrals, a provider its own only; without: a provider's "
     "inbox, its managed and reported cases' (any agency, empty when it has none); a "
     "coordinator all"},
    {NRM__V1__REQUEST__BODY_UPSERT_PROVIDER, "routing", NULL, S_COORDINATOR, NULL,
     "the provider must be a configured agency; effective at once in every routing instance"},
    {NRM__V1__REQUEST__BODY_LIST_PROVIDERS, "routing", NULL, S_COORDINATOR, NULL, ""},
    {NRM__V1__REQUEST__BODY_UPSERT_AGREEMENT, "routing", NULL, S_COORDINATOR, NULL,
     "the provider must be in the directory; an agreement's provider never changes"},
    {NRM__V1__REQUEST__BODY_LIST_AGREEMENTS, "routing", NULL, S_COORDINATOR, NULL, ""},
    {NRM__V1__REQUEST__BODY_UPSERT_SHELTER, "shelter", "upsert_shelter.shelter_id",
     S_COORDINATOR | S_OPERATOR, NULL,
     "a new shelter is registered by a coordinator; its operator changes its own shelter but not "
     "its operator_agency_id"},
    {NRM__V1__REQUEST__BODY_CONFIRM_ARRIVAL, "shelter", "confirm_arrival.allocation_id",
     S_COORDINATOR | S_OPERATOR, NULL, ""},
    {NRM__V1__REQUEST__BODY_RELEASE_BED, "shelter", "release_bed.allocation_id",
     S_COORDINATOR | S_OPERATOR, NULL, "the case manager frees a bed by closing the case"},
    {NRM__V1__REQUEST__BODY_GET_OCCUPANCY, "shelter", "get_occupancy", S_COORDINATOR | S_OPERATOR,
     NULL, "an operator (an agency operating a shelter) sees its own shelters only"},
    {NRM__V1__REQUEST__BODY_LIST_ALLOCATIONS, "shelter", "list_allocations.case_id",
     S_COORDINATOR | S_MANAGER | S_OPERATOR, NULL,
     "an operator sees its shelters' allocations, a case manager its cases' (and their waitlist "
     "places); with a shelter_id: its operator; without case_id or shelter_id: any agency, its "
     "own (empty when none); a coordinator all"},
    {NRM__V1__REQUEST__BODY_REQUEST_BED, "shelter", "request_bed.case_id",
     S_COORDINATOR | S_MANAGER, NULL,
     "asks for a bed again (after a no_show) with the case's last request; refused while the "
     "case holds a bed or waits for one, is closed, or its consent was withdrawn"},
    {NRM__V1__REQUEST__BODY_UPSERT_SUBSCRIPTION, "notify", "upsert_subscription.agency_id",
     S_COORDINATOR | S_SUBSCRIBER, NULL,
     "the subscription's agency: the one it names and, for an existing one, the one it belongs "
     "to; which topics it may follow is checked on top"},
    {NRM__V1__REQUEST__BODY_LIST_DELIVERIES, "notify", NULL, NRM_ROLE_ANY_AGENCY, NULL,
     "an agency lists its own deliveries only; a coordinator lists all"},
    {NRM__V1__REQUEST__BODY_RETRY_DELIVERY, "notify", "retry_delivery.delivery_id",
     S_COORDINATOR | S_SUBSCRIBER, NULL, "the subscription's agency: the delivery's agency"},
    {NRM__V1__REQUEST__BODY_OPEN_PLAN, "reintegration", "open_plan.case_id",
     S_COORDINATOR | S_MANAGER, NULL,
     "the plan's manager is the agency it names or else the case manager"},
    {NRM__V1__REQUEST__BODY_UPSERT_GOAL, "reintegration", "upsert_goal.plan_id",
     S_COORDINATOR | S_PLAN_MANAGER, NULL, ""},
    {NRM__V1__REQUEST__BODY_RECORD_RETURN, "reintegration", "record_return.plan_id",
     S_COORDINATOR | S_PLAN_MANAGER, NULL, ""},
    {NRM__V1__REQUEST__BODY_RECORD_FOLLOW_UP, "reintegration", "record_follow_up.plan_id",
     S_COORDINATOR | S_PLAN_MANAGER | S_PARTNER, NULL,
     "the reception partner of a return reports once the arrival is confirmed"},
    {NRM__V1__REQUEST__BODY_CLOSE_PLAN, "reintegration", "close_plan.plan_id",
     S_COORDINATOR | S_PLAN_MANAGER, NULL, ""},
    {NRM__V1__REQUEST__BODY_GET_PLAN, "reintegration", "get_plan.plan_id",
     S_COORDINATOR | S_MANAGER | S_PLAN_MANAGER | S_PARTNER, NULL, ""},
    {NRM__V1__REQUEST__BODY_LIST_PLANS, "reintegration", NULL, NRM_ROLE_ANY_AGENCY, NULL,
     "an agency lists the plans it manages only; a coordinator lists all"},
    {NRM__V1__REQUEST__BODY_REASSIGN_PLAN, "reintegration", NULL, S_COORDINATOR, NULL,
     "the new manager must be a configured agency"},
    {NRM__V1__REQUEST__BODY_UPSERT_AGENCY, "intake", NULL, S_COORDINATOR, NULL,
     "registers, changes or deactivates a run-time agency and its public keys, in force in "
     "every service within a second; agencies of the configuration file are changed there"},
    {NRM__V1__REQUEST__BODY_LIST_AGENCIES, "intake", NULL, S_COORDINATOR, NULL,
     "the configuration file's agencies and the run-time directory's"},
    {NRM__V1__REQUEST__BODY_RESOLVE_DUPLICATE, "intake", NULL, S_COORDINATOR, NULL,
     "confirms (the newer case is closed as duplicate) or dismisses a proposed possible "
     "duplicate"},
    {NRM__V1__REQUEST__BODY_GET_STATISTICS, "stats", "get_statistics.measure",
     S_COORDINATOR | S_STATS_READER, NULL,
     "the object is the measure: `stats.readers` grants agency types or ids some measures (or "
     "all); small cells are suppressed for every reader"},
    {NRM__V1__REQUEST__BODY_EXPORT_CASES, "stats", NULL, S_COORDINATOR, NULL,
     "case-level data, categorical and k-anonymous"},
    {NRM__V1__REQUEST__BODY_PING, "any", NULL, NRM_ROLE_ANYONE, NULL, "any authenticated peer"},
    {NRM__V1__REQUEST__BODY_FETCH, "any", NULL, NRM_ROLE_SERVICE | NRM_ROLE_EVENT_READER, NULL,
     "services and the agencies security.event_readers names (default: type COORDINATOR); the "
     "same rule admits subscribers to events sockets"},
    {NRM__V1__REQUEST__BODY_LIST_QUARANTINE, "any", NULL, S_COORDINATOR, NULL,
     "the events the service's consumers set aside after failing to apply them"},
    {NRM__V1__REQUEST__BODY_RETRY_QUARANTINED, "any", NULL, S_COORDINATOR, NULL,
     "applies a set-aside event again once its cause is fixed"},
};
#define S_RULE_COUNT (sizeof s_rules / sizeof s_rules[0])

/* Rules whose agency types the configuration names (the rule's agency_types are the default). */
static const struct {
    Nrm__V1__Request__BodyCase body;
    const char *setting;
} s_type_settings[] = {
    {NRM__V1__REQUEST__BODY_DECIDE_STATUS, NRM_AUTHZ_STATUS_DECIDERS},
};

const char *nrm_authz_types_setting(const nrm_authz_rule_t *rule)
{
    for (size_t i = 0; rule && i < sizeof s_type_settings / sizeof s_type_settings[0]; i++)
        if (s_type_settings[i].body == rule->body)
            return s_type_settings[i].setting;
    return NULL;
}

static const nrm_authz_column_t s_columns[] = {
    {NRM_ROLE_COORDINATOR, "coordinator"},
    {NRM_ROLE_CASE_MANAGER, "case manager"},
    {NRM_ROLE_REPORTER, "reporter"},
    {NRM_ROLE_REFERRED_PROVIDER, "referred provider"},
    {NRM_ROLE_SHELTER_OPERATOR, "shelter operator"},
    {NRM_ROLE_SUBSCRIPTION_AGENCY, "subscription's agency"},
    {NRM_ROLE_PLAN_MANAGER, "plan manager"},
    {NRM_ROLE_RECEPTION_PARTNER, "reception partner"},
    {NRM_ROLE_STATS_READER, "statistics reader"},
    {NRM_ROLE_SERVICE, "service"},
    {NRM_ROLE_ANY_AGENCY, "other agency"},
};
#define S_COLUMN_COUNT (sizeof s_columns / sizeof s_columns[0])

const nrm_authz_rule_t *nrm_authz_rules(size_t *n)
{
    *n = S_RULE_COUNT;
    return s_rules;
}

const nrm_authz_rule_t *nrm_authz_rule(Nrm__V1__Request__BodyCase body)
{
    for (size_t i = 0; i < S_RULE_COUNT; i++)
        if (s_rules[i].body == body)
            return &s_rules[i];
    return NULL;
}

const nrm_authz_column_t *nrm_authz_columns(size_t *n)
{
    *n = S_COLUMN_COUNT;
    return s_columns;
}

const char *nrm_authz_body_name(Nrm__V1__Request__BodyCase body)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&nrm__v1__request__descriptor, (unsigned)body);
    return f ? f->name : "none";
}

/* True when type is one of the NULL-terminated list. */
static bool s_type_listed(const char *const *types, const char *type)
{
    for (size_t i = 0; types && type && types[i]; i++)
        if (strcmp(types[i], type) == 0)
            return true;
    return false;
}

/* True when the JSON array list holds the string s. */
static bool s_json_lists(const json_t *list, const char *s);

/* The configured list of agency types of the rule, or NULL when it has none (defaults). */
static const json_t *s_configured_types(const nrm_config_t *config, const nrm_authz_rule_t *rule)
{
    const char *setting = nrm_authz_types_setting(rule);
    if (!config || !setting)
        return NULL;
    const json_t *list = nrm_config_get(config, setting);
    return json_is_array(list) ? list : NULL;
}

bool nrm_authz_allows_in(const nrm_config_t *config, const nrm_authz_rule_t *rule, unsigned roles,
                         const char *agency_type)
{
    if (!rule)
        return false;
    if (rule->roles & roles)
        return true;
    if (!(roles & NRM_ROLE_ANY_AGENCY) || !agency_type)
        return false;
    const json_t *configured = s_configured_types(config, rule);
    return configured ? s_json_lists(configured, agency_type)
                      : s_type_listed(rule->agency_types, agency_type);
}

bool nrm_authz_allows(const nrm_authz_rule_t *rule, unsigned roles, const char *agency_type)
{
    return nrm_authz_allows_in(NULL, rule, roles, agency_type);
}

bool nrm_authz_cell(const nrm_authz_rule_t *rule, unsigned role)
{
    unsigned roles = NRM_ROLE_ANYONE | role;
    if (role != NRM_ROLE_SERVICE)
        roles |= NRM_ROLE_ANY_AGENCY;
    if (role == NRM_ROLE_COORDINATOR) /* the default event readers */
        roles |= NRM_ROLE_EVENT_READER;
    return nrm_authz_allows(rule, roles,
                            role == NRM_ROLE_COORDINATOR ? NRM_AUTHZ_COORDINATOR_TYPE : NULL);
}

/* True when agency_id is "service:<name>" of a service of the configuration. */
static bool s_service_identity(const nrm_config_t *config, const char *agency_id)
{
    size_t prefix = strlen(NRM_AUTHZ_SERVICE_PREFIX);
    if (!agency_id || strncmp(agency_id, NRM_AUTHZ_SERVICE_PREFIX, prefix) != 0 ||
        !agency_id[prefix] || strchr(agency_id + prefix, '.'))
        return false;
    char path[S_PATH_MAX];
    if (snprintf(path, sizeof path, "services.%s", agency_id + prefix) >= (int)sizeof path)
        return false;
    return nrm_config_get(config, path) != NULL;
}

const char *nrm_authz_sender_type(const nrm_config_t *config, const char *agency_id)
{
    if (s_service_identity(config, agency_id))
        return NRM_AUTHZ_SERVICE_TYPE;
    return nrm_config_agency_type(config, agency_id);
}

/* True when the JSON array list holds the string s. */
static bool s_json_lists(const json_t *list, const char *s)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *v = json_string_value(item);
        if (v && s && strcmp(v, s) == 0)
            return true;
    }
    return false;
}

bool nrm_authz_event_reader(const nrm_config_t *config, const char *agency_id,
                            const char *agency_type)
{
    if (agency_type && strcmp(agency_type, NRM_AUTHZ_SERVICE_TYPE) == 0)
        return s_service_identity(config, agency_id);
    if (!agency_type || !agency_type[0] || !nrm_config_agency(config, agency_id))
        return false;
    const json_t *readers = nrm_config_get(config, "security.event_readers");
    if (!json_is_object(readers))
        return strcmp(agency_type, NRM_AUTHZ_COORDINATOR_TYPE) == 0;
    return s_json_lists(json_object_get(readers, "agency_types"), agency_type) ||
           s_json_lists(json_object_get(readers, "agency_ids"), agency_id);
}

unsigned nrm_authz_sender_roles(const nrm_config_t *config, const char *agency_id,
                                const char *agency_type)
{
    unsigned roles = NRM_ROLE_ANYONE;
    if (!agency_type || !agency_type[0])
        return roles;
    if (strcmp(agency_type, NRM_AUTHZ_SERVICE_TYPE) == 0)
        return s_service_identity(config, agency_id) ? roles | NRM_ROLE_SERVICE : roles;
    if (!nrm_config_agency(config, agency_id))
        return roles;
    roles |= NRM_ROLE_ANY_AGENCY;
    if (strcmp(agency_type, NRM_AUTHZ_COORDINATOR_TYPE) == 0)
        roles |= NRM_ROLE_COORDINATOR;
    if (nrm_authz_event_reader(config, agency_id, agency_type))
        roles |= NRM_ROLE_EVENT_READER;
    return roles;
}

/* "close_case is for: coordinator, case manager" into buf. */
static const char *s_denial(const nrm_authz_rule_t *rule, Nrm__V1__Request__BodyCase body,
                            char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "%s is for: ", nrm_authz_body_name(body));
    const char *sep = "";
    for (size_t i = 0; rule && i < S_COLUMN_COUNT && used < size; i++) {
        if (!(rule->roles & s_columns[i].role) || s_columns[i].role == NRM_ROLE_ANY_AGENCY)
            continue;
        used += (size_t)snprintf(buf + used, size - used, "%s%s", sep, s_columns[i].title);
        sep = ", ";
    }
    if (rule && (rule->roles & NRM_ROLE_ANY_AGENCY) && used < size)
        used += (size_t)snprintf(buf + used, size - used, "%sany agency", sep);
    if (rule && (rule->roles & NRM_ROLE_EVENT_READER) && used < size)
        used += (size_t)snprintf(buf + used, size - used, "%sevent readers", sep);
    if (rule && nrm_authz_types_setting(rule) && used < size)
        snprintf(buf + used, size - used, "%sagencies of the types %s names", sep,
                 nrm_authz_types_setting(rule));
    else if (rule && rule->agency_types && used < size)
        snprintf(buf + used, size - used, "%sagencies of the listed types", sep);
    if (!rule)
        snprintf(buf, size, "%s is for nobody", nrm_authz_body_name(body));
    return buf;
}

nrm_status_t nrm_authz_precheck(const nrm_config_t *config, Nrm__V1__Request__BodyCase body,
                                const char *agency_id, const char *agency_type, nrm_error_t *err)
{
    const nrm_authz_rule_t *rule = nrm_authz_rule(body);
    unsigned roles = nrm_authz_sender_roles(config, agency_id, agency_type);
    if (rule && rule->object_field && (roles & NRM_ROLE_ANY_AGENCY))
        roles |= NRM_ROLE_RELATIONS; /* some object may relate the agency: the handler decides */
    if (nrm_authz_allows_in(config, rule, roles, agency_type))
        return NRM_OK;
    char message[S_MESSAGE_MAX];
    return nrm_fail(err, NRM_PERMISSION_DENIED, nrm_authz_body_name(body), "%s",
                    s_denial(rule, body, message, sizeof message));
}

nrm_status_t nrm_authz_check_at(nrm_call_t *call, unsigned relations, const char *field)
{
    Nrm__V1__Request__BodyCase body = call->request->body_case;
    const nrm_authz_rule_t *rule = nrm_authz_rule(body);
    unsigned roles = nrm_authz_sender_roles(call->config, call->agency_id, call->agency_type);
    if (roles & NRM_ROLE_ANY_AGENCY)
        roles |= relations & NRM_ROLE_RELATIONS;
    if (nrm_authz_allows_in(call->config, rule, roles, call->agency_type)) {
        call->authorized = true;
        return NRM_OK;
    }
    if (!field)
        field = rule && rule->object_field ? rule->object_field : nrm_authz_body_name(body);
    char message[S_MESSAGE_MAX];
    return nrm_fail(call->tx.err, NRM_PERMISSION_DENIED, field, "%s",
                    s_denial(rule, body, message, sizeof message));
}

nrm_status_t nrm_authz_check(nrm_call_t *call, unsigned relations)
{
    return nrm_authz_check_at(call, relations, NULL);
}

nrm_status_t nrm_authz_not_found(nrm_call_t *call, const char *field, const char *message)
{
    nrm_status_t st = nrm_authz_check_at(call, 0, field);
    if (st != NRM_OK)
        return st;
    return nrm_fail(call->tx.err, NRM_NOT_FOUND, field, "%s", message);
}

bool nrm_authz_sender_is(const nrm_call_t *call, nrm_role_t role)
{
    return (nrm_authz_sender_roles(call->config, call->agency_id, call->agency_type) & role) != 0;
}

void nrm_authz_markdown(FILE *out)
{
    fprintf(out, "| request | service |");
    for (size_t c = 0; c < S_COLUMN_COUNT; c++)
        fprintf(out, " %s |", s_columns[c].title);
    fprintf(out, " notes |\n|---|---|");
    for (size_t c = 0; c < S_COLUMN_COUNT; c++)
        fprintf(out, ":-:|");
    fprintf(out, "---|\n");
    for (size_t r = 0; r < S_RULE_COUNT; r++) {
        const nrm_authz_rule_t *rule = &s_rules[r];
        fprintf(out, "| `%s` | %s |", nrm_authz_body_name(rule->body), rule->service);
        for (size_t c = 0; c < S_COLUMN_COUNT; c++)
            fprintf(out, " %s |", nrm_authz_cell(rule, s_columns[c].role) ? "yes" : "-");
        fprintf(out, " %s", rule->note);
        if (!nrm_authz_types_setting(rule))
            for (size_t t = 0; rule->agency_types && rule->agency_types[t]; t++)
                fprintf(out, "%s%s", t ? ", " : "; also agencies of type ", rule->agency_types[t]);
        fprintf(out, " |\n");
    }
}
