/* The provider directory: routing's copy of the providers table (kept by UpsertProvider and by
 * the configuration's "providers", see routing_providers.c), reloaded whenever the table's
 * version moves, and who is eligible for a case.
 *
 * A provider is an nrm.v1.UpsertProvider, in the configuration as in requests:
 *   {"id": "cpu-ma-04", "services": ["CHILD_PROTECTION"], "regions": ["MA-04"],
 *    "national": false, "languages": ["ar", "fr"], "max_open_referrals": 25,
 *    "eligibility": {"genders": ["FEMALE"], "min_age": 0, "max_age": 17,
 *                    "must_share_language": false}, "active": true}
 * id is an agency of the configuration (which gives its name and type); services any but
 * SHELTER (shelters belong to the shelter service); regions and/or national coverage; languages
 * spoken (at least one); eligibility members are optional (every gender, ages 0 to 120; a
 * max_age of 0 is no upper limit); must_share_language (interpreters) serves only people who
 * speak one of its languages; max_open_referrals is the most pending or accepted referrals it
 * takes at once; an inactive provider is never routed to. */
#include "routing.h"
#include "nrm_alloc.h"
#include "nrm_json.h"
#include "nrm_log.h"
#include "nrm_validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PATH NRM_ERROR_FIELD_MAX
#define S_ENUM_NAME 64
#define S_SERVICE_PREFIX "SERVICE_TYPE_"
#define S_ID_MAX 64
#define S_MAX_REGIONS 64
#define S_MAX_LANGUAGES 16

struct routing_directory_t {
    routing_provider_t *providers; /* sorted by id */
    size_t count;
};

static const char s_sql_version[] = "SELECT version FROM directory_version";
static const char s_sql_rows[] = "SELECT spec, active FROM providers ORDER BY provider_id";

void routing_directory_prepare(nrm_db_t *db)
{
    nrm_db_statement(db, "routing_directory_version", s_sql_version);
    nrm_db_statement(db, "routing_directory_rows", s_sql_rows);
}

int routing_enum_value(const ProtobufCEnumDescriptor *desc, const char *prefix, const char *name)
{
    char full[S_ENUM_NAME];
    if (!name || snprintf(full, sizeof full, "%s%s", prefix, name) >= (int)sizeof full)
        return -1;
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(desc, full);
    return v && v->value != 0 ? v->value : -1;
}

const char *routing_service_name(int service)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&nrm__v1__service_type__descriptor, service);
    return v && service != 0 ? v->name + strlen(S_SERVICE_PREFIX) : "UNKNOWN";
}

/* Frees what one provider owns. */
static void s_provider_free(routing_provider_t *p)
{
    for (size_t i = 0; i < p->n_regions; i++)
        free(p->regions[i]);
    for (size_t i = 0; i < p->n_languages; i++)
        free(p->languages[i]);
    free(p->regions);
    free(p->languages);
    free(p->id);
    free(p->name);
    free(p->agency_type);
}

void routing_directory_destroy(routing_directory_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    routing_directory_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        s_provider_free(&self->providers[i]);
    free(self->providers);
    free(self);
    *self_p = NULL;
}

/* True when s is a usable provider id: letters, digits, '-', '_', '.', at most S_ID_MAX. */
static bool s_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > S_ID_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

nrm_status_t routing_provider_check(const Nrm__V1__UpsertProvider *u, nrm_config_t *config,
                                    const char *prefix, nrm_status_t bad, nrm_error_t *err)
{
    char path[S_PATH], item[S_PATH];
    snprintf(path, sizeof path, "%s.id", prefix);
    if (!s_id_ok(u->id) || !nrm_config_agency(config, u->id))
        return nrm_fail(err, bad, path, "%s must be the id of a configured agency", path);
    snprintf(path, sizeof path, "%s.services", prefix);
    if (u->n_services == 0)
        return nrm_fail(err, bad, path, "%s must list services other than SHELTER", path);
    for (size_t i = 0; i < u->n_services; i++) {
        nrm_path_index(item, sizeof item, path, i);
        if (nrm_check_enum(err, item, &nrm__v1__service_type__descriptor, (int)u->services[i],
                           false) != NRM_OK ||
            (int)u->services[i] >= ROUTING_SERVICE_LIMIT) {
            err->status = bad;
            return bad;
        }
        if (u->services[i] == NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER)
            return nrm_fail(err, bad, item,
                            "%s: shelters belong to the shelter service, not to providers", item);
    }
    snprintf(path, sizeof path, "%s.regions", prefix);
    if (u->n_regions > S_MAX_REGIONS)
        return nrm_fail(err, bad, path, "%s: at most %d regions", path, S_MAX_REGIONS);
    for (size_t i = 0; i < u->n_regions; i++)
        if (!nrm_config_region_known(config, u->regions[i])) {
            nrm_path_index(item, sizeof item, path, i);
            return nrm_fail(err, bad, item, "%s is not a configured region", item);
        }
    if (u->n_regions == 0 && !u->national)
        return nrm_fail(err, bad, path, "%s: list regions or set national", prefix);
    snprintf(path, sizeof path, "%s.languages", prefix);
    if (u->n_languages == 0 || u->n_languages > S_MAX_LANGUAGES)
        return nrm_fail(err, bad, path, "%s must list the languages spoken (at most %d)", path,
                        S_MAX_LANGUAGES);
    for (size_t i = 0; i < u->n_languages; i++)
        if (nrm_check_language(err, nrm_path_index(item, sizeof item, path, i), u->languages[i]) !=
            NRM_OK) {
            err->status = bad;
            return bad;
        }
    const Nrm__V1__ProviderEligibility *e = u->eligibility;
    if (e) {
        snprintf(path, sizeof path, "%s.eligibility.genders", prefix);
        for (size_t i = 0; i < e->n_genders; i++)
            if (nrm_check_enum(err, nrm_path_index(item, sizeof item, path, i),
                               &nrm__v1__gender__descriptor, (int)e->genders[i], false) != NRM_OK) {
                err->status = bad;
                return bad;
            }
        snprintf(path, sizeof path, "%s.eligibility.min_age", prefix);
        if (nrm_check_range(err, path, e->min_age, 0, ROUTING_MAX_AGE) != NRM_OK) {
            err->status = bad;
            return bad;
        }
        snprintf(path, sizeof path, "%s.eligibility.max_age", prefix);
        if (nrm_check_range(err, path, e->max_age, 0, ROUTING_MAX_AGE) != NRM_OK) {
            err->status = bad;
            return bad;
        }
        if (e->max_age != 0 && e->min_age > e->max_age)
            return nrm_fail(err, bad, path, "%s.eligibility: min_age is above max_age", prefix);
    }
    snprintf(path, sizeof path, "%s.max_open_referrals", prefix);
    if (u->max_open_referrals < 1)
        return nrm_fail(err, bad, path, "%s is required (at least 1)", path);
    return NRM_OK;
}

Nrm__V1__UpsertProvider *routing_provider_from_config(json_t *entry, size_t i, nrm_error_t *err)
{
    nrm_error_t inner;
    nrm_error_clear(&inner);
    ProtobufCMessage *msg =
        nrm_json_to_message(&nrm__v1__upsert_provider__descriptor, entry, &inner);
    if (!msg) {
        char path[2 * S_PATH];
        snprintf(path, sizeof path, "providers[%zu]%s%s", i, inner.field[0] ? "." : "",
                 inner.field);
        nrm_fail(err, NRM_FAILED_PRECONDITION, path, "%s", inner.message);
        return NULL;
    }
    Nrm__V1__UpsertProvider *u = (Nrm__V1__UpsertProvider *)msg;
    u->active = !json_is_false(json_object_get(entry, "active")); /* absent: active */
    return u;
}

nrm_status_t routing_providers_check_config(nrm_config_t *config, nrm_error_t *err)
{
    json_t *list = nrm_config_get(config, "providers");
    if (!json_is_array(list))
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "providers", "providers must be a list");
    json_t *ids = json_object(); /* the ids seen so far, as a set */
    size_t i;
    json_t *entry;
    nrm_status_t st = NRM_OK;
    json_array_foreach(list, i, entry)
    {
        char prefix[S_PATH];
        nrm_path_index(prefix, sizeof prefix, "providers", i);
        Nrm__V1__UpsertProvider *u = routing_provider_from_config(entry, i, err);
        st = u ? routing_provider_check(u, config, prefix, NRM_FAILED_PRECONDITION, err)
               : NRM_FAILED_PRECONDITION;
        /* an agency of the file: the providers read at start must not depend on the run-time
         * directory, or a reload could accept what the next start refuses */
        if (st == NRM_OK && !nrm_config_file_agency(config, u->id))
            st = nrm_fail(err, NRM_FAILED_PRECONDITION, "providers",
                          "%s.id must be the id of an agency of the configuration file", prefix);
        if (st == NRM_OK && json_object_get(ids, u->id))
            st = nrm_fail(err, NRM_FAILED_PRECONDITION, "providers", "provider %s is listed twice",
                          u->id);
        if (st == NRM_OK)
            json_object_set_new(ids, u->id, json_true());
        if (u)
            protobuf_c_message_free_unpacked(&u->base, NULL);
        if (st != NRM_OK)
            break;
    }
    json_decref(ids);
    return st;
}

/* Copies n strings into a new array (caller frees each and the array). */
static char **s_copy_strings(char *const *from, size_t n)
{
    char **out = nrm_xcalloc(n + 1, sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = nrm_xstrdup(from[i]);
    return out;
}

/* Fills p from a checked provider message; name and type from the configuration's agency. */
static void s_provider_fill(routing_provider_t *p, const Nrm__V1__UpsertProvider *u, bool active,
                            nrm_config_t *config)
{
    json_t *agency = nrm_config_agency(config, u->id);
    const char *name = json_string_value(json_object_get(agency, "name"));
    const char *type = json_string_value(json_object_get(agency, "type"));
    p->id = nrm_xstrdup(u->id);
    p->name = nrm_xstrdup(name ? name : u->id);
    p->agency_type = nrm_xstrdup(type ? type : "");
    p->active = active;
    p->national = u->national;
    for (size_t i = 0; i < u->n_services; i++)
        if ((int)u->services[i] > 0 && (int)u->services[i] < ROUTING_SERVICE_LIMIT)
            ROUTING_SET_ADD(p->services, u->services[i]);
    p->regions = s_copy_strings(u->regions, u->n_regions);
    p->n_regions = u->n_regions;
    p->languages = s_copy_strings(u->languages, u->n_languages);
    p->n_languages = u->n_languages;
    const Nrm__V1__ProviderEligibility *e = u->eligibility;
    p->min_age = e ? e->min_age : 0;
    p->max_age = e && e->max_age ? e->max_age : ROUTING_MAX_AGE;
    p->must_share_language = e && e->must_share_language;
    for (size_t i = 0; e && i < e->n_genders; i++)
        if ((int)e->genders[i] > 0 && (int)e->genders[i] < 32)
            ROUTING_SET_ADD(p->genders, e->genders[i]);
    p->max_open = u->max_open_referrals;
}

/* Builds a directory from the rows of routing_directory_rows (spec, active), sorted by id. Rows
 * that do not decode are left out (logged). */
static routing_directory_t *s_from_rows(const PGresult *res, nrm_config_t *config)
{
    routing_directory_t *self = nrm_xcalloc(1, sizeof *self);
    int rows = PQntuples(res);
    self->providers = nrm_xcalloc((size_t)rows + 1, sizeof *self->providers);
    for (int row = 0; row < rows; row++) {
        size_t len = 0;
        const uint8_t *data = nrm_db_bytes(res, row, 0, &len);
        Nrm__V1__UpsertProvider *u = nrm__v1__upsert_provider__unpack(NULL, len, data);
        if (!u) {
            nrm_log_error("provider row unreadable", "{s:i}", "row", row);
            continue;
        }
        s_provider_fill(&self->providers[self->count++], u, nrm_db_int(res, row, 1) != 0, config);
        nrm__v1__upsert_provider__free_unpacked(u, NULL);
    }
    return self;
}

nrm_status_t routing_directory_refresh(routing_t *self, nrm_tx_t *tx)
{
    PGresult *res = NULL;
    nrm_status_t st = nrm_db_exec(tx->db, "routing_directory_version", NULL, &res, tx->err);
    if (st != NRM_OK)
        return st;
    int64_t version = PQntuples(res) == 1 ? nrm_db_int(res, 0, 0) : 0;
    PQclear(res);
    if (self->directory && version == self->directory_version)
        return NRM_OK;
    st = nrm_db_exec(tx->db, "routing_directory_rows", NULL, &res, tx->err);
    if (st != NRM_OK)
        return st;
    routing_directory_t *fresh = s_from_rows(res, self->config);
    PQclear(res);
    routing_directory_destroy(&self->directory);
    self->directory = fresh;
    self->directory_version = version;
    nrm_log_info("provider directory loaded", "{s:I, s:I}", "providers", (json_int_t)fresh->count,
                 "version", (json_int_t)version);
    return NRM_OK;
}

size_t routing_directory_size(const routing_directory_t *self)
{
    return self ? self->count : 0;
}

/* bsearch order of providers: by id. */
static int s_by_id(const void *a, const void *b)
{
    return strcmp(((const routing_provider_t *)a)->id, ((const routing_provider_t *)b)->id);
}

const routing_provider_t *routing_directory_find(const routing_directory_t *self, const char *id)
{
    if (!self || self->count == 0)
        return NULL;
    routing_provider_t key = {.id = (char *)id};
    return bsearch(&key, self->providers, self->count, sizeof key, s_by_id);
}

bool routing_provider_in_region(const routing_provider_t *p, const char *region)
{
    for (size_t i = 0; i < p->n_regions; i++)
        if (strcmp(p->regions[i], region) == 0)
            return true;
    return false;
}

bool routing_provider_speaks_with(const routing_provider_t *p, const Nrm__V1__Profile *profile)
{
    if (profile->n_languages == 0)
        return true;
    for (size_t i = 0; i < profile->n_languages; i++)
        for (size_t k = 0; k < p->n_languages; k++)
            if (strcmp(profile->languages[i], p->languages[k]) == 0)
                return true;
    return false;
}

/* True when the person fits the provider's gender and age eligibility. A person of unknown
 * age is presumed a child: eligible where children are. */
static bool s_person_fits(const routing_provider_t *p, const routing_case_t *c)
{
    int gender = c->profile->gender ? (int)c->profile->gender : NRM__V1__GENDER__GENDER_UNKNOWN;
    if (p->genders && !ROUTING_SET_HAS(p->genders, gender))
        return false;
    if (c->profile->age_unknown)
        return p->min_age < ROUTING_ADULT_AGE;
    return c->profile->age_years >= p->min_age && c->profile->age_years <= p->max_age;
}

size_t routing_directory_eligible(const routing_directory_t *self, const routing_case_t *c,
                                  int service, const routing_provider_t **out, size_t max,
                                  size_t *offering)
{
    size_t n = 0, offer = 0;
    /* first pass: providers serving the region by name; second: national coverage only */
    for (int pass = 0; self && pass < 2; pass++)
        for (size_t i = 0; i < self->count; i++) {
            const routing_provider_t *p = &self->providers[i];
            if (!p->active || !ROUTING_SET_HAS(p->services, service))
                continue;
            offer += pass == 0;
            bool in_region = routing_provider_in_region(p, c->region);
            if ((pass == 0 && !in_region) || (pass == 1 && (in_region || !p->national)))
                continue;
            if (!s_person_fits(p, c) ||
                (p->must_share_language && !routing_provider_speaks_with(p, c->profile)))
                continue;
            if (n < max)
                out[n++] = p;
        }
    if (offering)
        *offering = offer;
    return n;
}
