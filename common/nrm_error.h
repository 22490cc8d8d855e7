/* nrm_error: the one error vocabulary of the project.
 *
 * Every fallible operation returns an nrm_status_t (the wire contract's Status enum) and, when
 * it fails, fills an nrm_error_t with the offending field's dotted path and a message that is
 * safe to log and to send to a client: it never contains identifying data. */
#ifndef NRM_ERROR_H
#define NRM_ERROR_H

#include <stdbool.h>
#include "nrm/v1/enums.pb-c.h"

typedef Nrm__V1__Status nrm_status_t;

#define NRM_OK NRM__V1__STATUS__STATUS_OK
#define NRM_INVALID_ARGUMENT NRM__V1__STATUS__STATUS_INVALID_ARGUMENT
#define NRM_UNAUTHENTICATED NRM__V1__STATUS__STATUS_UNAUTHENTICATED
#define NRM_PERMISSION_DENIED NRM__V1__STATUS__STATUS_PERMISSION_DENIED
#define NRM_NOT_FOUND NRM__V1__STATUS__STATUS_NOT_FOUND
#define NRM_CONFLICT NRM__V1__STATUS__STATUS_CONFLICT
#define NRM_FAILED_PRECONDITION NRM__V1__STATUS__STATUS_FAILED_PRECONDITION
#define NRM_UNAVAILABLE NRM__V1__STATUS__STATUS_UNAVAILABLE
#define NRM_UNIMPLEMENTED NRM__V1__STATUS__STATUS_UNIMPLEMENTED
#define NRM_INTERNAL NRM__V1__STATUS__STATUS_INTERNAL

#define NRM_ERROR_FIELD_MAX 160
#define NRM_ERROR_MESSAGE_MAX 320

typedef struct {
    nrm_status_t status;
    char field[NRM_ERROR_FIELD_MAX];     /* dotted path, "" when no single field is at fault */
    char message[NRM_ERROR_MESSAGE_MAX]; /* human-readable, no identifying data */
} nrm_error_t;

/* Resets err to OK with empty field and message. err may be NULL. */
void nrm_error_clear(nrm_error_t *err);

/* Records a failure in err (which may be NULL) and returns status, so that callers can write
 * `return nrm_fail(err, NRM_INVALID_ARGUMENT, "submit_report.region", "unknown region");`.
 * field may be NULL. The message is a printf format. */
nrm_status_t nrm_fail(nrm_error_t *err, nrm_status_t status, const char *field, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

/* The contract's name of a status without its prefix ("OK", "INVALID_ARGUMENT", ...). Static. */
const char *nrm_status_name(nrm_status_t status);

#endif
