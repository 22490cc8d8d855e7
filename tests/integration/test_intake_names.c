/* Names as people write them, through a real nrm-intake (CURVE on, real PostgreSQL): a
 * generated set of name variants (accents, composition, case and punctuation, swapped order,
 * spelling variants, Arabic and Cyrillic script) each reported after its original, and
 * unrelated names with the same date of birth and nationality. A variant matches when it links
 * to the original's case or is proposed as its duplicate; the test prints precision and recall
 * over the pairs (no name is printed). Then: ResolveDuplicate confirm closes the newer case as
 * duplicate; dismiss keeps both and the pair is not proposed again, even by the start job's
 * re-hash, which is also checked here on cases stored with an older hash; strangers, case
 * managers and providers are refused ResolveDuplicate; a new case is compared with the oldest
 * intake.names.max_candidates open cases of its block. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "scenario.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 5000
#define OK NRM__V1__STATUS__STATUS_OK

static harness_t *h;

/* One pair: the original, the later report, whether they are the same person. */
typedef struct {
    const char *original;
    const char *later;
    bool same;
} s_pair_t;

static const s_pair_t s_pairs[] = {
    /* accents and composition */
    {"Amina Benali", "Am\xc3\xadna Benali", true},
    {"Amina Benali", "Ami\xcc\x81na Benali", true},
    {"Jose Maria Lopez",
     "Jos\xc3\xa9 Mar\xc3\xad"
     "a L\xc3\xb3pez",
     true},
    {"Zoe Muller", "Zo\xc3\xab M\xc3\xbcller", true},
    {"Francois Dubois", "Fran\xc3\xa7ois Dubois", true},
    {"Ines Garcia",
     "In\xc3\xa9s Garc\xc3\xad"
     "a",
     true},
    {"Nadege Kone", "Nad\xc3\xa8ge Kon\xc3\xa9", true},
    /* case, punctuation, width */
    {"Grace Adeyemi", "ADEYEMI, Grace", true},
    {"Mary-Jane Okafor", "mary jane okafor", true},
    {"Mary OBrien", "Mary O'Brien", true},
    {"Joy Eze", "\xef\xbc\xaa\xef\xbd\x8f\xef\xbd\x99 Eze", true},
    /* swapped order */
    {"Chinwe Eze", "Eze Chinwe", true},
    {"Li Wei", "Wei Li", true},
    {"Fatou Diallo", "DIALLO Fatou", true},
    /* spelling variants */
    {"Mohamed Ali", "Mohammed Ali", true},
    {"Aisha Bello", "Aicha Bello", true},
    {"Yusuf Ibrahim", "Youssef Ibrahim", true},
    {"Olga Petrova", "Olha Petrova", true},
    {"Katarzyna Nowak", "Katarzina Nowak", true},
    {"Blessing Okoro", "Blesing Okoro", true},
    {"Hadiza Musa", "Hadizah Musa", true},
    {"Fatima Zahra", "Fatma Zahra", true},
    {"Abdullahi Sani", "Abdulahi Sani", true},
    {"Esther Nwosu", "Ester Nwosu", true},
    {"Precious Obi", "Presious Obi", true},
    {"Svetlana Ivanova", "Swetlana Ivanova", true},
    {"Nkechi Adebayo", "Nkechi Adebayor", true},
    {"Aminata Toure", "Aminatou Toure", true},
    /* transliterations */
    {"Amina Khalil", "\xd8\xa3\xd9\x85\xd9\x8a\xd9\x86\xd8\xa9 \xd8\xae\xd9\x84\xd9\x8a\xd9\x84",
     true},
    {"Yasmin Haddad",
     "\xd9\x8a\xd8\xa7\xd8\xb3\xd9\x85\xd9\x8a\xd9\x86 \xd8\xad\xd8\xaf\xd8\xa7\xd8\xaf", true},
    {"Fatima Nasser", "\xd9\x81\xd8\xa7\xd8\xb7\xd9\x85\xd8\xa9 \xd9\x86\xd8\xa7\xd8\xb5\xd8\xb1",
     true},
    {"Yusuf Ibrahim",
     "\xd9\x8a\xd9\x88\xd8\xb3\xd9\x81 \xd8\xa5\xd8\xa8\xd8\xb1\xd8\xa7\xd9\x87\xd9\x8a\xd9\x85",
     true},
    {"Omar Farouk", "\xd8\xb9\xd9\x85\xd8\xb1 \xd9\x81\xd8\xa7\xd8\xb1\xd9\x88\xd9\x82", true},
    {"Layla Hassan", "\xd9\x84\xd9\x8a\xd9\x84\xd9\x89 \xd8\xad\xd8\xb3\xd9\x86", true},
    {"Ivan Petrov",
     "\xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd \xd0\x9f\xd0\xb5\xd1\x82\xd1\x80\xd0\xbe\xd0\xb2", true},
    {"Olga Smirnova",
     "\xd0\x9e\xd0\xbb\xd1\x8c\xd0\xb3\xd0\xb0 "
     "\xd0\xa1\xd0\xbc\xd0\xb8\xd1\x80\xd0\xbd\xd0\xbe\xd0\xb2\xd0\xb0",
     true},
    /* other people, same date of birth and nationality */
    {"Grace Adeyemi", "Joy Okonkwo", false},
    {"Chinwe Eze", "Chioma Obi", false},
    {"Fatou Diallo", "Mariam Traore", false},
    {"Olga Petrova", "Irina Sokolova", false},
    {"Mohamed Ali", "Ahmed Salem", false},
    {"Esther Nwosu", "Ruth Nwankwo", false},
    {"Blessing Okoro", "Favour Okafor", false},
    {"Hadiza Musa", "Halima Sule", false},
    {"Jose Maria Lopez", "Juan Carlos Perez", false},
    {"Amina Khalil", "Samira Khoury", false},
    {"Grace Adeyemi", "Joy Adeyemi", false}, /* twins */
    {"Ines Garcia", "Ines Garrido", false},
    {"Amina Benali", "Amira Bennani", false},
    {"Aisha Bello", "Aisha Balogun", false},
};
#define PAIRS (sizeof s_pairs / sizeof *s_pairs)

static int setup(void **state)
{
    (void)state;
    h = harness_new("intake_names");
    return harness_start(h, "intake", 0);
}

static int teardown(void **state)
{
    (void)state;
    harness_destroy(&h);
    return 0;
}

/* Reports full_name born dob as agency; the reply's case id into case_id, linked or not. */
static bool s_report(const char *agency, const char *full_name, const char *dob, char case_id[64])
{
    scenario_report_t s;
    scenario_adult_woman(&s, "MA-01", full_name, dob);
    Nrm__V1__Reply *reply = harness_call(h, "intake", agency, &s.request);
    assert_non_null(reply);
    assert_int_equal(reply->status, OK);
    snprintf(case_id, 64, "%s", reply->case_ref->case_id);
    bool linked = reply->case_ref->linked;
    nrm__v1__reply__free_unpacked(reply, NULL);
    return linked;
}

/* Sends ResolveDuplicate as agency; the reply's status, and its field into field (may be NULL). */
static int s_resolve(const char *agency, const char *case_id, const char *other, bool confirm,
                     char *field, size_t field_len)
{
    Nrm__V1__ResolveDuplicate r = NRM__V1__RESOLVE_DUPLICATE__INIT;
    r.case_id = (char *)case_id;
    r.other_case_id = (char *)other;
    r.confirm = confirm;
    Nrm__V1__Request req = NRM__V1__REQUEST__INIT;
    scenario_request(&req, NRM__V1__REQUEST__BODY_RESOLVE_DUPLICATE, &r);
    Nrm__V1__Reply *reply = harness_call(h, "intake", agency, &req);
    assert_non_null(reply);
    int status = (int)reply->status;
    if (field)
        snprintf(field, field_len, "%s", reply->error_field);
    nrm__v1__reply__free_unpacked(reply, NULL);
    return status;
}

/* Whether case_id was proposed as a duplicate of other. */
static bool s_proposed(const char *case_id, const char *other)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.duplicate_pairs WHERE case_id = '%s'"
             " AND other_case_id = '%s'",
             case_id, other);
    return harness_sql_int(h, sql) == 1;
}

static char s_proposed_newer[64], s_proposed_older[64]; /* a proposed pair, for the next tests */
static char s_second_newer[64], s_second_older[64];

static void test_variants_link_or_are_proposed_as_measured(void **state)
{
    (void)state;
    harness_sub_t *sub = harness_subscribe(h, "intake", 0);
    int tp = 0, fp = 0, fn = 0, tn = 0, linked_n = 0, proposed_n = 0;
    for (size_t i = 0; i < PAIRS; i++) {
        char dob[16], first[64], later[64];
        /* a date of birth of its own for each pair: pairs never meet each other */
        snprintf(dob, sizeof dob, "19%02zu-%02zu-%02zu", 60 + i % 40, 1 + i % 12, 1 + i % 28);
        assert_false(s_report("border-ma-01", s_pairs[i].original, dob, first));
        bool linked = s_report("hospital-ma-04", s_pairs[i].later, dob, later);
        if (linked)
            assert_string_equal(later, first);
        bool proposed = !linked && s_proposed(later, first);
        bool match = linked || proposed;
        linked_n += linked;
        proposed_n += proposed;
        if (s_pairs[i].same)
            match ? tp++ : fn++;
        else
            match ? fp++ : tn++;
        if (proposed && s_pairs[i].same && !s_proposed_newer[0]) {
            snprintf(s_proposed_newer, sizeof s_proposed_newer, "%s", later);
            snprintf(s_proposed_older, sizeof s_proposed_older, "%s", first);
        } else if (proposed && s_pairs[i].same && !s_second_newer[0]) {
            snprintf(s_second_newer, sizeof s_second_newer, "%s", later);
            snprintf(s_second_older, sizeof s_second_older, "%s", first);
        }
    }
    double precision = tp + fp ? (double)tp / (tp + fp) : 0.0;
    double recall = tp + fn ? (double)tp / (tp + fn) : 0.0;
    printf("names: precision %.2f recall %.2f over %zu pairs (%d same person, %d others;"
           " %d linked, %d proposed; %d missed, %d false matches)\n",
           precision, recall, PAIRS, tp + fn, fp + tn, linked_n, proposed_n, fn, fp);
    /* as measured on this set (OPERATIONS, "Names"): two Arabic spellings without short vowels
     * are missed, one surname one letter off is a false match */
    assert_true(recall >= 0.9);
    assert_true(precision >= 0.9);
    assert_true(s_proposed_newer[0] && s_second_newer[0]);
    /* each proposal is published, with no name */
    Nrm__V1__Event *ev = harness_sub_next(sub, "case.possible_duplicate", WAIT_MS);
    assert_non_null(ev);
    assert_true(ev->possible_duplicate->score >= 0.85 && ev->possible_duplicate->score < 1.0);
    nrm__v1__event__free_unpacked(ev, NULL);
    for (size_t i = 0; i < PAIRS; i++) {
        assert_false(harness_sub_saw_bytes(sub, s_pairs[i].later));
        assert_false(harness_sub_saw_bytes(sub, s_pairs[i].original));
        assert_false(harness_log_contains(h, "intake", 0, s_pairs[i].original));
    }
    harness_sub_destroy(&sub);
}

static void test_only_the_coordinator_resolves(void **state)
{
    (void)state;
    /* a stranger, the case's manager (who reported the older case) and a provider */
    const char *refused[] = {"consulate-ng", "border-ma-01", "hospital-ma-04", "ngo-ma-07"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        assert_int_equal(s_resolve(refused[i], s_proposed_newer, s_proposed_older, true, NULL, 0),
                         NRM__V1__STATUS__STATUS_PERMISSION_DENIED);
    assert_true(s_proposed(s_proposed_newer, s_proposed_older));
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.cases WHERE case_id = '%s' AND"
             " status = 'open'",
             s_proposed_newer);
    assert_int_equal(harness_sql_int(h, sql), 1);
}

static void test_bad_input_names_its_field(void **state)
{
    (void)state;
    char field[128];
    assert_int_equal(s_resolve("coordinator", "", s_proposed_older, true, field, sizeof field),
                     NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_string_equal(field, "resolve_duplicate.case_id");
    assert_int_equal(s_resolve("coordinator", s_proposed_newer, "", true, field, sizeof field),
                     NRM__V1__STATUS__STATUS_INVALID_ARGUMENT);
    assert_string_equal(field, "resolve_duplicate.other_case_id");
    assert_int_equal(
        s_resolve("coordinator", "no-such-case", s_proposed_older, true, field, sizeof field),
        NRM__V1__STATUS__STATUS_NOT_FOUND);
    assert_string_equal(field, "resolve_duplicate.case_id");
    assert_int_equal(
        s_resolve("coordinator", s_proposed_newer, "no-such-case", true, field, sizeof field),
        NRM__V1__STATUS__STATUS_NOT_FOUND);
    assert_string_equal(field, "resolve_duplicate.other_case_id");
    /* a pair never proposed: the other way round */
    assert_int_equal(
        s_resolve("coordinator", s_proposed_older, s_proposed_newer, true, field, sizeof field),
        NRM__V1__STATUS__STATUS_FAILED_PRECONDITION);
    assert_string_equal(field, "resolve_duplicate.other_case_id");
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.duplicate_pairs WHERE state <> 'proposed'");
    assert_int_equal(harness_sql_int(h, sql), 0);
}

static void test_confirm_closes_the_newer_as_duplicate(void **state)
{
    (void)state;
    harness_sub_t *sub = harness_subscribe(h, "intake", 0);
    assert_int_equal(s_resolve("coordinator", s_proposed_newer, s_proposed_older, true, NULL, 0),
                     OK);
    Nrm__V1__Event *ev = harness_sub_next(sub, "case.closed", WAIT_MS);
    assert_non_null(ev);
    assert_string_equal(ev->case_id, s_proposed_newer);
    assert_string_equal(ev->case_closed->reason, "duplicate");
    assert_string_equal(ev->case_closed->duplicate_of_case_id, s_proposed_older);
    nrm__v1__event__free_unpacked(ev, NULL);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.cases WHERE case_id = '%s' AND"
             " status = 'closed' AND close_reason = 'duplicate'",
             s_proposed_newer);
    assert_int_equal(harness_sql_int(h, sql), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.cases WHERE case_id = '%s' AND"
             " status = 'open'",
             s_proposed_older);
    assert_int_equal(harness_sql_int(h, sql), 1);
    /* already resolved */
    char field[128];
    assert_int_equal(
        s_resolve("coordinator", s_proposed_newer, s_proposed_older, true, field, sizeof field),
        NRM__V1__STATUS__STATUS_FAILED_PRECONDITION);
    assert_string_equal(field, "resolve_duplicate.other_case_id");
    harness_sub_destroy(&sub);
}

static void test_dismiss_keeps_both(void **state)
{
    (void)state;
    assert_int_equal(s_resolve("coordinator", s_second_newer, s_second_older, false, NULL, 0), OK);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.cases WHERE case_id IN ('%s', '%s')"
             " AND status = 'open'",
             s_second_newer, s_second_older);
    assert_int_equal(harness_sql_int(h, sql), 2);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.duplicate_pairs WHERE case_id = '%s'"
             " AND state = 'dismissed' AND resolved_by = 'coordinator'",
             s_second_newer);
    assert_int_equal(harness_sql_int(h, sql), 1);
    char field[128];
    assert_int_equal(
        s_resolve("coordinator", s_second_newer, s_second_older, false, field, sizeof field),
        NRM__V1__STATUS__STATUS_FAILED_PRECONDITION);
}

/* The number of case.possible_duplicate events of case_id against other on intake's stream. */
static size_t s_published(const char *case_id, const char *other)
{
    Nrm__V1__Event **events = NULL;
    size_t n = harness_fetch_all(h, "intake", &events), published = 0;
    for (size_t i = 0; i < n; i++) {
        published += events[i]->body_case == NRM__V1__EVENT__BODY_POSSIBLE_DUPLICATE &&
                     strcmp(events[i]->case_id, case_id) == 0 &&
                     strcmp(events[i]->possible_duplicate->other_case_id, other) == 0 &&
                     events[i]->possible_duplicate->score == 1.0;
        nrm__v1__event__free_unpacked(events[i], NULL);
    }
    free(events);
    return published;
}

/* Restarts intake after forgetting that version 2 re-hashed the cases. */
static void s_rehash_again(void)
{
    assert_int_equal(harness_sql_int(h, "WITH d AS (DELETE FROM intake.name_versions RETURNING 1)"
                                        " SELECT count(*) FROM d"),
                     1);
    int status = harness_signal(h, "intake", 0, SIGTERM);
    assert_true(WIFEXITED(status));
    assert_int_equal(harness_start(h, "intake", 0), 0);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.name_versions WHERE"
                                        " version = 2"),
                     1);
}

static void test_start_rehashes_once_and_proposes_what_now_matches(void **state)
{
    (void)state;
    /* two open cases of one person, stored under the old hash (before normalisation) */
    char older[64], newer[64], sql[512];
    assert_false(s_report("border-ma-01", "Nadia Rahmani", "1977-07-07", older));
    snprintf(sql, sizeof sql,
             "WITH u AS (UPDATE intake.cases SET identity_hash = 'v1-' ||"
             " case_id WHERE case_id = '%s' RETURNING 1) SELECT count(*) FROM u",
             older);
    assert_int_equal(harness_sql_int(h, sql), 1);
    assert_false(s_report("hospital-ma-04",
                          "NAD\xc3\x8d"
                          "A RAHMANI",
                          "1977-07-07", newer));
    assert_false(s_proposed(newer, older)); /* equal keys are for the hash, not proposals */
    s_rehash_again();
    /* the older keeps the hash: a new report links to it; the newer is proposed, score 1 */
    char again[64];
    assert_true(s_report("police-ma-04", "Rahmani, Nadia", "1977-07-07", again));
    assert_string_equal(again, older);
    assert_true(s_proposed(newer, older));
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.duplicate_pairs WHERE case_id = '%s'"
             " AND score = 1",
             newer);
    assert_int_equal(harness_sql_int(h, sql), 1);
    assert_int_equal(s_published(newer, older), 1);
    /* dismissed, then re-hashed again: not proposed again */
    assert_int_equal(s_resolve("coordinator", newer, older, false, NULL, 0), OK);
    s_rehash_again();
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.duplicate_pairs WHERE case_id = '%s'"
             " AND state = 'dismissed'",
             newer);
    assert_int_equal(harness_sql_int(h, sql), 1);
    /* still one case.possible_duplicate for the pair on the whole stream */
    assert_int_equal(s_published(newer, older), 1);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM intake.duplicate_pairs WHERE"
                                        " score = 1"),
                     1);
}

/* Another transaction erasing a case's identity while intake's start job re-hashes: it holds
 * the case's row from before the job reads the cases, erases once the job waits for the row,
 * and commits. */
typedef struct {
    PGconn *conn;
    const char *case_id;
    bool job_waited;
} s_eraser_t;

static void *s_eraser_run(void *arg)
{
    s_eraser_t *e = arg;
    for (int i = 0; i < 200 && !e->job_waited; i++) {
        /* the activity is read once per transaction unless the snapshot is cleared */
        PGresult *r = PQexec(e->conn, "SELECT pg_stat_clear_snapshot();"
                                      " SELECT count(*) FROM pg_stat_activity WHERE"
                                      " wait_event_type = 'Lock' AND wait_event IN"
                                      " ('transactionid', 'tuple') AND pid <> pg_backend_pid()");
        e->job_waited = PQresultStatus(r) == PGRES_TUPLES_OK && atoi(PQgetvalue(r, 0, 0)) > 0;
        PQclear(r);
        if (!e->job_waited)
            usleep(50 * 1000);
    }
    char sql[512]; /* what EraseIdentity writes (intake_erase.c), then the commit */
    snprintf(sql, sizeof sql,
             "UPDATE intake.cases SET identity_hash = NULL, blocking_hash = NULL,"
             " identity_erased_at = now(), erase_reason = 'recorded_in_error' WHERE case_id = '%s';"
             " DELETE FROM intake.case_keys WHERE case_id = '%s'; COMMIT",
             e->case_id, e->case_id);
    PQclear(PQexec(e->conn, sql));
    return NULL;
}

static void test_an_erasure_while_the_start_job_rehashes_leaves_the_case_without_hashes(void **s)
{
    (void)s;
    char erased[64], again[64], conninfo[512], sql[512];
    assert_false(s_report("border-ma-01", "Rehash Race Zerhouni", "1966-06-06", erased));
    assert_int_equal(harness_sql_int(h, "WITH d AS (DELETE FROM intake.name_versions RETURNING 1)"
                                        " SELECT count(*) FROM d"),
                     1);
    assert_true(WIFEXITED(harness_signal(h, "intake", 0, SIGTERM)));
    snprintf(conninfo, sizeof conninfo, "host=%s port=%s dbname=t_intake_names user=postgres",
             getenv("NRM_TEST_PGHOST"), getenv("NRM_TEST_PGPORT"));
    s_eraser_t e = {.conn = PQconnectdb(conninfo), .case_id = erased};
    assert_int_equal(PQstatus(e.conn), CONNECTION_OK);
    snprintf(sql, sizeof sql,
             "BEGIN; UPDATE intake.cases SET updated_at = now() WHERE case_id = '%s'", erased);
    PGresult *r = PQexec(e.conn, sql);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    pthread_t eraser;
    assert_int_equal(pthread_create(&eraser, NULL, s_eraser_run, &e), 0);
    int started = harness_start(h, "intake", 0); /* its start job re-hashes every case */
    pthread_join(eraser, NULL);
    PQfinish(e.conn);
    assert_int_equal(started, 0);
    assert_true(e.job_waited);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM intake.cases WHERE case_id = '%s' AND identity_erased_at IS NOT"
             " NULL AND identity_hash IS NULL AND blocking_hash IS NULL",
             erased);
    assert_int_equal(harness_sql_int(h, sql), 1);
    /* so the same person reported again opens a case of their own */
    assert_false(s_report("border-ma-01", "Rehash Race Zerhouni", "1966-06-06", again));
    assert_string_not_equal(again, erased);
}

/* Reloads intake with intake.names.max_candidates set to n and waits until it has adopted it
 * (logged). */
static void s_set_max_candidates(int n)
{
    harness_config_set(h, "intake.names.max_candidates", json_integer(n));
    harness_reload(h, "intake", 0);
    char adopted[64];
    snprintf(adopted, sizeof adopted, "\"max_candidates\":%d}", n);
    for (int i = 0; i < 50 && !harness_log_contains(h, "intake", 0, adopted); i++)
        usleep(100 * 1000);
    assert_true(harness_log_contains(h, "intake", 0, adopted));
}

/* A new case is compared with the oldest intake.names.max_candidates open cases of its block,
 * not with a newer one beyond them; with one candidate more, that one is compared too. */
static void test_a_new_case_is_compared_with_the_oldest_candidates_of_its_block(void **state)
{
    (void)state;
    const char *dob = "1944-04-04";
    char older[3][64], newer[64], another[64];
    assert_false(s_report("border-ma-01", "Chidinma Okonkwo", dob, older[0]));
    assert_false(s_report("border-ma-01", "Chidinma Okonkwa", dob, older[1]));
    assert_false(s_report("border-ma-01", "Chidinma Okonkwi", dob, older[2]));
    s_set_max_candidates(2);
    assert_false(s_report("hospital-ma-04", "Chidinma Okonkwu", dob, newer));
    assert_true(s_proposed(newer, older[0]));
    assert_true(s_proposed(newer, older[1]));
    assert_false(s_proposed(newer, older[2]));
    s_set_max_candidates(3); /* the three older ones: newer is the fourth */
    assert_false(s_report("hospital-ma-04", "Chidinma Okonkwe", dob, another));
    assert_true(s_proposed(another, older[2]));
}

/* intake.names is read as IntakeNamesSettings: a threshold out of range is refused on reload
 * (logged by its field) and the one in force stays; a stricter one is adopted. */
static void test_settings_are_checked_and_adopted(void **state)
{
    (void)state;
    harness_config_set(h, "intake.names.duplicate_threshold", json_real(1.5));
    harness_reload(h, "intake", 0);
    assert_int_equal(harness_wait_sql(h, "SELECT 1", 1, WAIT_MS), 1);
    for (int i = 0; i < 50 && !harness_log_contains(h, "intake", 0, "names configuration refused");
         i++)
        usleep(100 * 1000);
    assert_true(harness_log_contains(h, "intake", 0, "intake.names.duplicate_threshold"));
    /* still 0.85: a spelling variant is proposed */
    char first[64], later[64];
    assert_false(s_report("border-ma-01", "Adaeze Okafor", "1955-05-05", first));
    assert_true(s_report("hospital-ma-04", "Adaeze Okaforr", "1955-05-05", later)); /* "rr" */
    assert_string_equal(later, first);
    assert_false(s_report("hospital-ma-04", "Adaeze Okafo", "1955-05-05", later));
    assert_true(s_proposed(later, first));
    /* at 0.999 the same kind of variant is not */
    harness_config_set(h, "intake.names.duplicate_threshold", json_real(0.999));
    harness_reload(h, "intake", 0);
    /* the field and its value: a bare "0.999" is also in a time stamp such as 03:58:10.999 */
    const char *adopted = "\"duplicate_threshold\":0.999,";
    for (int i = 0; i < 50 && !harness_log_contains(h, "intake", 0, adopted); i++)
        usleep(100 * 1000);
    assert_true(harness_log_contains(h, "intake", 0, adopted));
    assert_false(s_report("border-ma-01", "Ngozi Okafor", "1955-06-06", first));
    assert_false(s_report("hospital-ma-04", "Ngozi Okafo", "1955-06-06", later));
    assert_false(s_proposed(later, first));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variants_link_or_are_proposed_as_measured),
        cmocka_unit_test(test_only_the_coordinator_resolves),
        cmocka_unit_test(test_bad_input_names_its_field),
        cmocka_unit_test(test_confirm_closes_the_newer_as_duplicate),
        cmocka_unit_test(test_dismiss_keeps_both),
        cmocka_unit_test(test_start_rehashes_once_and_proposes_what_now_matches),
        cmocka_unit_test(
            test_an_erasure_while_the_start_job_rehashes_leaves_the_case_without_hashes),
        cmocka_unit_test(test_a_new_case_is_compared_with_the_oldest_candidates_of_its_block),
        cmocka_unit_test(test_settings_are_checked_and_adopted),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
