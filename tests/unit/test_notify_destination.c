/* Unit tests of notify's webhook destination checks (services/notify/notify_destination.c):
 * every spelling of an internal address is refused before it is stored, the address a webhook
 * connects to is refused likewise, and the operator's allow-list admits what it lists (names at
 * the first check only, addresses and blocks at both). No process, no network, no resolver. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "notify.h"

#define PATH_MAX_LEN 512

/* Every spelling of an internal destination, and user-info. */
static const char *const s_refused[] = {
    "http://127.0.0.1/hook",
    "http://127.0.0.1:8080/hook",
    "http://127.0.0.1./hook",
    "http://0x7f000001/hook",
    "http://2130706433/hook",
    "http://0177.0.0.1/hook",
    "http://0177.0000.0000.0001/hook",
    "http://127.1/hook",
    "http://0x7f.1/hook",
    "http://127.000.000.001/hook",
    "http://%31%32%37.0.0.1/hook",
    "http://[::1]/hook",
    "http://[0:0:0:0:0:0:0:1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:7f00:1]/hook",
    "http://[0:0:0:0:0:ffff:127.0.0.1]/hook",
    "http://[::127.0.0.1]/hook",
    "http://[64:ff9b::127.0.0.1]/hook",
    "http://[2002:7f00:1::]/hook",
    "http://localhost/hook",
    "http://LOCALHOST./hook",
    "http://api.localhost/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://[fe80::1]/hook",
    "http://[fe80::1%25eth0]/hook",
    "http://10.0.0.1/hook",
    "http://012.0.0.1/hook",
    "http://[::ffff:10.0.0.1]/hook",
    "http://172.16.0.1/hook",
    "http://172.31.255.254/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",
    "http://100.127.255.255/hook",
    "http://[fc00::1]/hook",
    "http://[fd12:3456::1]/hook",
    "http://[fec0::1]/hook",
    "http://224.0.0.1/hook",
    "http://239.255.255.250/hook",
    "http://[ff02::1]/hook",
    "http://255.255.255.255/hook",
    "http://0.0.0.0/hook",
    "http://0/hook",
    "http://[::]/hook",
    "http://user:pass@receiver.example.org/hook",
    "http://user@receiver.example.org/hook",
    "http://@receiver.example.org/hook",
    "https://:secret@receiver.example.org/hook",
};

/* Public destinations. */
static const char *const s_allowed[] = {
    "https://receiver.example.org/hook",
    "http://receiver.example.org:8443/nrm/events?x=1",
    "http://93.184.216.34/hook",
    "http://[2606:2800:220:1:248:1893:25c8:1946]/hook",
    "http://172.32.0.1/hook",  /* just outside 172.16/12 */
    "http://100.128.0.1/hook", /* just outside 100.64/10 */
    "http://localhost.example.org/hook",
};

/* Not http(s) URLs with a host, or numbers that are no address. */
static const char *const s_invalid[] = {
    "ftp://receiver.example.org/hook",
    "file:///etc/passwd",
    "gopher://receiver.example.org/",
    "receiver.example.org/hook",
    "http://",
    "http://1.2.3.4.5/hook",
    "http://4294967296/hook",
    "http://256.0.0.1/hook",
    "http://receiver.example.org/ho ok",
    "http://receiver.example.org/\r\nX: y",
};

static char s_dir[] = "/tmp/nrm-test-destination-XXXXXX";

/* Loads the allow-list of a configuration whose notify.webhook_allow is the JSON list given. */
static notify_allow_t *s_allow(const char *list)
{
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "%s/config.json", s_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"notify\": {\"webhook_allow\": %s}}", list);
    assert_int_equal(fclose(f), 0);
    nrm_error_t err;
    nrm_config_t *config = nrm_config_load(path, &err);
    assert_non_null(config);
    notify_allow_t *allow = NULL;
    nrm_status_t st = notify_allow_load(config, &allow, &err);
    nrm_config_destroy(&config);
    assert_int_equal(st, NRM_OK);
    return allow;
}

/* The status and field of loading an allow-list that should be refused. */
static void s_allow_refused(const char *list, const char *field)
{
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "%s/config.json", s_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"notify\": {\"webhook_allow\": %s}}", list);
    assert_int_equal(fclose(f), 0);
    nrm_error_t err;
    nrm_error_clear(&err);
    nrm_config_t *config = nrm_config_load(path, &err);
    assert_non_null(config);
    notify_allow_t *allow = NULL;
    assert_int_equal(notify_allow_load(config, &allow, &err), NRM_FAILED_PRECONDITION);
    assert_null(allow);
    assert_string_equal(err.field, field);
    nrm_config_destroy(&config);
}

/* A socket address for text (IPv4 or IPv6) in *ss. */
static const struct sockaddr *s_sockaddr(const char *text, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1)
        v4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1)
        v6->sin6_family = AF_INET6;
    else
        fail_msg("not an address: %s", text);
    return (const struct sockaddr *)ss;
}

static int setup(void **state)
{
    return mkdtemp(s_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "%s/config.json", s_dir);
    unlink(path);
    rmdir(s_dir);
    return 0;
}

static void test_every_spelling_of_an_internal_destination_is_refused(void **state)
{
    for (size_t i = 0; i < sizeof s_refused / sizeof *s_refused; i++)
        if (notify_destination_check_url(NULL, s_refused[i]) != NOTIFY_DEST_REFUSED)
            fail_msg("not refused: %s", s_refused[i]);
}

static void test_public_destinations_are_allowed(void **state)
{
    for (size_t i = 0; i < sizeof s_allowed / sizeof *s_allowed; i++)
        if (notify_destination_check_url(NULL, s_allowed[i]) != NOTIFY_DEST_OK)
            fail_msg("not allowed: %s", s_allowed[i]);
}

static void test_what_is_no_http_url_or_no_address_is_invalid(void **state)
{
    for (size_t i = 0; i < sizeof s_invalid / sizeof *s_invalid; i++)
        if (notify_destination_check_url(NULL, s_invalid[i]) != NOTIFY_DEST_INVALID)
            fail_msg("not invalid: %s", s_invalid[i]);
}

static void test_curl_normalises_numeric_ipv4_but_not_a_trailing_dot(void **state)
{
    /* what notify_destination.c does not rely on, but should know: libcurl's URL API turns
     * these spellings into dotted quads itself, and leaves a trailing dot alone */
    const char *const spellings[] = {"http://0x7f000001/", "http://2130706433/",
                                     "http://0177.0.0.1/", "http://127.1/"};
    for (size_t i = 0; i < sizeof spellings / sizeof *spellings; i++) {
        CURLU *url = curl_url();
        char *host = NULL;
        assert_int_equal(curl_url_set(url, CURLUPART_URL, spellings[i], 0), CURLUE_OK);
        assert_int_equal(curl_url_get(url, CURLUPART_HOST, &host, 0), CURLUE_OK);
        assert_string_equal(host, "127.0.0.1");
        curl_free(host);
        curl_url_cleanup(url);
    }
    CURLU *url = curl_url();
    char *host = NULL;
    assert_int_equal(curl_url_set(url, CURLUPART_URL, "http://127.0.0.1./", 0), CURLUE_OK);
    assert_int_equal(curl_url_get(url, CURLUPART_HOST, &host, 0), CURLUE_OK);
    assert_string_equal(host, "127.0.0.1.");
    curl_free(host);
    curl_url_cleanup(url);
    assert_int_equal(notify_destination_check_url(NULL, "http://127.0.0.1./"), NOTIFY_DEST_REFUSED);
}

static void test_allow_listed_blocks_admit_every_spelling_of_their_addresses(void **state)
{
    notify_allow_t *allow = s_allow("[\"127.0.0.1/32\", \"::1\", \"10.20.0.0/16\"]");
    const char *const admitted[] = {"http://127.0.0.1/h", "http://0x7f000001/h",
                                    "http://[::ffff:127.0.0.1]/h", "http://[::1]/h",
                                    "http://10.20.30.40/h"};
    for (size_t i = 0; i < sizeof admitted / sizeof *admitted; i++)
        if (notify_destination_check_url(allow, admitted[i]) != NOTIFY_DEST_OK)
            fail_msg("not admitted: %s", admitted[i]);
    assert_int_equal(notify_destination_check_url(allow, "http://127.0.0.2/h"),
                     NOTIFY_DEST_REFUSED);
    assert_int_equal(notify_destination_check_url(allow, "http://10.21.0.1/h"),
                     NOTIFY_DEST_REFUSED);
    assert_int_equal(notify_destination_check_url(allow, "http://localhost/h"),
                     NOTIFY_DEST_REFUSED);
    /* user-info stays refused whatever the list says */
    assert_int_equal(notify_destination_check_url(allow, "http://u:p@127.0.0.1/h"),
                     NOTIFY_DEST_REFUSED);
    struct sockaddr_storage ss;
    assert_true(notify_destination_address_allowed(allow, s_sockaddr("127.0.0.1", &ss)));
    assert_true(notify_destination_address_allowed(allow, s_sockaddr("::ffff:127.0.0.1", &ss)));
    assert_true(notify_destination_address_allowed(allow, s_sockaddr("::1", &ss)));
    assert_false(notify_destination_address_allowed(allow, s_sockaddr("127.0.0.2", &ss)));
    notify_allow_destroy(&allow);
}

static void test_an_allow_listed_name_passes_the_url_check_but_not_the_connection(void **state)
{
    notify_allow_t *allow = s_allow("[\"localhost\", \"Receiver.Internal.\"]");
    assert_int_equal(notify_destination_check_url(allow, "http://localhost:8080/h"),
                     NOTIFY_DEST_OK);
    assert_int_equal(notify_destination_check_url(allow, "http://receiver.internal/h"),
                     NOTIFY_DEST_OK);
    assert_int_equal(notify_destination_check_url(allow, "http://api.localhost/h"),
                     NOTIFY_DEST_REFUSED);
    assert_int_equal(notify_destination_check_url(allow, "http://127.0.0.1/h"),
                     NOTIFY_DEST_REFUSED);
    struct sockaddr_storage ss;
    assert_false(notify_destination_address_allowed(allow, s_sockaddr("127.0.0.1", &ss)));
    assert_false(notify_destination_address_allowed(allow, s_sockaddr("::1", &ss)));
    notify_allow_destroy(&allow);
}

static void test_connections_to_internal_addresses_are_refused(void **state)
{
    const char *const internal[] = {
        "127.0.0.1",        "127.255.0.9",     "0.0.0.0",    "10.1.2.3",
        "172.16.5.4",       "192.168.0.1",     "100.64.1.1", "169.254.169.254",
        "224.0.0.251",      "255.255.255.255", "::1",        "::",
        "fe80::1",          "fd00::1",         "ff02::fb",   "::ffff:10.0.0.1",
        "::ffff:127.0.0.1", "64:ff9b::a00:1"};
    struct sockaddr_storage ss;
    for (size_t i = 0; i < sizeof internal / sizeof *internal; i++)
        if (notify_destination_address_allowed(NULL, s_sockaddr(internal[i], &ss)))
            fail_msg("connection allowed to %s", internal[i]);
    const char *const public[] = {"93.184.216.34", "8.8.8.8", "2606:4700::1111",
                                  "::ffff:93.184.216.34"};
    for (size_t i = 0; i < sizeof public / sizeof *public; i++)
        if (!notify_destination_address_allowed(NULL, s_sockaddr(public[i], &ss)))
            fail_msg("connection refused to %s", public[i]);
}

static void test_a_bad_allow_list_entry_is_named(void **state)
{
    s_allow_refused("\"127.0.0.1\"", "notify.webhook_allow");
    s_allow_refused("[\"127.0.0.1/33\"]", "notify.webhook_allow[0]");
    s_allow_refused("[\"ok.example\", \"::1/129\"]", "notify.webhook_allow[1]");
    s_allow_refused("[\"10.0.0.0/\"]", "notify.webhook_allow[0]");
    s_allow_refused("[\"bad name\"]", "notify.webhook_allow[0]");
    s_allow_refused("[\"\"]", "notify.webhook_allow[0]");
    s_allow_refused("[42]", "notify.webhook_allow[0]");
    s_allow_refused("[\"host.example/24\"]", "notify.webhook_allow[0]");
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_spelling_of_an_internal_destination_is_refused),
        cmocka_unit_test(test_public_destinations_are_allowed),
        cmocka_unit_test(test_what_is_no_http_url_or_no_address_is_invalid),
        cmocka_unit_test(test_curl_normalises_numeric_ipv4_but_not_a_trailing_dot),
        cmocka_unit_test(test_allow_listed_blocks_admit_every_spelling_of_their_addresses),
        cmocka_unit_test(test_an_allow_listed_name_passes_the_url_check_but_not_the_connection),
        cmocka_unit_test(test_connections_to_internal_addresses_are_refused),
        cmocka_unit_test(test_a_bad_allow_list_entry_is_named),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return failed;
}
