/* nrm_log: structured logs, one JSON object per line on stderr.
 *
 * Each line has "ts" (ISO 8601 UTC), "level", "service", "msg", then the caller's fields.
 * Never pass identifying data (names, phones, documents, notes, dates of birth) as a field:
 * log ids, codes, counts and statuses only. */
#ifndef NRM_LOG_H
#define NRM_LOG_H

typedef enum { NRM_LOG_DEBUG, NRM_LOG_INFO, NRM_LOG_WARN, NRM_LOG_ERROR } nrm_log_level_t;

/* Sets the service name written on every line and the lowest level written ("debug", "info",
 * "warn", "error"; NULL or unknown means "info"). The name is copied. */
void nrm_log_init(const char *service, const char *level);

/* Writes one line. fields is a Jansson json_pack format for an object ("{s:s, s:I}") followed
 * by its arguments, or NULL for no fields. */
void nrm_log(nrm_log_level_t level, const char *msg, const char *fields, ...);

#define nrm_log_debug(msg, ...) nrm_log(NRM_LOG_DEBUG, msg, __VA_ARGS__)
#define nrm_log_info(msg, ...) nrm_log(NRM_LOG_INFO, msg, __VA_ARGS__)
#define nrm_log_warn(msg, ...) nrm_log(NRM_LOG_WARN, msg, __VA_ARGS__)
#define nrm_log_error(msg, ...) nrm_log(NRM_LOG_ERROR, msg, __VA_ARGS__)

#endif
