/* The agency directory's registrar: UpsertAgency and ListAgencies (coordinator only, by the
 * matrix). Entries are stored and published by nrm_directory; every service (this one included,
 * before the reply leaves) puts them in force. */
#include "intake.h"
#include "nrm_auth.h"
#include "nrm_directory.h"
#include "nrm_validate.h"

#include <ctype.h>

#define S_NAME_MAX 200
#define S_PATH_MAX 64

/* An agency id: 1-64 ASCII letters, digits, '.', '_' or '-' (never a "service:" identity). */
static nrm_status_t s_check_id(nrm_error_t *err, const char *id)
{
    if (nrm_check_text(err, "upsert_agency.agency_id", id, INTAKE_ID_MAX, true) != NRM_OK)
        return err->status;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return nrm_fail(err, NRM_INVALID_ARGUMENT, "upsert_agency.agency_id",
                            "an agency id holds letters, digits, '.', '_' and '-' only");
    return NRM_OK;
}

/* The fields one by one: INVALID_ARGUMENT naming the first bad one. */
static nrm_status_t s_check_fields(const Nrm__V1__UpsertAgency *u, nrm_error_t *err)
{
    char path[S_PATH_MAX];
    if (s_check_id(err, u->agency_id) != NRM_OK)
        return err->status;
    if (nrm_check_enum(err, "upsert_agency.type", &nrm__v1__agency_type__descriptor, u->type,
                       false) != NRM_OK)
        return err->status;
    if (u->n_public_keys > NRM_DIRECTORY_MAX_KEYS)
        return nrm_fail(err, NRM_INVALID_ARGUMENT, "upsert_agency.public_keys",
                        "at most %d public keys", NRM_DIRECTORY_MAX_KEYS);
    for (size_t i = 0; i < u->n_public_keys; i++) {
        nrm_path_index(path, sizeof path, "upsert_agency.public_keys", i);
        if (!nrm_auth_key_valid(u->public_keys[i]))
            return nrm_fail(err, NRM_INVALID_ARGUMENT, path,
                            "not a Z85 CURVE public key (40 characters)");
        for (size_t j = 0; j < i; j++)
            if (strcmp(u->public_keys[j], u->public_keys[i]) == 0)
                return nrm_fail(err, NRM_INVALID_ARGUMENT, path, "key listed twice");
    }
    return nrm_check_text(err, "upsert_agency.name", u->name, S_NAME_MAX, false);
}

/* CONFLICT when key belongs to another agency (of the file or the directory) or to a service. */
static nrm_status_t s_check_key_free(nrm_call_t *call, const char *agency_id, const char *key,
                                     const char *path)
{
    nrm_config_t *config = call->config;
    size_t n = nrm_config_agency_count(config), k;
    json_t *item;
    for (size_t i = 0; i < n; i++) {
        json_t *agency = nrm_config_agency_at(config, i);
        const char *id = json_string_value(json_object_get(agency, "id"));
        if (id && strcmp(id, agency_id) == 0)
            continue;
        json_array_foreach(json_object_get(agency, "public_keys"), k, item)
        {
            if (json_is_string(item) && strcmp(json_string_value(item), key) == 0)
                return nrm_fail(call->tx.err, NRM_CONFLICT, path, "the key is another agency's");
        }
    }
    const char *service;
    json_t *entry;
    json_object_foreach(nrm_config_get(config, "services"), service, entry)
    {
        char own[NRM_KEY_TXT];
        nrm_error_t ignored;
        if (nrm_auth_service_key(config, service, own, &ignored) == 0 && strcmp(own, key) == 0)
            return nrm_fail(call->tx.err, NRM_CONFLICT, path, "the key is a service's");
    }
    char holder[INTAKE_ID_MAX + 1];
    nrm_status_t st = nrm_directory_key_holder(&call->tx, key, agency_id, holder, sizeof holder);
    if (st == NRM_OK && holder[0])
        return nrm_fail(call->tx.err, NRM_CONFLICT, path, "the key is another agency's");
    return st;
}

nrm_status_t intake_upsert_agency(void *ctx, nrm_call_t *call)
{
    intake_t *intake = ctx;
    const Nrm__V1__UpsertAgency *u = call->request->upsert_agency;
    if (s_check_fields(u, call->tx.err) != NRM_OK)
        return call->tx.err->status;
    json_t *listed = nrm_config_agency(call->config, u->agency_id);
    const char *source = json_string_value(json_object_get(listed, "source"));
    if (listed && !(source && strcmp(source, NRM_DIRECTORY_SOURCE_RUNTIME) == 0))
        return nrm_fail(call->tx.err, NRM_FAILED_PRECONDITION, "upsert_agency.agency_id",
                        "the agency is listed in the configuration file, which wins: change it "
                        "there");
    char path[S_PATH_MAX];
    for (size_t i = 0; i < u->n_public_keys; i++) {
        nrm_path_index(path, sizeof path, "upsert_agency.public_keys", i);
        nrm_status_t st = s_check_key_free(call, u->agency_id, u->public_keys[i], path);
        if (st != NRM_OK)
            return st;
    }
    Nrm__V1__Agency agency = NRM__V1__AGENCY__INIT;
    agency.agency_id = u->agency_id;
    agency.type = u->type;
    agency.n_public_keys = u->n_public_keys;
    agency.public_keys = u->public_keys;
    agency.active = u->active;
    agency.name = u->name;
    int64_t revision = 0;
    nrm_status_t st = nrm_directory_register(nrm_service_directory(intake->service), &call->tx,
                                             &agency, &revision);
    if (st != NRM_OK)
        return st;
    Nrm__V1__AgencyRef *ref = nrm_call_alloc(call, sizeof *ref);
    nrm__v1__agency_ref__init(ref);
    ref->agency_id = nrm_call_strdup(call, u->agency_id);
    ref->revision = revision;
    call->reply->result_case = NRM__V1__REPLY__RESULT_AGENCY_REF;
    call->reply->agency_ref = ref;
    call->subject_id = ref->agency_id;
    return NRM_OK;
}

/* An Agency of the call's memory from a configuration entry (file or directory). */
static Nrm__V1__Agency *s_from_json(nrm_call_t *call, json_t *entry, const char *source)
{
    Nrm__V1__Agency *a = nrm_call_alloc(call, sizeof *a);
    nrm__v1__agency__init(a);
    const char *type = json_string_value(json_object_get(entry, "type"));
    const char *name = json_string_value(json_object_get(entry, "name"));
    a->agency_id = nrm_call_strdup(call, json_string_value(json_object_get(entry, "id")));
    a->type_name = nrm_call_strdup(call, type ? type : "");
    a->type = nrm_directory_type_of(type);
    a->name = nrm_call_strdup(call, name ? name : "");
    a->active = true;
    a->source = (char *)source;
    json_t *keys = json_object_get(entry, "public_keys");
    size_t n = json_array_size(keys), i;
    json_t *key;
    a->public_keys = nrm_call_alloc(call, (n ? n : 1) * sizeof *a->public_keys);
    json_array_foreach(keys, i, key)
    {
        if (json_is_string(key))
            a->public_keys[a->n_public_keys++] = nrm_call_strdup(call, json_string_value(key));
    }
    return a;
}

/* An Agency of the call's memory from row i of nrm_directory_rows. */
static Nrm__V1__Agency *s_from_row(nrm_call_t *call, const PGresult *res, int i)
{
    Nrm__V1__Agency *a = nrm_call_alloc(call, sizeof *a);
    nrm__v1__agency__init(a);
    a->agency_id = nrm_call_strdup(call, nrm_db_text(res, i, 0));
    a->type_name = nrm_call_strdup(call, nrm_db_text(res, i, 1));
    a->type = nrm_directory_type_of(a->type_name);
    a->active = nrm_db_int(res, i, 3) != 0;
    a->name = nrm_call_strdup(call, nrm_db_text(res, i, 4));
    a->source = (char *)NRM_DIRECTORY_SOURCE_RUNTIME;
    char *joined = nrm_call_strdup(call, nrm_db_text(res, i, 2));
    a->public_keys = nrm_call_alloc(call, NRM_DIRECTORY_MAX_KEYS * sizeof *a->public_keys);
    char *save = NULL;
    for (char *k = strtok_r(joined, " ", &save); k && a->n_public_keys < NRM_DIRECTORY_MAX_KEYS;
         k = strtok_r(NULL, " ", &save))
        a->public_keys[a->n_public_keys++] = k;
    return a;
}

nrm_status_t intake_list_agencies(void *ctx, nrm_call_t *call)
{
    const Nrm__V1__ListAgencies *l = call->request->list_agencies;
    json_t *file = nrm_config_get(call->config, "agencies");
    PGresult *res = NULL;
    nrm_status_t st = nrm_directory_rows(&call->tx, l->include_inactive, &res);
    if (st != NRM_OK)
        return st;
    size_t max = json_array_size(file) + (size_t)PQntuples(res);
    Nrm__V1__AgencyList *list = nrm_call_alloc(call, sizeof *list);
    nrm__v1__agency_list__init(list);
    list->agencies = nrm_call_alloc(call, (max ? max : 1) * sizeof *list->agencies);
    size_t i;
    json_t *entry;
    json_array_foreach(file, i, entry)
    {
        if (json_is_string(json_object_get(entry, "id")))
            list->agencies[list->n_agencies++] =
                s_from_json(call, entry, NRM_DIRECTORY_SOURCE_FILE);
    }
    for (int r = 0; r < PQntuples(res); r++) {
        json_t *listed = nrm_config_agency(call->config, nrm_db_text(res, r, 0));
        const char *source = json_string_value(json_object_get(listed, "source"));
        if (listed && !(source && strcmp(source, NRM_DIRECTORY_SOURCE_RUNTIME) == 0))
            continue; /* shadowed: the file's entry is listed */
        list->agencies[list->n_agencies++] = s_from_row(call, res, r);
    }
    PQclear(res);
    call->reply->result_case = NRM__V1__REPLY__RESULT_AGENCY_LIST;
    call->reply->agency_list = list;
    call->subject_id = nrm_call_strdup(call, "agencies");
    return NRM_OK;
}
