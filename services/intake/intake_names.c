/* Name keys and similarity (intake_names.h). The Arabic rules are intake's own: ICU's stock
 * Arabic-Latin writes every letter with its scholarly mark (and no vowel for a long vowel), so
 * "أمينة" would come out "amyn" rather than the "amina" people write. */
#include "intake_names.h"
#include "nrm_alloc.h"
#include "nrm_log.h"

#include <sodium.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utrans.h>

#include <stdlib.h>
#include <string.h>

#define S_WORDS_MAX 64    /* words compared per name; the rest are ignored by the similarity */
#define S_NUMBERS_MAX 256 /* the words of digits of a key, compared as one string */
#define S_JW_PREFIX 4
#define S_JW_SCALE 0.1

struct intake_names_t {
    const UNormalizer2 *nfkc_cf; /* ICU's, not owned */
    UTransliterator *arabic;     /* owned */
    UTransliterator *latin;      /* owned */
};

/* Arabic letters to Latin as names are usually spelt: alef and its forms, ta marbuta and
 * alef maqsura as "a"; waw and ya as the long vowels "u"/"i" after a letter (the rules see
 * the Latin already written to their left), as "w"/"y" at the start of a word or before alef; hamza
 * and ayn dropped; short-vowel marks, shadda, sukun and tatweel dropped. Persian and Urdu letters
 * are mapped to their nearest sounds. */
static const char s_arabic_rules[] =
    "[\\u064B-\\u0652\\u0670\\u0640\\u0621\\u0639] > ;"
    "[\\u0627\\u0623\\u0622\\u0671\\u0629\\u0649] > a;"
    "\\u0625 > i;"
    "\\u0648 } \\u0627 > w;"
    "[a-z] { \\u0648 > u;"
    "\\u0648 > w;"
    "\\u0624 > u;"
    "[\\u064A\\u06CC] } \\u0627 > y;"
    "[a-z] { [\\u064A\\u06CC] > i;"
    "[\\u064A\\u06CC] > y;"
    "\\u0626 > i;"
    "\\u0628 > b; \\u062A > t; \\u062B > th; \\u062C > j; \\u062D > h; \\u062E > kh;"
    "\\u062F > d; \\u0630 > dh; \\u0631 > r; \\u0632 > z; \\u0633 > s; \\u0634 > sh;"
    "\\u0635 > s; \\u0636 > d; \\u0637 > t; \\u0638 > z; \\u063A > gh; \\u0641 > f;"
    "\\u0642 > q; \\u0643 > k; \\u06A9 > k; \\u0644 > l; \\u0645 > m; \\u0646 > n;"
    "\\u0647 > h; \\u067E > p; \\u0686 > ch; \\u06AF > g;";

/* The rest, from ICU's stock transliterators. */
static const char s_latin_id[] = "Any-Latin; NFD; [:Mn:] Remove; NFC; Latin-ASCII; Lower";

/* A UTF-16 copy of ASCII text (the rules and the id), malloc'd; *len its length. */
static UChar *s_u16_ascii(const char *text, int32_t *len)
{
    size_t n = strlen(text);
    UChar *out = nrm_xcalloc(n + 1, sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = (UChar)(unsigned char)text[i];
    *len = (int32_t)n;
    return out;
}

intake_names_t *intake_names_new(void)
{
    return nrm_xcalloc(1, sizeof(intake_names_t));
}

/* Builds the normaliser and the transliterators at the first name that needs them. Aborts the
 * process when ICU cannot build them: a name hashed as written while others are hashed by their
 * key would never link, and the rules and ids are fixed, so only a broken ICU or no memory can
 * fail here (the report is not acknowledged, and the restart logs the same line again). */
static void s_icu_open(intake_names_t *self)
{
    if (self->latin)
        return;
    UErrorCode ec = U_ZERO_ERROR;
    self->nfkc_cf = unorm2_getNFKCCasefoldInstance(&ec);
    int32_t rules_len = 0, id_len = 0;
    UChar *rules = s_u16_ascii(s_arabic_rules, &rules_len);
    UChar *name = s_u16_ascii("nrm-Arabic-Latin", &id_len);
    UParseError parse;
    if (U_SUCCESS(ec))
        self->arabic = utrans_openU(name, id_len, UTRANS_FORWARD, rules, rules_len, &parse, &ec);
    free(rules);
    free(name);
    UChar *id = s_u16_ascii(s_latin_id, &id_len);
    if (U_SUCCESS(ec))
        self->latin = utrans_openU(id, id_len, UTRANS_FORWARD, NULL, 0, &parse, &ec);
    free(id);
    if (U_FAILURE(ec)) {
        nrm_log_error("names: ICU cannot build the transliterators", "{s:s}", "icu",
                      u_errorName(ec));
        abort();
    }
}

void intake_names_free(intake_names_t *self)
{
    if (!self)
        return;
    if (self->arabic)
        utrans_close(self->arabic);
    if (self->latin)
        utrans_close(self->latin);
    free(self);
}

/* Wipes and frees a UTF-16 buffer of cap units. */
static void s_u16_free(UChar *buf, int32_t cap)
{
    if (buf)
        sodium_memzero(buf, (size_t)cap * sizeof *buf);
    free(buf);
}

/* Runs t over text (length *len, capacity *cap), growing the buffer when the result does not
 * fit. 0 or -1 (ICU failure). */
static int s_translit(const UTransliterator *t, UChar **text, int32_t *len, int32_t *cap)
{
    for (;;) {
        UChar *copy = nrm_xcalloc((size_t)*cap, sizeof *copy);
        memcpy(copy, *text, (size_t)*len * sizeof *copy);
        int32_t n = *len, limit = *len;
        UErrorCode ec = U_ZERO_ERROR;
        utrans_transUChars(t, copy, &n, *cap, 0, &limit, &ec);
        if (ec == U_BUFFER_OVERFLOW_ERROR) {
            s_u16_free(copy, *cap);
            int32_t bigger = *cap * 2 > n + 1 ? *cap * 2 : n + 1;
            UChar *grown = nrm_xcalloc((size_t)bigger, sizeof *grown);
            memcpy(grown, *text, (size_t)*len * sizeof *grown);
            s_u16_free(*text, *cap);
            *text = grown;
            *cap = bigger;
            continue;
        }
        if (U_FAILURE(ec)) {
            s_u16_free(copy, *cap);
            return -1;
        }
        s_u16_free(*text, *cap);
        *text = copy;
        *len = n;
        return 0;
    }
}

/* name as UTF-16 after NFKC with case folding; *len and *cap as for s_translit. NULL when the
 * text is not UTF-8 or ICU fails. */
static UChar *s_folded(const intake_names_t *self, const char *name, int32_t *len, int32_t *cap)
{
    UErrorCode ec = U_ZERO_ERROR;
    int32_t n = 0;
    u_strFromUTF8(NULL, 0, &n, name, -1, &ec);
    if (ec != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(ec))
        return NULL;
    ec = U_ZERO_ERROR;
    UChar *raw = nrm_xcalloc((size_t)n + 1, sizeof *raw);
    u_strFromUTF8(raw, n + 1, NULL, name, -1, &ec);
    if (U_FAILURE(ec)) {
        s_u16_free(raw, n + 1);
        return NULL;
    }
    int32_t need = unorm2_normalize(self->nfkc_cf, raw, n, NULL, 0, &ec);
    if (ec != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(ec)) {
        s_u16_free(raw, n + 1);
        return NULL;
    }
    ec = U_ZERO_ERROR;
    *cap = 2 * need + 16; /* room for transliteration to grow */
    UChar *out = nrm_xcalloc((size_t)*cap, sizeof *out);
    *len = unorm2_normalize(self->nfkc_cf, raw, n, out, *cap, &ec);
    s_u16_free(raw, n + 1);
    if (U_FAILURE(ec)) {
        s_u16_free(out, *cap);
        return NULL;
    }
    return out;
}

/* qsort comparator over word pointers (byte order). */
static int s_word_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* True for the apostrophes and primes transliteration leaves inside a word. */
static bool s_apostrophe(UChar c)
{
    return c == '\'' || c == 0x2019 || c == 0x02B9 || c == 0x02BA || c == 0x02BC || c == 0x02BE ||
           c == 0x02BF;
}

/* The key from transliterated ASCII: words of letters and digits (apostrophes dropped), a letter
 * repeated in a row written once, sorted, joined by one space. Malloc'd. */
static char *s_join_words(const UChar *text, int32_t len)
{
    char *buf = nrm_xcalloc((size_t)len + 1, 1);
    char **words = nrm_xcalloc((size_t)len + 1, sizeof *words);
    size_t count = 0, w = 0;
    bool in_word = false;
    for (int32_t i = 0; i < len; i++) {
        UChar c = text[i];
        bool letter = c >= 'a' && c <= 'z', digit = c >= '0' && c <= '9';
        if (s_apostrophe(c))
            continue; /* "o'brien" is one word, and so is Cyrillic's soft sign in "ol'ga" */
        if (!letter && !digit) {
            if (in_word)
                buf[w++] = '\0';
            in_word = false;
            continue;
        }
        if (!in_word)
            words[count++] = buf + w;
        else if (letter && buf[w - 1] == (char)c)
            continue; /* "mm" is written "m" */
        in_word = true;
        buf[w++] = (char)c;
    }
    buf[w] = '\0';
    qsort(words, count, sizeof *words, s_word_cmp);
    char *out = nrm_xcalloc((size_t)len + 1, 1);
    size_t o = 0;
    for (size_t i = 0; i < count; i++) {
        size_t n = strlen(words[i]);
        if (i > 0)
            out[o++] = ' ';
        memcpy(out + o, words[i], n);
        o += n;
    }
    out[o] = '\0';
    sodium_memzero(buf, (size_t)len + 1);
    free(buf);
    free(words);
    return out;
}

/* True when text is ASCII alone. */
static bool s_ascii(const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p >= 0x80)
            return false;
    return true;
}

/* The key of an ASCII name. Every ICU step is the identity on ASCII but the case (NFKC with case
 * folding and Lower both write A-Z as a-z), so the words are taken from the lowered text. */
static char *s_ascii_key(const char *name)
{
    size_t n = strlen(name);
    UChar *text = nrm_xcalloc(n + 1, sizeof *text);
    for (size_t i = 0; i < n; i++)
        text[i] = (UChar)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
    char *key = s_join_words(text, (int32_t)n);
    s_u16_free(text, (int32_t)n + 1);
    return key;
}

char *intake_names_key(intake_names_t *self, const char *name)
{
    if (!name)
        name = "";
    if (s_ascii(name))
        return s_ascii_key(name);
    s_icu_open(self);
    int32_t len = 0, cap = 0;
    UChar *text = s_folded(self, name, &len, &cap);
    if (!text)
        return NULL;
    if (s_translit(self->arabic, &text, &len, &cap) != 0 ||
        s_translit(self->latin, &text, &len, &cap) != 0) {
        s_u16_free(text, cap);
        return NULL;
    }
    char *key = s_join_words(text, len);
    s_u16_free(text, cap);
    return key;
}

double intake_jaro_winkler(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen == 0 && blen == 0)
        return 1.0;
    if (alen == 0 || blen == 0)
        return 0.0;
    size_t window = (alen > blen ? alen : blen) / 2;
    window = window > 0 ? window - 1 : 0;
    bool *am = nrm_xcalloc(alen, sizeof *am), *bm = nrm_xcalloc(blen, sizeof *bm);
    size_t matches = 0;
    for (size_t i = 0; i < alen; i++) {
        size_t lo = i > window ? i - window : 0, hi = i + window + 1 < blen ? i + window + 1 : blen;
        for (size_t j = lo; j < hi; j++)
            if (!bm[j] && a[i] == b[j]) {
                am[i] = bm[j] = true;
                matches++;
                break;
            }
    }
    double score = 0.0;
    if (matches > 0) {
        size_t half_transpositions = 0;
        for (size_t i = 0, j = 0; i < alen; i++) {
            if (!am[i])
                continue;
            while (!bm[j])
                j++;
            if (a[i] != b[j])
                half_transpositions++;
            j++;
        }
        double m = (double)matches;
        double jaro =
            (m / (double)alen + m / (double)blen + (m - (double)half_transpositions / 2.0) / m) /
            3.0;
        size_t prefix = 0;
        while (prefix < S_JW_PREFIX && prefix < alen && prefix < blen && a[prefix] == b[prefix])
            prefix++;
        score = jaro + (double)prefix * S_JW_SCALE * (1.0 - jaro);
    }
    free(am);
    free(bm);
    return score;
}

/* True when the word is all digits. */
static bool s_number(const char *word, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (word[i] < '0' || word[i] > '9')
            return false;
    return true;
}

/* Splits key into at most S_WORDS_MAX words of letters (pointers into key, lengths), and its
 * words of digits, in order, into numbers (at most numbers_cap bytes: each number and a
 * space). Returns the count of words of letters. */
static size_t s_words(const char *key, const char **words, size_t *lens, char *numbers,
                      size_t numbers_cap)
{
    size_t n = 0, used = 0;
    numbers[0] = '\0';
    for (const char *p = key; *p && n < S_WORDS_MAX;) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && *p != ' ')
            p++;
        size_t len = (size_t)(p - start);
        if (!s_number(start, len)) {
            words[n] = start;
            lens[n++] = len;
        } else if (used + len + 2 <= numbers_cap) {
            memcpy(numbers + used, start, len);
            used += len;
            numbers[used++] = ' ';
            numbers[used] = '\0';
        }
    }
    return n;
}

/* Each word of x matched to its most similar word of y, weighted by its length. */
static double s_directed(const char **xw, const size_t *xl, size_t xn, const char **yw,
                         const size_t *yl, size_t yn)
{
    double sum = 0.0, weight = 0.0;
    for (size_t i = 0; i < xn; i++) {
        double best = 0.0;
        for (size_t j = 0; j < yn; j++) {
            double s = intake_jaro_winkler(xw[i], xl[i], yw[j], yl[j]);
            best = s > best ? s : best;
        }
        sum += best * (double)xl[i];
        weight += (double)xl[i];
    }
    return weight > 0.0 ? sum / weight : 0.0;
}

double intake_names_similarity(const char *a, const char *b)
{
    const char *aw[S_WORDS_MAX], *bw[S_WORDS_MAX];
    size_t al[S_WORDS_MAX], bl[S_WORDS_MAX];
    char an_numbers[S_NUMBERS_MAX], bn_numbers[S_NUMBERS_MAX];
    size_t an = s_words(a, aw, al, an_numbers, sizeof an_numbers);
    size_t bn = s_words(b, bw, bl, bn_numbers, sizeof bn_numbers);
    if (strcmp(an_numbers, bn_numbers) != 0)
        return 0.0; /* numbers are not misspelt: other numbers, another record */
    if (an == 0 || bn == 0)
        return 0.0;
    if (strcmp(a, b) == 0)
        return 1.0;
    return (s_directed(aw, al, an, bw, bl, bn) + s_directed(bw, bl, bn, aw, al, an)) / 2.0;
}
