/* nrm_validate: checks of untrusted request fields. Each check returns OK, or fails err with
 * INVALID_ARGUMENT naming `field` (the dotted path the client sent) and a message that never
 * quotes the value (it may be identifying). */
#ifndef NRM_VALIDATE_H
#define NRM_VALIDATE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "nrm_error.h"

/* True when s is well-formed UTF-8 without control characters other than tab and newline. */
bool nrm_text_clean(const char *s);

/* s: clean UTF-8, at most max bytes, non-empty when required. */
nrm_status_t nrm_check_text(nrm_error_t *err, const char *field, const char *s, size_t max,
                            bool required);

/* value is a defined member of desc; the zero (UNSPECIFIED) member only when allow_zero. */
nrm_status_t nrm_check_enum(nrm_error_t *err, const char *field,
                            const ProtobufCEnumDescriptor *desc, int value, bool allow_zero);

/* lo <= value <= hi. */
nrm_status_t nrm_check_range(nrm_error_t *err, const char *field, int64_t value, int64_t lo,
                             int64_t hi);

/* An ISO 3166-1 alpha-2 code: two upper-case ASCII letters (empty allowed unless required). */
nrm_status_t nrm_check_country(nrm_error_t *err, const char *field, const char *s, bool required);

/* An ISO 639-1 code: two lower-case ASCII letters. */
nrm_status_t nrm_check_language(nrm_error_t *err, const char *field, const char *s);

/* An ISO 3166-2 subdivision shape: CC-XXX (country code, dash, 1-3 letters or digits). */
nrm_status_t nrm_check_region_shape(nrm_error_t *err, const char *field, const char *s);

/* A calendar date "YYYY-MM-DD" no later than now_ms and no earlier than 150 years before it.
 * On OK, *y, *m, *d (any may be NULL) receive its parts. */
nrm_status_t nrm_check_date(nrm_error_t *err, const char *field, const char *s, int64_t now_ms,
                            int *y, int *m, int *d);

/* Whole years between a birth date and the day of at_ms (UTC). */
int nrm_age_on(int y, int m, int d, int64_t at_ms);

/* Writes "prefix[index]" into buf, for paths into repeated fields. Returns buf. */
const char *nrm_path_index(char *buf, size_t size, const char *prefix, size_t index);

#endif
