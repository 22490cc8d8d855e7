/* The provider directory: agencies that provide services, read from the configuration's
 * "providers" (loaded at start-up and again on SIGHUP), and who is eligible for a case.
 *
 * A provider entry (its id must be one of the configuration's "agencies", which gives its name
 * and type):
 *   {"id": "cpu-ma-04", "services": ["CHILD_PROTECTION"], "regions": ["MA-04"],
 *    "national": false, "languages": ["ar", "fr"], "max_open_referrals": 25,
 *    "eligibility": {"genders": ["FEMALE"], "min_age": 0, "max_age": 17,
 *                    "must_share_language": false}}
 * services: any but SHELTER (shelters belong to the shelter service); regions and/or national
 * coverage; languages spoken (at least one); eligibility members are optional (every gender,
 * ages 0 to 120); must_share_language (interpreters) serves only people who speak one of its
 * languages; max_open_referrals is the most pending or accepted referrals it takes at once. */
#include "routing.h"
#include "nrm_alloc.h"
#include "nrm_validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PATH 96      /* a field path inside one provider entry */
#define S_ITEM_PATH 32 /* "providers[i]" */
#define S_ENUM_NAME 64
#define S_SERVICE_PREFIX "SERVICE_TYPE_"
#define S_GENDER_PREFIX "GENDER_"
#define S_ID_MAX 64

struct routing_directory_t {
    routing_provider_t *providers; /* sorted by id */
    size_t count;
};

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

/* Copies a JSON array of strings into *out (malloc'd, caller frees each and the array), each
 * checked by check (NULL for none). Returns 0, or -1 with err naming path[i]. */
static int s_strings(json_t *array, const char *path, char ***out, size_t *n,
                     nrm_status_t (*check)(nrm_error_t *, const char *, const char *),
                     nrm_error_t *err)
{
    *out = NULL;
    *n = 0;
    if (!array)
        return 0;
    if (!json_is_array(array)) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, path, "%s must be a list of strings", path);
        return -1;
    }
    *out = nrm_xcalloc(json_array_size(array) + 1, sizeof **out);
    size_t i;
    json_t *item;
    char at[S_PATH];
    json_array_foreach(array, i, item)
    {
        nrm_path_index(at, sizeof at, path, i);
        const char *s = json_string_value(item);
        if (!s) {
            nrm_fail(err, NRM_FAILED_PRECONDITION, at, "%s must be a string", at);
            return -1;
        }
        if (check && check(err, at, s) != NRM_OK) {
            err->status = NRM_FAILED_PRECONDITION;
            return -1;
        }
        (*out)[(*n)++] = nrm_xstrdup(s);
    }
    return 0;
}

/* nrm_check_language with the argument order s_strings wants. */
static nrm_status_t s_check_language(nrm_error_t *err, const char *field, const char *s)
{
    return nrm_check_language(err, field, s);
}

/* Reads a JSON array of enum names (without prefix) into a set. Returns 0, or -1 with err. */
static int s_enum_set(json_t *array, const char *path, const ProtobufCEnumDescriptor *desc,
                      const char *prefix, routing_set_t *set, nrm_error_t *err)
{
    *set = 0;
    if (!array)
        return 0;
    size_t i;
    json_t *item;
    char at[S_PATH];
    if (!json_is_array(array)) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, path, "%s must be a list of names", path);
        return -1;
    }
    json_array_foreach(array, i, item)
    {
        int v = routing_enum_value(desc, prefix, json_string_value(item));
        if (v < 0) {
            nrm_path_index(at, sizeof at, path, i);
            nrm_fail(err, NRM_FAILED_PRECONDITION, at, "%s is not a %s", at, desc->short_name);
            return -1;
        }
        ROUTING_SET_ADD(*set, v);
    }
    return 0;
}

/* Reads an optional integer member within [lo, hi] (dflt when absent). Returns 0 or -1. */
static int s_int_member(json_t *obj, const char *key, const char *path, int lo, int hi, int dflt,
                        int *out, nrm_error_t *err)
{
    json_t *v = json_object_get(obj, key);
    *out = dflt;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, path, "%s.%s must be an integer from %d to %d", path,
                 key, lo, hi);
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

/* Reads one "providers" entry into p. Returns 0, or -1 with err naming the field. */
static int s_provider_read(nrm_config_t *config, json_t *entry, const char *path,
                           routing_provider_t *p, nrm_error_t *err)
{
    char at[S_PATH];
    const char *id = json_string_value(json_object_get(entry, "id"));
    json_t *agency = nrm_config_agency(config, id);
    if (!json_is_object(entry) || !s_id_ok(id) || !agency) {
        snprintf(at, sizeof at, "%s.id", path);
        nrm_fail(err, NRM_FAILED_PRECONDITION, at, "%s must be the id of a configured agency", at);
        return -1;
    }
    const char *name = json_string_value(json_object_get(agency, "name"));
    const char *type = json_string_value(json_object_get(agency, "type"));
    p->id = nrm_xstrdup(id);
    p->name = nrm_xstrdup(name ? name : id);
    p->agency_type = nrm_xstrdup(type ? type : "");
    p->national = json_is_true(json_object_get(entry, "national"));
    json_t *eligibility = json_object_get(entry, "eligibility");
    p->must_share_language = json_is_true(json_object_get(eligibility, "must_share_language"));
    snprintf(at, sizeof at, "%s.services", path);
    if (s_enum_set(json_object_get(entry, "services"), at, &nrm__v1__service_type__descriptor,
                   S_SERVICE_PREFIX, &p->services, err) != 0)
        return -1;
    if (p->services == 0 ||
        ROUTING_SET_HAS(p->services, NRM__V1__SERVICE_TYPE__SERVICE_TYPE_SHELTER)) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, at,
                 "%s must list services other than SHELTER (shelters belong to the shelter "
                 "service)",
                 at);
        return -1;
    }
    snprintf(at, sizeof at, "%s.regions", path);
    if (s_strings(json_object_get(entry, "regions"), at, &p->regions, &p->n_regions, NULL, err))
        return -1;
    for (size_t i = 0; i < p->n_regions; i++)
        if (!nrm_config_region_known(config, p->regions[i])) {
            char item[S_PATH];
            nrm_path_index(item, sizeof item, at, i);
            nrm_fail(err, NRM_FAILED_PRECONDITION, item, "%s is not a configured region", item);
            return -1;
        }
    if (p->n_regions == 0 && !p->national) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, at, "%s: list regions or set national", path);
        return -1;
    }
    snprintf(at, sizeof at, "%s.languages", path);
    if (s_strings(json_object_get(entry, "languages"), at, &p->languages, &p->n_languages,
                  s_check_language, err) != 0)
        return -1;
    if (p->n_languages == 0) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, at, "%s must list the languages spoken", at);
        return -1;
    }
    snprintf(at, sizeof at, "%s.eligibility.genders", path);
    if (s_enum_set(json_object_get(eligibility, "genders"), at, &nrm__v1__gender__descriptor,
                   S_GENDER_PREFIX, &p->genders, err) != 0)
        return -1;
    snprintf(at, sizeof at, "%s.eligibility", path);
    if (s_int_member(eligibility, "min_age", at, 0, ROUTING_MAX_AGE, 0, &p->min_age, err) ||
        s_int_member(eligibility, "max_age", at, 0, ROUTING_MAX_AGE, ROUTING_MAX_AGE, &p->max_age,
                     err))
        return -1;
    if (p->min_age > p->max_age) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, at, "%s: min_age is above max_age", at);
        return -1;
    }
    if (s_int_member(entry, "max_open_referrals", path, 1, INT32_MAX, 0, &p->max_open, err) != 0)
        return -1;
    if (p->max_open == 0) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, path, "%s.max_open_referrals is required", path);
        return -1;
    }
    return 0;
}

/* qsort order of providers: by id. */
static int s_by_id(const void *a, const void *b)
{
    return strcmp(((const routing_provider_t *)a)->id, ((const routing_provider_t *)b)->id);
}

routing_directory_t *routing_directory_load(nrm_config_t *config, nrm_error_t *err)
{
    json_t *list = nrm_config_get(config, "providers");
    if (!json_is_array(list)) {
        nrm_fail(err, NRM_FAILED_PRECONDITION, "providers", "providers must be a list");
        return NULL;
    }
    routing_directory_t *self = nrm_xcalloc(1, sizeof *self);
    self->providers = nrm_xcalloc(json_array_size(list) + 1, sizeof *self->providers);
    size_t i;
    json_t *entry;
    char path[S_ITEM_PATH];
    json_array_foreach(list, i, entry)
    {
        nrm_path_index(path, sizeof path, "providers", i);
        int rc = s_provider_read(config, entry, path, &self->providers[self->count], err);
        self->count++; /* counted even when partly read, so that destroy frees it */
        if (rc != 0) {
            routing_directory_destroy(&self);
            return NULL;
        }
    }
    qsort(self->providers, self->count, sizeof *self->providers, s_by_id);
    for (size_t k = 1; k < self->count; k++)
        if (strcmp(self->providers[k - 1].id, self->providers[k].id) == 0) {
            nrm_fail(err, NRM_FAILED_PRECONDITION, "providers", "provider %s is listed twice",
                     self->providers[k].id);
            routing_directory_destroy(&self);
            return NULL;
        }
    return self;
}

size_t routing_directory_size(const routing_directory_t *self)
{
    return self->count;
}

const routing_provider_t *routing_directory_find(const routing_directory_t *self, const char *id)
{
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
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < self->count; i++) {
            const routing_provider_t *p = &self->providers[i];
            if (!ROUTING_SET_HAS(p->services, service))
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
