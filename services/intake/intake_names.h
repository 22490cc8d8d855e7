/* Names as people write them (issue 12, section 4): one key for the spellings of a name that
 * differ only by script, accents, composition, case, punctuation or word order, and a
 * similarity for the spellings that differ by a letter or two. ICU does the Unicode work. */
#ifndef INTAKE_NAMES_H
#define INTAKE_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* The version of the linking hash's input these functions give (intake migration 007 records
 * the version the stored hashes were computed with). */
#define INTAKE_NAMES_VERSION 2

typedef struct intake_names_t intake_names_t;

/* The names' state, never NULL; the caller owns it. ICU's normaliser and transliterators are
 * built at the first name that is not ASCII (building them takes milliseconds and about 5 MB
 * that an intake given only ASCII names never needs); when ICU cannot build them, that call
 * logs it without any name and aborts the process. */
intake_names_t *intake_names_new(void);
void intake_names_free(intake_names_t *self);

/* The key of name: NFKC with case folding; Arabic script to Latin by intake's own rules (long
 * vowels and ta marbuta written as vowels, short-vowel marks dropped); then
 * "Any-Latin; NFD; [:Mn:] Remove; NFC; Latin-ASCII; Lower". Apostrophes are dropped ("o'brien",
 * Cyrillic's soft sign); anything else but an ASCII letter or digit splits words; a letter repeated
 * in a row is written once ("mohammed" = "mohamed"); the words are sorted and joined by one space.
 * An ASCII name is keyed without ICU, with the same result. Returns a malloc'd string the caller
 * wipes and frees ("" for a name with no letters), or NULL when ICU fails on this input. */
char *intake_names_key(intake_names_t *self, const char *name);

/* Jaro-Winkler similarity of two byte strings, in [0, 1] (1 when equal; prefix scale 0.1 over
 * at most 4 characters). */
double intake_jaro_winkler(const char *a, size_t alen, const char *b, size_t blen);

/* Similarity of two keys (intake_names_key), in [0, 1], independent of word order: each word
 * is matched to its most similar word of the other key (Jaro-Winkler), weighted by its length,
 * in both directions, and the two directions are averaged. 1 when the keys are equal, 0 when
 * either has no word of letters, and 0 when their words of digits differ (a number is not
 * misspelt: "amina 1" and "amina 2" are two records); equal words of digits are not scored. */
double intake_names_similarity(const char *a, const char *b);

#endif
