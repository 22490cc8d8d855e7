/* The routing policy: which services a case gets, and how long a provider has to accept.
 *
 * "routing.policy" in the configuration:
 *   {"host_country": "MA",
 *    "deadlines_s": {"EMERGENCY": 7200, "URGENT": 86400, "ROUTINE": 259200},
 *    "rules": [{"id": "minor-child-protection", "services": ["CHILD_PROTECTION"],
 *               "when": {"is_minor": true}, "decision": "mandatory", "reason": "..."}, ...]}
 * For each service, the first rule that names it (a rule without "services" names them all)
 * and whose conditions all hold decides: "mandatory" (referred with or without consent),
 * "refer" (referred once the person consents) or "skip". No rule: not referred.
 * Conditions: is_minor, need_stated (the service is among the stated needs), host_national,
 * foreign_national (nationality equal to / other than host_country; unknown is neither),
 * language_gap (a provider chosen for the case speaks none of the person's languages),
 * pregnant, disability, accompanying_children (booleans); safety_risk_at_least,
 * urgency_at_least (names); exploitation_any (list of names); screening (list of
 * ScreeningOutcome names, "LIKELY", "POSSIBLE", "UNLIKELY", "NOT_SCREENED": the rule holds when
 * intake's screening of the case has one of them).
 *
 * Assistance is never conditional on cooperating with law enforcement: a policy that names
 * cooperation anywhere (any member whose name contains "cooperat") is refused at load, so
 * routing does not start, or keeps its previous policy on reload. */
#include "routing.h"
#include "nrm_alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_PATH 96
#define S_MS_PER_S 1000
#define S_MAX_DEADLINE_S (366 * 24 * 3600)
#define S_URGENCY_LIMIT 4 /* Urgency values are below this */
#define S_ANY (-1)        /* a boolean condition that is not set */
#define S_NO_RULE "no-rule"

/* The members a rule may have, each between spaces. */
static const char s_rule_keys[] = " id services when decision reason _comment ";

/* The default acceptance deadlines, in seconds, by Urgency value. */
static const int64_t s_default_deadline_s[S_URGENCY_LIMIT] = {
    [NRM__V1__URGENCY__URGENCY_ROUTINE] = 72 * 3600,
    [NRM__V1__URGENCY__URGENCY_URGENT] = 24 * 3600,
    [NRM__V1__URGENCY__URGENCY_EMERGENCY] = 2 * 3600,
};

/* The boolean conditions, in the order of s_rule_t.flags. */
typedef enum {
    S_IS_MINOR,
    S_NEED_STATED,
    S_HOST_NATIONAL,
    S_FOREIGN_NATIONAL,
    S_LANGUAGE_GAP,
    S_PREGNANT,
    S_DISABILITY,
    S_WITH_CHILDREN,
    S_FLAG_COUNT
} s_flag_t;

static const char *const s_flag_names[S_FLAG_COUNT] = {
    "is_minor",     "need_stated", "host_national", "foreign_national",
    "language_gap", "pregnant",    "disability",    "accompanying_children"};

typedef struct {
    char *id;
    char *reason;
    routing_set_t services; /* 0: every service */
    routing_verdict_t verdict;
    int flags[S_FLAG_COUNT];        /* S_ANY, 0 or 1 */
    int safety_risk_at_least;       /* 0: any */
    int urgency_at_least;           /* 0: any */
    routing_set_t exploitation_any; /* 0: any */
    routing_set_t screening_any;    /* ScreeningOutcome values; 0: any */
} s_rule_t;

struct routing_policy_t {
    s_rule_t *rules;
    size_t count;
    char host_country[3];
    int64_t deadline_ms[S_URGENCY_LIMIT];
};

void routing_policy_destroy(routing_policy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    routing_policy_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++) {
        free(self->rules[i].id);
        free(self->rules[i].reason);
    }
    free(self->rules);
    free(self);
    *self_p = NULL;
}

/* Writes "path.member" into buf (cut short if it does not fit) and returns buf. */
static const char *s_join(char *buf, size_t size, const char *path, const char *member)
{
    if (snprintf(buf, size, "%s.%s", path, member) >= (int)size)
        buf[size - 1] = '\0';
    return buf;
}

/* Reads the enum named by a JSON string (without prefix) into *out. Returns 0 or -1. */
static int s_enum_member(json_t *v, const ProtobufCEnumDescriptor *desc, const char *prefix,
                         const char *path, int *out, nrm_error_t *err)
{
    *out = routing_enum_value(desc, prefix, json_string_value(v));
    if (*out > 0)
        return 0;
    nrm_fail(err, NRM_FAILED_PRECONDITION, path, "%s is not a %s", path, desc->short_name);
    return -1;
}

/* Reads a JSON list of enum names into a set (which must not end up empty). Returns 0 or -1. */
static int s_enum_list(json_t *list, const ProtobufCEnumDescriptor *desc, const char *prefix,
                       const char *path, routing_set_t *out, nrm_error_t *err)
{
    *out = 0;
    size_t i;
    json_t *item;
    char at[S_PATH];
    json_array_foreach(list, i, item)
    {
        int v;
        snprintf(at, sizeof at, "%s[%zu]", path, i);
        if (s_enum_member(item, desc, prefix, at, &v, err) != 0)
            return -1;
        ROUTING_SET_ADD(*out, v);
    }
    if (*out != 0)
        return 0;
    nrm_fail(err, NRM_FAILED_PRECONDITION, path, "%s must be a non-empty list", path);
    return -1;
}

/* Reads one condition of a rule's "when". Returns 0, or -1 for an unknown or bad one. */
static int s_condition(s_rule_t *rule, const char *key, json_t *value, const char *path,
                       nrm_error_t *err)
{
    for (int f = 0; f < S_FLAG_COUNT; f++) {
        if (strcmp(key, s_flag_names[f]) != 0)
            continue;
        if (!json_is_boolean(value))
            break;
        rule->flags[f] = json_is_true(value);
        return 0;
    }
    if (strcmp(key, "safety_risk_at_least") == 0)
        return s_enum_member(value, &nrm__v1__safety_risk__descriptor, "SAFETY_RISK_", path,
                             &rule->safety_risk_at_least, err);
    if (strcmp(key, "urgency_at_least") == 0)
        return s_enum_member(value, &nrm__v1__urgency__descriptor, "URGENCY_", path,
                             &rule->urgency_at_least, err);
    if (strcmp(key, "exploitation_any") == 0 && json_is_array(value))
        return s_enum_list(value, &nrm__v1__exploitation_type__descriptor, "EXPLOITATION_TYPE_",
                           path, &rule->exploitation_any, err);
    if (strcmp(key, "screening") == 0 && json_is_array(value))
        return s_enum_list(value, &nrm__v1__screening_outcome__descriptor, "SCREENING_OUTCOME_",
                           path, &rule->screening_any, err);
    if (strcmp(key, "screening") == 0 && json_is_string(value)) {
        int v;
        if (s_enum_member(value, &nrm__v1__screening_outcome__descriptor, "SCREENING_OUTCOME_",
                          path, &v, err) != 0)
            return -1;
        ROUTING_SET_ADD(rule->screening_any, v);
        return 0;
    }
    nrm_fail(err, NRM_FAILED_PRECONDITION, path, "%s is not a known condition of this form", path);
    return -1;
}

/* Reads one rule. Returns 0, or -1 with err naming the field. */
static int s_rule_read(json_t *entry, const char *path, s_rule_t *rule, nrm_error_t *err)
{
    char at[S_PATH];
    for (int f = 0; f < S_FLAG_COUNT; f++)
        rule->flags[f] = S_ANY;
    const char *id = json_string_value(json_object_get(entry, "id"));
    const char *reason = json_string_value(json_object_get(entry, "reason"));
    const char *decision = json_string_value(json_object_get(entry, "decision"));
    if (!id || !id[0] || !reason || !reason[0] || strlen(reason) >= ROUTING_REASON_MAX / 2) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, path,
                 "%s needs an id and a short human-readable reason", path);
        return -1;
    }
    rule->id = nrm_xstrdup(id);
    rule->reason = nrm_xstrdup(reason);
    if (decision && strcmp(decision, "mandatory") == 0)
        rule->verdict = ROUTING_MANDATORY;
    else if (decision && strcmp(decision, "refer") == 0)
        rule->verdict = ROUTING_REFER;
    else if (decision && strcmp(decision, "skip") == 0)
        rule->verdict = ROUTING_SKIP;
    else {
        s_join(at, sizeof at, path, "decision");
        nrm_fail(err, NRM_FAILED_PRECONDITION, at, "%s must be mandatory, refer or skip", at);
        return -1;
    }
    json_t *services = json_object_get(entry, "services");
    s_join(at, sizeof at, path, "services");
    if (services && !json_is_array(services)) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, at, "%s must be a list of services", at);
        return -1;
    }
    if (services && s_enum_list(services, &nrm__v1__service_type__descriptor, "SERVICE_TYPE_", at,
                                &rule->services, err) != 0)
        return -1;
    const char *key;
    json_t *value;
    json_object_foreach(entry, key, value)
    {
        char spaced[S_PATH];
        snprintf(spaced, sizeof spaced, " %s ", key);
        if (!strstr(s_rule_keys, spaced) || strchr(key, ' ')) {
            s_join(at, sizeof at, path, key);
            nrm_fail(err, NRM_FAILED_PRECONDITION, at, "%s is not a member of a rule", at);
            return -1;
        }
    }
    json_t *when = json_object_get(entry, "when");
    if (when && !json_is_object(when)) {
        s_join(at, sizeof at, path, "when");
        nrm_fail(err, NRM_FAILED_PRECONDITION, at, "%s must be an object of conditions", at);
        return -1;
    }
    json_object_foreach(when, key, value)
    {
        char when_path[S_PATH];
        s_join(at, sizeof at, s_join(when_path, sizeof when_path, path, "when"), key);
        if (s_condition(rule, key, value, at, err) != 0)
            return -1;
    }
    return 0;
}

/* Sets the deadlines: routing.deadlines_s.<URGENCY> (or its environment override) first, then
 * the policy's deadlines_s, then the defaults. Returns 0, or -1 for a bad value. */
static int s_deadlines(routing_policy_t *self, nrm_config_t *config, json_t *policy,
                       nrm_error_t *err)
{
    for (int u = 1; u < S_URGENCY_LIMIT; u++) {
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(&nrm__v1__urgency__descriptor, u);
        const char *name = v->name + strlen("URGENCY_");
        json_t *in_policy = json_object_get(json_object_get(policy, "deadlines_s"), name);
        int64_t dflt = json_is_integer(in_policy) ? (int64_t)json_integer_value(in_policy)
                                                  : s_default_deadline_s[u];
        char path[S_PATH];
        snprintf(path, sizeof path, "routing.deadlines_s.%s", name);
        int64_t seconds = nrm_config_int(config, path, dflt);
        if (seconds < 1 || seconds > S_MAX_DEADLINE_S ||
            (in_policy && !json_is_integer(in_policy))) {
            nrm_fail(err, NRM_FAILED_PRECONDITION, path,
                     "the %s deadline must be a number of seconds from 1 to %d", name,
                     S_MAX_DEADLINE_S);
            return -1;
        }
        self->deadline_ms[u] = seconds * S_MS_PER_S;
    }
    self->deadline_ms[0] = self->deadline_ms[NRM__V1__URGENCY__URGENCY_ROUTINE];
    return 0;
}

/* True when name contains "cooperat" in any case (cooperation, cooperates, ...). */
static bool s_names_cooperation(const char *name)
{
    static const char word[] = "cooperat";
    for (const char *p = name; *p; p++)
        if (strncasecmp(p, word, sizeof word - 1) == 0)
            return true;
    return false;
}

/* Refuses a policy that names cooperation anywhere: a member of any object in it (a condition,
 * a rule's member, a setting) whose name contains "cooperat". Returns 0, or -1 with err naming
 * the member. */
static int s_refuse_cooperation(const json_t *value, const char *path, nrm_error_t *err)
{
    char at[S_PATH];
    if (json_is_object(value)) {
        const char *key;
        json_t *member;
        json_object_foreach((json_t *)value, key, member)
        {
            s_join(at, sizeof at, path, key);
            if (s_names_cooperation(key)) {
                nrm_fail(err, NRM_FAILED_PRECONDITION, at,
                         "%s: assistance is never conditional on cooperating with law "
                         "enforcement, so no routing condition, field or rule may depend on "
                         "cooperation",
                         at);
                return -1;
            }
            if (s_refuse_cooperation(member, at, err) != 0)
                return -1;
        }
    } else if (json_is_array(value)) {
        size_t i;
        json_t *item;
        json_array_foreach((json_t *)value, i, item)
        {
            snprintf(at, sizeof at, "%s[%zu]", path, i);
            if (s_refuse_cooperation(item, at, err) != 0)
                return -1;
        }
    }
    return 0;
}

routing_policy_t *routing_policy_load(nrm_config_t *config, nrm_error_t *err)
{
    json_t *policy = nrm_config_get(config, "routing.policy");
    json_t *rules = json_object_get(policy, "rules");
    if (!json_is_object(policy) || !json_is_array(rules)) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, "routing.policy",
                 "routing.policy with a list of rules is required");
        return NULL;
    }
    if (s_refuse_cooperation(policy, "routing.policy", err) != 0)
        return NULL;
    routing_policy_t *self = nrm_xcalloc(1, sizeof *self);
    self->rules = nrm_xcalloc(json_array_size(rules) + 1, sizeof *self->rules);
    const char *host = json_string_value(json_object_get(policy, "host_country"));
    snprintf(self->host_country, sizeof self->host_country, "%s", host ? host : "");
    size_t i;
    json_t *entry;
    char path[S_PATH];
    int rc = s_deadlines(self, config, policy, err);
    json_array_foreach(rules, i, entry)
    {
        if (rc != 0)
            break;
        snprintf(path, sizeof path, "routing.policy.rules[%zu]", i);
        rc = s_rule_read(entry, path, &self->rules[self->count++], err);
    }
    if (rc != 0)
        routing_policy_destroy(&self);
    return self;
}

/* True when a boolean condition is unset or equal to value. */
static bool s_flag_holds(const s_rule_t *rule, s_flag_t flag, bool value)
{
    return rule->flags[flag] == S_ANY || rule->flags[flag] == (int)value;
}

/* True when every condition of the rule holds for service of the case. */
static bool s_rule_holds(const routing_policy_t *self, const s_rule_t *rule,
                         const routing_case_t *c, int service, bool language_gap)
{
    const Nrm__V1__Profile *p = c->profile;
    bool known = p->nationality && p->nationality[0];
    bool host = known && strcmp(p->nationality, self->host_country) == 0;
    return s_flag_holds(rule, S_IS_MINOR, c->is_minor) &&
           s_flag_holds(rule, S_NEED_STATED, ROUTING_SET_HAS(c->needs, service)) &&
           s_flag_holds(rule, S_HOST_NATIONAL, host) &&
           s_flag_holds(rule, S_FOREIGN_NATIONAL, known && !host) &&
           s_flag_holds(rule, S_LANGUAGE_GAP, language_gap) &&
           s_flag_holds(rule, S_PREGNANT, p->pregnant) &&
           s_flag_holds(rule, S_DISABILITY, p->disability) &&
           s_flag_holds(rule, S_WITH_CHILDREN, p->accompanying_children > 0) &&
           c->safety_risk >= rule->safety_risk_at_least && c->urgency >= rule->urgency_at_least &&
           (rule->exploitation_any == 0 || (rule->exploitation_any & c->exploitation) != 0) &&
           (rule->screening_any == 0 || ROUTING_SET_HAS(rule->screening_any, c->screening));
}

void routing_policy_decide(const routing_policy_t *self, const routing_case_t *c, int service,
                           bool language_gap, routing_decision_t *out)
{
    for (size_t i = 0; i < self->count; i++) {
        const s_rule_t *rule = &self->rules[i];
        if (rule->services && !ROUTING_SET_HAS(rule->services, service))
            continue;
        if (!s_rule_holds(self, rule, c, service, language_gap))
            continue;
        *out = (routing_decision_t){rule->verdict, rule->id, rule->reason,
                                    rule->flags[S_LANGUAGE_GAP] == 1};
        return;
    }
    *out = (routing_decision_t){ROUTING_SKIP, S_NO_RULE, "no rule of the policy refers it", false};
}

bool routing_policy_uses_language_gap(const routing_policy_t *self, int service)
{
    for (size_t i = 0; i < self->count; i++)
        if ((!self->rules[i].services || ROUTING_SET_HAS(self->rules[i].services, service)) &&
            self->rules[i].flags[S_LANGUAGE_GAP] != S_ANY)
            return true;
    return false;
}

int64_t routing_policy_deadline_ms(const routing_policy_t *self, int urgency)
{
    return urgency > 0 && urgency < S_URGENCY_LIMIT ? self->deadline_ms[urgency]
                                                    : self->deadline_ms[0];
}
