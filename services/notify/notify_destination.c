/* Webhook destinations: where notify may send, checked twice.
 *
 * 1. When a subscription is stored (notify_destination_check_url): the URL is parsed with
 *    libcurl's URL API; user-info (user:pass@), a scheme other than http or https, a host named
 *    localhost or *.localhost, and a numeric host in a refused range are refused, whatever the
 *    spelling of the number (0x7f000001, 2130706433, 0177.0.0.1, 127.1, [::ffff:127.0.0.1]):
 *    the host is normalised here (s_ipv4_parse follows the WHATWG URL parser, which is what
 *    libcurl and browsers accept) and never resolved.
 * 2. When a webhook is sent (notify_destination_address_allowed, from libcurl's open-socket
 *    callback in notify_webhook.c): the address libcurl is about to connect to, after its own
 *    name resolution, so that a name resolving to an internal address, or DNS rebinding between
 *    the two checks, does not get round the first.
 *
 * Refused: loopback (127/8, ::1), unspecified (0/8, ::), link-local (169.254/16, fe80::/10),
 * private (10/8, 172.16/12, 192.168/16), shared/CGNAT (100.64/10), multicast (224/4, ff00::/8),
 * reserved and broadcast (240/4), unique-local (fc00::/7), site-local (fec0::/10), and every
 * IPv6 form that embeds a refused IPv4 address (mapped ::ffff:0:0/96, compatible ::/96, NAT64
 * 64:ff9b::/96, 6to4 2002::/16).
 *
 * The operator's allow-list ("notify.webhook_allow": host names and addresses or CIDR blocks)
 * admits internal receivers: a listed address or block is allowed at both checks; a listed host
 * name lets a URL naming it through the first check only, so the addresses it resolves to must
 * still be public or listed (a DNS change cannot turn a trusted name into a door inward). */
#include "notify.h"
#include "nrm_alloc.h"
#include "nrm_validate.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_HOST_MAX 256
#define S_IPV4_PARTS 4
#define S_V4_BITS 32
#define S_V6_BITS 128
#define S_V6_BYTES 16
#define S_V4_BYTES 4
#define S_MAPPED_PREFIX_BITS 96
#define S_LOCALHOST "localhost"

/* One entry of the allow-list: a host name (lower case, no trailing dot) or an address block. */
typedef struct {
    char *name; /* NULL for a block */
    int family; /* AF_INET or AF_INET6 for a block */
    uint8_t addr[S_V6_BYTES];
    int prefix; /* bits */
} s_allowed_t;

struct notify_allow_t {
    s_allowed_t *entries;
    size_t n;
};

/* An address in the form the checks compare: IPv4-mapped IPv6 becomes IPv4. */
typedef struct {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[S_V6_BYTES];
} s_addr_t;

/* A refused block. */
typedef struct {
    uint8_t addr[S_V6_BYTES];
    int prefix;
} s_block_t;

static const s_block_t s_refused_v4[] = {
    {{0, 0, 0, 0}, 8},      /* unspecified, "this network" */
    {{10, 0, 0, 0}, 8},     /* private */
    {{100, 64, 0, 0}, 10},  /* shared address space (CGNAT) */
    {{127, 0, 0, 0}, 8},    /* loopback */
    {{169, 254, 0, 0}, 16}, /* link-local (cloud metadata) */
    {{172, 16, 0, 0}, 12},  /* private */
    {{192, 168, 0, 0}, 16}, /* private */
    {{224, 0, 0, 0}, 4},    /* multicast */
    {{240, 0, 0, 0}, 4},    /* reserved, broadcast */
};

static const s_block_t s_refused_v6[] = {
    {{0}, 128},                                              /* unspecified :: */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128}, /* loopback ::1 */
    {{0xfe, 0x80}, 10},                                      /* link-local */
    {{0xfe, 0xc0}, 10},                                      /* site-local (deprecated) */
    {{0xfc, 0x00}, 7},                                       /* unique-local */
    {{0xff, 0x00}, 8},                                       /* multicast */
};

/* True when the first prefix bits of a and b are equal. */
static bool s_prefix_equal(const uint8_t *a, const uint8_t *b, int prefix)
{
    int whole = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, (size_t)whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

/* True when the IPv4 address (4 bytes) is in a refused block. */
static bool s_v4_refused(const uint8_t *v4)
{
    for (size_t i = 0; i < sizeof s_refused_v4 / sizeof s_refused_v4[0]; i++)
        if (s_prefix_equal(v4, s_refused_v4[i].addr, s_refused_v4[i].prefix))
            return true;
    return false;
}

/* True when the IPv6 address (16 bytes) is refused, itself or through the IPv4 it embeds. */
static bool s_v6_refused(const uint8_t *v6)
{
    for (size_t i = 0; i < sizeof s_refused_v6 / sizeof s_refused_v6[0]; i++)
        if (s_prefix_equal(v6, s_refused_v6[i].addr, s_refused_v6[i].prefix))
            return true;
    static const uint8_t compatible[12] = {0};
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};
    if (memcmp(v6, compatible, sizeof compatible) == 0 || memcmp(v6, mapped, sizeof mapped) == 0 ||
        memcmp(v6, nat64, sizeof nat64) == 0)
        return s_v4_refused(v6 + 12);
    if (v6[0] == 0x20 && v6[1] == 0x02) /* 6to4: 2002:AABB:CCDD::/48 carries A.B.C.D */
        return s_v4_refused(v6 + 2);
    return false;
}

/* Fills *out from 16 bytes of IPv6, turning an IPv4-mapped address into its IPv4 form. */
static void s_addr_v6(const uint8_t *v6, s_addr_t *out)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(out, 0, sizeof *out);
    if (memcmp(v6, mapped, sizeof mapped) == 0) {
        out->family = AF_INET;
        memcpy(out->addr, v6 + 12, S_V4_BYTES);
    } else {
        out->family = AF_INET6;
        memcpy(out->addr, v6, S_V6_BYTES);
    }
}

/* True when the address is refused by the ranges above. */
static bool s_addr_refused(const s_addr_t *a)
{
    return a->family == AF_INET ? s_v4_refused(a->addr) : s_v6_refused(a->addr);
}

/* True when an allow-list block holds the address. */
static bool s_addr_listed(const notify_allow_t *allow, const s_addr_t *a)
{
    for (size_t i = 0; allow && i < allow->n; i++) {
        const s_allowed_t *e = &allow->entries[i];
        if (!e->name && e->family == a->family && s_prefix_equal(a->addr, e->addr, e->prefix))
            return true;
    }
    return false;
}

/* True when the allow-list names the host (lower case, no trailing dot). */
static bool s_name_listed(const notify_allow_t *allow, const char *host)
{
    for (size_t i = 0; allow && i < allow->n; i++)
        if (allow->entries[i].name && strcmp(allow->entries[i].name, host) == 0)
            return true;
    return false;
}

/* One part of a numeric IPv4 host as the WHATWG URL parser reads it: decimal, 0x hex or
 * 0-led octal; "0x" alone is 0. Returns false when it is not a number. */
static bool s_ipv4_number(const char *s, size_t len, uint64_t *out)
{
    int base = 10;
    if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
        len -= 2;
    } else if (len >= 2 && s[0] == '0') {
        base = 8;
        s++;
        len--;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i], d;
        if (isdigit(c))
            d = c - '0';
        else if (base == 16 && isxdigit(c))
            d = tolower(c) - 'a' + 10;
        else
            return false;
        if (d >= base)
            return false;
        v = v * (uint64_t)base + (uint64_t)d;
        if (v > UINT32_MAX)
            v = (uint64_t)UINT32_MAX + 1; /* too big either way; keep it from wrapping */
    }
    *out = v;
    return true;
}

/* The host as a numeric IPv4 address, in any spelling the URL parsers accept (1 to 4 parts,
 * the last filling the remaining bytes; a trailing dot allowed). Returns 1 and fills out (4
 * bytes) for an address, 0 when the host is not numeric, -1 when it ends in a number but is no
 * address ("1.2.3.4.5", "4294967296": refused rather than handed to a resolver). */
static int s_ipv4_parse(const char *host, uint8_t out[S_V4_BYTES])
{
    char buf[S_HOST_MAX];
    size_t len = strlen(host);
    if (len == 0 || len >= sizeof buf)
        return 0;
    memcpy(buf, host, len + 1);
    if (buf[len - 1] == '.')
        buf[--len] = '\0';
    if (len == 0)
        return 0;
    const char *last = strrchr(buf, '.');
    last = last ? last + 1 : buf;
    uint64_t probe;
    if (!s_ipv4_number(last, strlen(last), &probe) || !*last)
        return 0; /* the last label is not a number: a name */
    uint64_t parts[S_IPV4_PARTS];
    size_t n = 0;
    for (const char *p = buf;;) {
        const char *dot = strchr(p, '.');
        size_t plen = dot ? (size_t)(dot - p) : strlen(p);
        if (n == S_IPV4_PARTS || plen == 0 || !s_ipv4_number(p, plen, &parts[n]))
            return -1;
        n++;
        if (!dot)
            break;
        p = dot + 1;
    }
    for (size_t i = 0; i + 1 < n; i++)
        if (parts[i] > 255)
            return -1;
    if (parts[n - 1] >= ((uint64_t)1 << (8 * (S_IPV4_PARTS - n + 1))))
        return -1;
    uint32_t v = (uint32_t)parts[n - 1];
    for (size_t i = 0; i + 1 < n; i++)
        v |= (uint32_t)parts[i] << (8 * (S_IPV4_PARTS - 1 - i));
    out[0] = (uint8_t)(v >> 24);
    out[1] = (uint8_t)(v >> 16);
    out[2] = (uint8_t)(v >> 8);
    out[3] = (uint8_t)v;
    return 1;
}

/* True for "localhost" and any name under it, given lower case without a trailing dot. */
static bool s_is_localhost(const char *host)
{
    size_t n = strlen(host), k = strlen(S_LOCALHOST);
    return strcmp(host, S_LOCALHOST) == 0 ||
           (n > k && strcmp(host + n - k, S_LOCALHOST) == 0 && host[n - k - 1] == '.');
}

/* Lower-cases host into out (S_HOST_MAX) without one trailing dot. False when too long. */
static bool s_host_key(const char *host, char out[S_HOST_MAX])
{
    size_t n = strlen(host);
    if (n >= S_HOST_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)host[i]);
    out[n] = '\0';
    if (n > 0 && out[n - 1] == '.')
        out[n - 1] = '\0';
    return true;
}

/* Checks a host as curl_url gives it ("[v6]", a number, or a name). */
static notify_dest_t s_check_host(const notify_allow_t *allow, const char *host)
{
    char key[S_HOST_MAX];
    if (!host[0] || !s_host_key(host, key) || strchr(key, '%'))
        return NOTIFY_DEST_INVALID;
    s_addr_t a;
    if (key[0] == '[') {
        size_t n = strlen(key);
        if (n < 3 || key[n - 1] != ']')
            return NOTIFY_DEST_INVALID;
        key[n - 1] = '\0';
        uint8_t v6[S_V6_BYTES];
        if (inet_pton(AF_INET6, key + 1, v6) != 1)
            return NOTIFY_DEST_INVALID;
        s_addr_v6(v6, &a);
    } else {
        memset(&a, 0, sizeof a);
        int numeric = s_ipv4_parse(key, a.addr);
        if (numeric < 0)
            return NOTIFY_DEST_INVALID;
        if (numeric == 0) { /* a name: resolved only when sending, checked then */
            if (s_name_listed(allow, key))
                return NOTIFY_DEST_OK;
            return s_is_localhost(key) ? NOTIFY_DEST_REFUSED : NOTIFY_DEST_OK;
        }
        a.family = AF_INET;
    }
    if (s_addr_listed(allow, &a))
        return NOTIFY_DEST_OK;
    return s_addr_refused(&a) ? NOTIFY_DEST_REFUSED : NOTIFY_DEST_OK;
}

notify_dest_t notify_destination_check_url(const notify_allow_t *allow, const char *address)
{
    for (const char *p = address; *p; p++)
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return NOTIFY_DEST_INVALID;
    CURLU *url = curl_url();
    if (!url)
        return NOTIFY_DEST_INVALID;
    char *scheme = NULL, *host = NULL, *user = NULL, *password = NULL, *zone = NULL;
    notify_dest_t verdict = NOTIFY_DEST_INVALID;
    if (curl_url_set(url, CURLUPART_URL, address, 0) == CURLUE_OK &&
        curl_url_get(url, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(url, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0)) {
        bool userinfo = curl_url_get(url, CURLUPART_USER, &user, 0) == CURLUE_OK ||
                        curl_url_get(url, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK;
        bool zoned = curl_url_get(url, CURLUPART_ZONEID, &zone, 0) == CURLUE_OK;
        verdict = userinfo || zoned ? NOTIFY_DEST_REFUSED : s_check_host(allow, host);
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(password);
    curl_free(zone);
    curl_url_cleanup(url);
    return verdict;
}

bool notify_destination_address_allowed(const notify_allow_t *allow, const struct sockaddr *sa)
{
    s_addr_t a;
    memset(&a, 0, sizeof a);
    if (sa->sa_family == AF_INET) {
        a.family = AF_INET;
        memcpy(a.addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, S_V4_BYTES);
    } else if (sa->sa_family == AF_INET6) {
        s_addr_v6((const uint8_t *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, &a);
    } else {
        return false; /* unix sockets and the like are never a webhook */
    }
    return s_addr_listed(allow, &a) || !s_addr_refused(&a);
}

/* Parses one allow-list entry into *e: "name", "address" or "address/prefix". */
static bool s_parse_entry(const char *text, s_allowed_t *e)
{
    memset(e, 0, sizeof *e);
    char buf[S_HOST_MAX];
    if (!s_host_key(text, buf) || !buf[0])
        return false;
    char *slash = strchr(buf, '/');
    long prefix = -1;
    if (slash) {
        char *end = NULL;
        *slash = '\0';
        prefix = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || prefix < 0)
            return false;
    }
    uint8_t v6[S_V6_BYTES];
    if (inet_pton(AF_INET, buf, e->addr) == 1) {
        e->family = AF_INET;
        e->prefix = prefix < 0 ? S_V4_BITS : (int)prefix;
        return prefix <= S_V4_BITS;
    }
    if (inet_pton(AF_INET6, buf, v6) == 1) {
        if (prefix > S_V6_BITS)
            return false;
        s_addr_t a;
        s_addr_v6(v6, &a);
        e->family = a.family;
        memcpy(e->addr, a.addr, sizeof e->addr);
        e->prefix = prefix < 0 ? S_V6_BITS : (int)prefix;
        if (a.family == AF_INET) { /* ::ffff:a.b.c.d/n: the IPv4 block of n - 96 bits */
            if (e->prefix < S_MAPPED_PREFIX_BITS)
                return false;
            e->prefix -= S_MAPPED_PREFIX_BITS;
        }
        return true;
    }
    if (slash)
        return false;
    for (const char *p = buf; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
            return false;
    e->name = nrm_xstrdup(buf);
    return e->name != NULL;
}

nrm_status_t notify_allow_load(nrm_config_t *config, notify_allow_t **out, nrm_error_t *err)
{
    *out = NULL;
    json_t *list = nrm_config_get(config, "notify.webhook_allow");
    if (list && !json_is_array(list) && !json_is_null(list))
        return nrm_fail(err, NRM_FAILED_PRECONDITION, "notify.webhook_allow",
                        "notify.webhook_allow is a list of host names, addresses and CIDR blocks");
    notify_allow_t *allow = nrm_xcalloc(1, sizeof *allow);
    size_t count = json_array_size(list);
    allow->entries = nrm_xcalloc(count ? count : 1, sizeof *allow->entries);
    for (size_t i = 0; i < count; i++) {
        const char *text = json_string_value(json_array_get(list, i));
        if (!text || !s_parse_entry(text, &allow->entries[i])) {
            char field[NRM_ERROR_FIELD_MAX];
            nrm_path_index(field, sizeof field, "notify.webhook_allow", i);
            notify_allow_destroy(&allow);
            return nrm_fail(err, NRM_FAILED_PRECONDITION, field,
                            "an allowed destination is a host name, an address or a CIDR block"
                            " (\"10.1.2.0/24\", \"fd00::/8\")");
        }
        allow->n++;
    }
    *out = allow;
    return NRM_OK;
}

void notify_allow_destroy(notify_allow_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    notify_allow_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++)
        free(self->entries[i].name);
    free(self->entries);
    free(self);
    *self_p = NULL;
}
