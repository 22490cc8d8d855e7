/* nrmctl_lists: paged list requests (ListReferrals, ListAllocations, ListCases) as the
 * referrals, cases and case commands send them. */
#ifndef NRMCTL_LISTS_H
#define NRMCTL_LISTS_H

#include "nrmctl_common.h"

#define NRMCTL_TOKEN_MAX 256 /* a page token */

/* The rows of a list Reply (borrowed from it) and the next page's token; NULL when the Reply
 * is not that list. */
typedef ProtobufCMessage *const *(*nrmctl_rows_fn)(const Nrm__V1__Reply *reply, size_t *n,
                                                   const char **next);
ProtobufCMessage *const *nrmctl_referral_rows(const Nrm__V1__Reply *reply, size_t *n,
                                              const char **next);
ProtobufCMessage *const *nrmctl_allocation_rows(const Nrm__V1__Reply *reply, size_t *n,
                                                const char **next);
ProtobufCMessage *const *nrmctl_case_rows(const Nrm__V1__Reply *reply, size_t *n,
                                          const char **next);

/* Takes one row (borrowed for the call); returns an exit code (non-OK stops the list). */
typedef int (*nrmctl_row_fn)(const ProtobufCMessage *row, void *arg);

/* Sends req to service and gives every row to on_row (NULL: prints each as a JSON line), page
 * after page while all_pages (page_token is the body's page_token field; the next page's token
 * is said on stderr otherwise). *status receives the last Reply's status (UNAVAILABLE when
 * none came). A non-OK Reply is printed when on_row is NULL. Returns the exit code. */
int nrmctl_list_pages(nrmctl_t *ctl, const char *command, const char *service,
                      Nrm__V1__Request *req, char **page_token, bool all_pages,
                      nrmctl_rows_fn rows_of, nrmctl_row_fn on_row, void *arg,
                      Nrm__V1__Status *status);

/* The value of the enum member named name, with or without prefix ("LEGAL_AID" or
 * "SERVICE_TYPE_LEGAL_AID"); -1 when none or the zero member. */
int nrmctl_enum_value(const ProtobufCEnumDescriptor *desc, const char *prefix, const char *name);

#endif
