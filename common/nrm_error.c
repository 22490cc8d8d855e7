#include "nrm_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void nrm_error_clear(nrm_error_t *err)
{
    if (!err)
        return;
    err->status = NRM_OK;
    err->field[0] = '\0';
    err->message[0] = '\0';
}

nrm_status_t nrm_fail(nrm_error_t *err, nrm_status_t status, const char *field, const char *fmt,
                      ...)
{
    if (!err)
        return status;
    err->status = status;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return status;
}

const char *nrm_status_name(nrm_status_t status)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&nrm__v1__status__descriptor, (int)status);
    if (!v)
        return "UNKNOWN";
    return strncmp(v->name, "STATUS_", 7) == 0 ? v->name + 7 : v->name;
}
